"""GGUF export: one `.gguf` file that llama.cpp, llama-cpp-python, Ollama and LM Studio run.

With the Llama-compatible switches (see `llama.py`) a CustomLM is a Llama, so the file declares
`general.architecture = "llama"` and holds:

- the hyperparameters under `llama.*` (context length, widths, heads, RMSNorm epsilon, RoPE base);
- the weights under llama.cpp's tensor names (`token_embd`, `blk.N.attn_q`, ...; the name map is the
  `gguf` package's), with the rows of `q_proj`/`k_proj` permuted from the half-split rotary layout of
  transformers to the interleaved pairs llama.cpp's "llama" rotary rotates; tied embeddings write no
  `output` tensor, which llama.cpp then shares with `token_embd`;
- the tokenizer as a "gpt2" byte-level BPE: the tokens as they appear in `tokenizer.json`, the merges,
  token types (special tokens are CONTROL, so plain text never produces them, as with our
  `split_special_tokens=True`), pre-tokenizer "gpt-2" (GPT-2's split regex, which ours uses with no
  prefix space), the bos/eos/pad ids, and no bos or eos added when encoding (ours adds none).

The binary layout is the `gguf` package's `GGUFWriter`; nothing here writes bytes by hand.
Weights: "f32"; "f16" (matrices in float16, 1-D norms and biases kept in float32, as llama.cpp's own
converter does); "q8_0" (matrices whose rows are a whole number of 32-value blocks quantized to 8 bits
per value plus one scale per block, other matrices in float16).
"""

import json
import os
from pathlib import Path

import gguf
import numpy as np
import torch

from ..model import CustomLMForCausalLM
from .llama import check_llama_compatible

GGUF_TYPES = ("f32", "f16", "q8_0")
FILE_TYPES = {
    "f32": gguf.LlamaFileType.ALL_F32,
    "f16": gguf.LlamaFileType.MOSTLY_F16,
    "q8_0": gguf.LlamaFileType.MOSTLY_Q8_0,
}
ARCH = gguf.MODEL_ARCH.LLAMA
# llama.cpp's name for the pre-tokenizer regex of GPT-2 (`'s|'t|...| ?\p{L}+| ?\p{N}+|...`), the one a
# `ByteLevel(use_regex=True)` pre-tokenizer applies.
TOKENIZER_PRE = "gpt-2"


def check_gguf_compatible(config) -> None:
    """Raise `ValueError` naming the first setting a GGUF Llama cannot express."""
    check_llama_compatible(config, target="GGUF Llama")
    rope_type = (config.rope_parameters or {}).get("rope_type", "default")
    if rope_type != "default":
        raise ValueError(
            f"Cannot export as GGUF Llama: the model has `rope_parameters['rope_type']={rope_type!r}`; this export "
            "writes plain RoPE only ('default'). Export with format='custom_lm' or format='llama'."
        )


def _tokenizer_json(tokenizer) -> dict:
    """The tokenizer's `tokenizer.json` as a dict, refused unless llama.cpp's "gpt2" BPE encodes like it."""
    backend = getattr(tokenizer, "backend_tokenizer", None)
    if backend is None:
        raise ValueError(
            f"Cannot export as GGUF: the tokenizer ({type(tokenizer).__name__}) has no `tokenizer.json` backend. "
            "Use a fast byte-level BPE tokenizer (`train_tokenizer` or the bundled one)."
        )
    spec = json.loads(backend.to_str())
    pre = spec.get("pre_tokenizer") or {}
    checks = {
        "model.type": (spec["model"].get("type"), "BPE"),
        "normalizer": (spec.get("normalizer"), None),
        "pre_tokenizer.type": (pre.get("type"), "ByteLevel"),
        "pre_tokenizer.add_prefix_space": (pre.get("add_prefix_space"), False),
        "pre_tokenizer.use_regex": (pre.get("use_regex"), True),
        "model.byte_fallback": (spec["model"].get("byte_fallback", False), False),
    }
    for name, (value, needed) in checks.items():
        if value != needed:
            raise ValueError(
                f"Cannot export as GGUF: the tokenizer has `{name}={value!r}` and llama.cpp's GPT-2 style BPE "
                f"needs `{name}={needed!r}`, or it would split text differently. Train the tokenizer with "
                "`train_tokenizer(..., normalization=None)` or use the bundled one."
            )
    return spec


def _add_tokenizer(writer: gguf.GGUFWriter, tokenizer, vocab_size: int) -> None:
    spec = _tokenizer_json(tokenizer)
    id_to_token = {index: token for token, index in tokenizer.get_vocab().items()}
    added = {token["id"]: token for token in spec.get("added_tokens", [])}
    tokens, types = [], []
    for index in range(vocab_size):  # the embedding may have more rows than the tokenizer has tokens
        if index not in id_to_token:
            tokens.append(f"[PAD{index}]")
            types.append(gguf.TokenType.UNUSED)
        elif index in added:
            tokens.append(id_to_token[index])
            types.append(gguf.TokenType.CONTROL if added[index]["special"] else gguf.TokenType.USER_DEFINED)
        else:
            tokens.append(id_to_token[index])
            types.append(gguf.TokenType.NORMAL)
    # tokenizer.json stores a merge as ["a", "b"] (or "a b" in older files); GGUF as "a b". Byte-level
    # tokens spell a space as "Ġ", so the space separator is unambiguous.
    merges = [m if isinstance(m, str) else " ".join(m) for m in spec["model"]["merges"]]

    writer.add_tokenizer_model("gpt2")
    writer.add_tokenizer_pre(TOKENIZER_PRE)
    writer.add_token_list(tokens)
    writer.add_token_types(types)
    writer.add_token_merges(merges)
    for key, token_id in (
        ("bos", tokenizer.bos_token_id), ("eos", tokenizer.eos_token_id), ("unk", tokenizer.unk_token_id),
        ("pad", tokenizer.pad_token_id),
    ):
        if token_id is not None:
            getattr(writer, f"add_{key}_token_id")(token_id)
    writer.add_add_bos_token(False)  # our tokenizer adds no special token when encoding
    writer.add_add_eos_token(False)
    if getattr(tokenizer, "chat_template", None):
        writer.add_chat_template(tokenizer.chat_template)


def _add_hyperparameters(writer: gguf.GGUFWriter, config, name: str, gguf_type: str) -> None:
    writer.add_name(name)
    writer.add_vocab_size(config.vocab_size)
    writer.add_context_length(config.max_position_embeddings)
    writer.add_embedding_length(config.hidden_size)
    writer.add_block_count(config.num_hidden_layers)
    writer.add_feed_forward_length(config.intermediate_size)
    writer.add_head_count(config.num_attention_heads)
    writer.add_head_count_kv(config.num_key_value_heads)
    writer.add_key_length(config.head_dim)
    writer.add_value_length(config.head_dim)
    writer.add_rope_dimension_count(config.head_dim)
    writer.add_rope_freq_base(float(config.rope_parameters["rope_theta"]))
    writer.add_layer_norm_rms_eps(config.rms_norm_eps)
    writer.add_file_type(FILE_TYPES[gguf_type])
    writer.add_quantization_version(gguf.GGML_QUANT_VERSION)


def interleave_rotary_rows(weight: torch.Tensor, num_heads: int) -> torch.Tensor:
    """Reorder each head's rows from transformers' rotary layout to llama.cpp's.

    transformers rotates dimension i with i + head_dim/2 (`rotate_half`); llama.cpp's "llama" rotary
    rotates 2i with 2i + 1. Rows of `q_proj`/`k_proj` (weight (H * hd, C) or bias (H * hd,)) go from
    [x_0 .. x_{hd/2-1}, y_0 .. y_{hd/2-1}] to [x_0, y_0, x_1, y_1, ...] within each head.
    """
    head_dim = weight.shape[0] // num_heads
    return weight.reshape(num_heads, 2, head_dim // 2, *weight.shape[1:]).transpose(1, 2).reshape(weight.shape)


def _gguf_tensors(model: CustomLMForCausalLM):
    """(llama.cpp name, float32 tensor) for every weight, q/k rows interleaved for llama.cpp's rotary."""
    config = model.config
    names = gguf.get_tensor_name_map(ARCH, config.num_hidden_layers)
    for hf_name, tensor in model.state_dict().items():
        if hf_name == "lm_head.weight" and config.tie_word_embeddings:
            continue  # llama.cpp shares `token_embd` when `output` is absent
        name = names.get_name(hf_name, try_suffixes=(".weight", ".bias"))
        if name is None:
            raise ValueError(f"Cannot export as GGUF: the parameter {hf_name!r} has no llama.cpp tensor name.")
        tensor = tensor.detach().to(device="cpu", dtype=torch.float32)
        if ".self_attn.q_proj." in hf_name:
            tensor = interleave_rotary_rows(tensor, config.num_attention_heads)
        elif ".self_attn.k_proj." in hf_name:
            tensor = interleave_rotary_rows(tensor, config.num_key_value_heads)
        yield name, tensor.numpy()


def _encode(data: np.ndarray, gguf_type: str) -> tuple[np.ndarray, gguf.GGMLQuantizationType]:
    """The array to store and its GGML type: 1-D tensors (norms, biases) always stay float32."""
    if gguf_type == "f32" or data.ndim == 1:
        return data, gguf.GGMLQuantizationType.F32
    block_size = gguf.GGML_QUANT_SIZES[gguf.GGMLQuantizationType.Q8_0][0]
    if gguf_type == "q8_0" and data.shape[-1] % block_size == 0:
        return gguf.quants.quantize(data, gguf.GGMLQuantizationType.Q8_0), gguf.GGMLQuantizationType.Q8_0
    return data.astype(np.float16), gguf.GGMLQuantizationType.F16


def gguf_path(out: str | Path, gguf_type: str) -> Path:
    """`out` itself when it names a `.gguf` file, else `out/model-<type>.gguf`."""
    out = Path(out)
    return out if out.suffix == ".gguf" else out / f"model-{gguf_type}.gguf"


def write_gguf(
    model: CustomLMForCausalLM,
    tokenizer,
    out: str | Path,
    *,
    gguf_type: str = "f16",
    name: str | None = None,
    overwrite: bool = False,
) -> Path:
    """Write `model` and `tokenizer` as one GGUF file; returns its path (see `gguf_path`).

    `name` is the file's `general.name` (default: the file's stem). Settings a GGUF Llama lacks, and
    tokenizers llama.cpp would split differently, are refused with `ValueError` before anything is written.
    """
    if gguf_type not in GGUF_TYPES:
        raise ValueError(f"Unknown GGUF type gguf_type={gguf_type!r}: choose one of {GGUF_TYPES}.")
    check_gguf_compatible(model.config)
    _tokenizer_json(tokenizer)
    path = gguf_path(out, gguf_type)
    if path.exists() and not overwrite:
        raise FileExistsError(f"{path} already exists. Choose another path, or pass overwrite=True (`--overwrite`).")
    path.parent.mkdir(parents=True, exist_ok=True)

    partial = path.with_name(path.name + ".partial")  # renamed once complete: no half-written .gguf
    writer = gguf.GGUFWriter(partial, gguf.MODEL_ARCH_NAMES[ARCH])
    _add_hyperparameters(writer, model.config, name or path.stem, gguf_type)
    _add_tokenizer(writer, tokenizer, model.config.vocab_size)
    for tensor_name, data in _gguf_tensors(model):
        data, ggml_type = _encode(data, gguf_type)
        writer.add_tensor(tensor_name, data, raw_dtype=ggml_type)
    writer.write_header_to_file()
    writer.write_kv_data_to_file()
    writer.write_tensors_to_file()
    writer.close()
    os.replace(partial, path)
    return path


__all__ = ["GGUF_TYPES", "check_gguf_compatible", "gguf_path", "interleave_rotary_rows", "write_gguf"]
