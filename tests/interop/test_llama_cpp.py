"""The GGUF export run by a real llama.cpp (through llama-cpp-python): same token ids, same greedy tokens,
same logits as transformers.

Not part of `make test` (pyproject's addopts ignore tests/interop): building llama-cpp-python takes
minutes. `make test-interop` installs it and runs this file.

The model is trained here for a few dozen steps on the bundled corpus (a random model's top two logits
are often nearly tied, so its greedy tokens would flip on rounding alone), saved as a model folder and
exported with the command line, as a user would.
"""

import copy
import gzip
import json

import gguf
import numpy as np
import pytest
import torch

from hf_custom_lm import CustomLMConfig, CustomLMForCausalLM
from hf_custom_lm.cli import main as cli_main
from hf_custom_lm.folders import save_model_folder
from hf_custom_lm.training.tokenization import bundled_corpus_files

llama_cpp = pytest.importorskip("llama_cpp", reason="`make test-interop` installs llama-cpp-python")

TOKENIZER_STRINGS = [
    "Hello, world! The quick brown fox jumps over the lazy dog.",
    "Crème brûlée, naïve café, Ångström, Straße, façade; ñandú.",
    "敏捷的棕色狐狸跳过了懒狗。日本語のテキストと한국어 텍스트.",
    "Emoji: 🚀🦙 😶\u200d🌫️ 👍🏽 ✅ and flags 🇫🇷🇯🇵",
    "def f(x):\n\treturn {'a': [1, 2, 3], \"b\": x ** 2}  # comment\n",
    "spaces   between    words\n\n\n  indented\t\ttabs \r\n trailing   ",
    "numbers 3 33 333 3333 3.14159 1e-5 0x1F and I've, you'll, he'd, it's, 'RE",
    "text that spells <|endoftext|> and <|pad|> stays plain text",
    " leading space, and a lone\n",
]
PROMPTS = [
    "Once upon a time",
    "The king said that",
    "It was a dark and stormy night; the",
    "In the beginning",
    "\n\nChapter",
]
NEW_TOKENS = 32
# Largest |llama.cpp logit - transformers logit| allowed at any generated position, f32 weights and f32
# KV cache on both sides: the two sum the same products in different orders (and llama.cpp's softmax
# and SiLU use their own approximations), so logits may differ from about the 6th significant digit on.
F32_LOGIT_ATOL = 1e-4
# f16 and q8_0 round every weight (q8_0 to 8 bits per value); their logits are compared at the first
# step only, with bounds of the size that rounding moves them (the run's printed differences say how close).
ROUNDED_LOGIT_ATOL = {"f16": 0.01, "q8_0": 0.2}


def train_tiny_model(tokenizer, steps: int = 60, **config_kwargs) -> tuple[CustomLMForCausalLM, float]:
    """A 3-layer, 128-wide Llama-compatible model (GQA 4:2; `config_kwargs` change it) after `steps` AdamW steps
    on the bundled corpus, and its last training loss."""
    torch.manual_seed(0)
    config = CustomLMConfig(**{
        "vocab_size": len(tokenizer), "hidden_size": 128, "intermediate_size": 352, "num_hidden_layers": 3,
        "num_attention_heads": 4, "num_key_value_heads": 2, "max_position_embeddings": 512, **config_kwargs,
    })
    model = CustomLMForCausalLM(config)
    with gzip.open(bundled_corpus_files()["train"], "rt") as lines:
        texts = [json.loads(line)["text"] for _, line in zip(range(40), lines)]
    encodings = tokenizer.backend_tokenizer.encode_batch(texts)  # whole documents, longer than model_max_length
    ids = torch.tensor([i for encoding in encodings for i in encoding.ids + [tokenizer.eos_token_id]])
    batch, block = 8, 128
    blocks = ids[: len(ids) // block * block].view(-1, block)  # (N, T)
    optimizer = torch.optim.AdamW(model.parameters(), lr=3e-3)
    model.train()
    for step in range(steps):
        rows = blocks[torch.randint(0, len(blocks), (batch,), generator=torch.Generator().manual_seed(step))]
        loss = model(input_ids=rows, labels=rows).loss
        loss.backward()
        optimizer.step()
        optimizer.zero_grad()
    return model.eval(), loss.item()


@pytest.fixture(scope="module")
def exported(tmp_path_factory, tokenizer):
    """The trained model and its GGUF files, written by `hf-custom-lm export --format gguf`."""
    root = tmp_path_factory.mktemp("interop")
    model, loss = train_tiny_model(tokenizer)
    assert loss < 6.5, f"the model did not train (loss {loss:.2f}): its greedy tokens would be fragile"
    save_model_folder(model, tokenizer, root / "model")
    files = {}
    for gguf_type in ("f32", "f16", "q8_0"):
        files[gguf_type] = root / f"tiny-{gguf_type}.gguf"
        argv = ["export", str(root / "model"), str(files[gguf_type]), "--format", "gguf", "--gguf_type", gguf_type]
        assert cli_main(argv) == 0
    return model, files


def load_llama_cpp(path, n_ctx: int = 256):
    """llama.cpp with an f32 KV cache (its default is f16) so that only the arithmetic order differs."""
    return llama_cpp.Llama(
        model_path=str(path), n_ctx=n_ctx, n_threads=2, n_batch=n_ctx, logits_all=True, verbose=False,
        type_k=llama_cpp.GGML_TYPE_F32, type_v=llama_cpp.GGML_TYPE_F32, flash_attn=False,
    )


def llama_cpp_greedy(llm, prompt_ids: list[int], new_tokens: int, eos_token_id: int):
    """Greedy decoding in llama.cpp, stopping at eos as `generate` does: (tokens, logits of each step)."""
    llm.reset()
    llm.eval(prompt_ids)
    tokens, logits = [], []
    for _ in range(new_tokens):
        step_logits = np.array(llm.scores[llm.n_tokens - 1], dtype=np.float32)  # (V,)
        token = int(step_logits.argmax())
        assert llm.sample(temp=0.0) == token  # llama.cpp's own greedy sampler picks the same
        tokens.append(token)
        logits.append(step_logits)
        if token == eos_token_id:
            break
        llm.eval([token])
    return tokens, np.stack(logits)


def transformers_greedy(model, prompt_ids: list[int], new_tokens: int):
    with torch.no_grad():
        out = model.generate(
            torch.tensor([prompt_ids]), max_new_tokens=new_tokens, do_sample=False, output_logits=True,
            return_dict_in_generate=True, pad_token_id=model.config.pad_token_id,
        )
    tokens = out.sequences[0, len(prompt_ids):].tolist()
    return tokens, torch.cat(out.logits).float().numpy()  # (steps, V)


def test_llama_cpp_reads_the_metadata(exported, tokenizer):
    model, files = exported
    llm = load_llama_cpp(files["f32"])
    assert llm.n_vocab() == model.config.vocab_size
    assert llm.n_ctx() == 256 and int(llm.metadata["llama.context_length"]) == model.config.max_position_embeddings
    assert llm.token_eos() == tokenizer.eos_token_id and llm.token_bos() == tokenizer.bos_token_id


@pytest.mark.parametrize("text", TOKENIZER_STRINGS)
def test_llama_cpp_tokenizes_like_ours(exported, tokenizer, text):
    llm = load_llama_cpp(exported[1]["f32"])
    ours = tokenizer(text).input_ids
    # add_bos=True: llama.cpp adds a bos only when the file says so, and ours adds none
    theirs = llm.tokenize(text.encode("utf-8"), add_bos=True, special=False)
    assert theirs == ours
    assert llm.detokenize(theirs).decode("utf-8") == text


def test_greedy_generation_and_logits_match_transformers_f32(exported, tokenizer):
    model, files = exported
    llm = load_llama_cpp(files["f32"])
    worst, compared = 0.0, 0
    for prompt in PROMPTS:
        prompt_ids = tokenizer(prompt).input_ids
        ours, our_logits = transformers_greedy(model, prompt_ids, NEW_TOKENS)
        theirs, their_logits = llama_cpp_greedy(llm, prompt_ids, NEW_TOKENS, tokenizer.eos_token_id)
        assert theirs == ours, f"prompt {prompt!r}: llama.cpp {theirs} vs transformers {ours}"
        assert len(ours) == NEW_TOKENS or ours[-1] == tokenizer.eos_token_id
        worst = max(worst, float(np.abs(their_logits - our_logits).max()))
        compared += len(ours)
    print(f"same greedy tokens ({compared} over {len(PROMPTS)} prompts); largest |logit difference|: {worst:.2e}")
    assert worst <= F32_LOGIT_ATOL


@pytest.mark.parametrize("gguf_type", ["f16", "q8_0"])
def test_rounded_weights_load_and_stay_close(exported, tokenizer, gguf_type):
    model, files = exported
    llm = load_llama_cpp(files[gguf_type])
    prompt_ids = tokenizer(PROMPTS[0]).input_ids
    _, our_logits = transformers_greedy(model, prompt_ids, 1)
    _, their_logits = llama_cpp_greedy(llm, prompt_ids, 1, tokenizer.eos_token_id)
    difference = float(np.abs(their_logits[0] - our_logits[0]).max())
    print(f"{gguf_type}: largest |logit difference| at the first step: {difference:.2e}")
    assert difference <= ROUNDED_LOGIT_ATOL[gguf_type]
    assert their_logits[0].argmax() == our_logits[0].argmax()


ADDED_SPECIAL_TOKENS = ["<|user|>", "<|assistant|>"]


@pytest.fixture(scope="module")
def exported_variant(tmp_path_factory, tokenizer):
    """The other Llama-compatible settings: untied input and output embeddings, biases in attention and MLP,
    and a tokenizer with two added special tokens; exported as f32 GGUF by the command line."""
    root = tmp_path_factory.mktemp("interop-variant")
    tokenizer = copy.deepcopy(tokenizer)
    tokenizer.add_special_tokens({"additional_special_tokens": ADDED_SPECIAL_TOKENS})
    model, loss = train_tiny_model(tokenizer, tie_word_embeddings=False, attention_bias=True, mlp_bias=True)
    assert loss < 6.5, f"the model did not train (loss {loss:.2f}): its greedy tokens would be fragile"
    save_model_folder(model, tokenizer, root / "model")
    path = root / "variant-f32.gguf"
    assert cli_main(["export", str(root / "model"), str(path), "--format", "gguf", "--gguf_type", "f32"]) == 0
    return model, tokenizer, path


def test_untied_biased_model_with_added_special_tokens_matches_transformers(exported_variant):
    model, tokenizer, path = exported_variant
    llm = load_llama_cpp(path)
    assert llm.n_vocab() == len(tokenizer) == model.config.vocab_size
    names = {tensor.name for tensor in gguf.GGUFReader(path).tensors}
    assert {"output.weight", "blk.0.attn_q.bias", "blk.0.ffn_down.bias"} <= names  # untied head, biases
    # added special tokens are CONTROL tokens: text that spells them stays plain text, as with ours
    for text in [f"{ADDED_SPECIAL_TOKENS[0]} hello {ADDED_SPECIAL_TOKENS[1]}", *TOKENIZER_STRINGS[:3]]:
        assert llm.tokenize(text.encode("utf-8"), add_bos=True, special=False) == tokenizer(text).input_ids, text
    worst = 0.0
    for prompt in PROMPTS:
        prompt_ids = tokenizer(prompt).input_ids
        ours, our_logits = transformers_greedy(model, prompt_ids, NEW_TOKENS)
        theirs, their_logits = llama_cpp_greedy(llm, prompt_ids, NEW_TOKENS, tokenizer.eos_token_id)
        assert theirs == ours, f"prompt {prompt!r}: llama.cpp {theirs} vs transformers {ours}"
        worst = max(worst, float(np.abs(their_logits - our_logits).max()))
    print(f"untied, biased, 2 added special tokens: same greedy tokens; largest |logit difference|: {worst:.2e}")
    assert worst <= F32_LOGIT_ATOL
