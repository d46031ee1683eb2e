"""GGUF export (`format="gguf"`): metadata, tensors and tokenizer read back with the `gguf` package's reader.

These tests need no llama.cpp; `tests/interop/` (`make test-interop`) runs the file in llama.cpp itself.
"""

import copy
import json
import re

import gguf
import numpy as np
import pytest
import torch
from transformers.models.llama.modeling_llama import apply_rotary_pos_emb

from hf_custom_lm import CustomLMForCausalLM
from hf_custom_lm.cli import main as cli_main
from hf_custom_lm.folders import save_model_folder
from hf_custom_lm.hub import export
from hf_custom_lm.hub.gguf import interleave_rotary_rows
from hf_custom_lm.training.tokenization import train_tokenizer

from .conftest import SAMPLE_TEXT, tiny_config


@pytest.fixture(scope="module")
def small_tokenizer():
    """300 tokens: `gguf.GGUFReader` parses each token string separately, seconds for the bundled 8192."""
    return train_tokenizer(dataset=SAMPLE_TEXT, vocab_size=300, min_frequency=0)


def tiny_model(tokenizer, **overrides) -> CustomLMForCausalLM:
    torch.manual_seed(0)
    return CustomLMForCausalLM(tiny_config(**{"vocab_size": len(tokenizer), **overrides})).eval()


def fields(reader: gguf.GGUFReader) -> dict:
    return {name: field.contents() for name, field in reader.fields.items()}


def tensors(reader: gguf.GGUFReader) -> dict:
    """name -> (GGML type name, torch-order shape, float32 values)."""
    return {
        t.name: (t.tensor_type.name, tuple(int(n) for n in reversed(t.shape)),
                 gguf.quants.dequantize(t.data, t.tensor_type).reshape(tuple(int(n) for n in reversed(t.shape))))
        for t in reader.tensors
    }


def test_gguf_metadata_and_tokenizer(tmp_path, tokenizer):
    model = tiny_model(tokenizer)
    path = export(model, tokenizer, tmp_path / "tiny.gguf", format="gguf", gguf_type="f32", repo_id="someone/tiny")
    assert path == tmp_path / "tiny.gguf" and not list(tmp_path.glob("*.partial"))
    meta = fields(gguf.GGUFReader(path))
    config = model.config
    assert meta[gguf.Keys.General.ARCHITECTURE] == "llama" and meta[gguf.Keys.General.NAME] == "someone/tiny"
    assert meta[gguf.Keys.General.FILE_TYPE] == gguf.LlamaFileType.ALL_F32
    expected = {
        gguf.Keys.LLM.CONTEXT_LENGTH: config.max_position_embeddings,
        gguf.Keys.LLM.EMBEDDING_LENGTH: config.hidden_size,
        gguf.Keys.LLM.BLOCK_COUNT: config.num_hidden_layers,
        gguf.Keys.LLM.FEED_FORWARD_LENGTH: config.intermediate_size,
        gguf.Keys.LLM.VOCAB_SIZE: config.vocab_size,
        gguf.Keys.Attention.HEAD_COUNT: config.num_attention_heads,
        gguf.Keys.Attention.HEAD_COUNT_KV: config.num_key_value_heads,
        gguf.Keys.Attention.KEY_LENGTH: config.head_dim,
        gguf.Keys.Rope.DIMENSION_COUNT: config.head_dim,
    }
    for key, value in expected.items():
        assert meta[key.format(arch="llama")] == value, key
    assert meta["llama.rope.freq_base"] == pytest.approx(config.rope_parameters["rope_theta"])
    assert meta["llama.attention.layer_norm_rms_epsilon"] == pytest.approx(config.rms_norm_eps)

    assert meta[gguf.Keys.Tokenizer.MODEL] == "gpt2" and meta[gguf.Keys.Tokenizer.PRE] == "gpt-2"
    vocab = sorted(tokenizer.get_vocab().items(), key=lambda item: item[1])
    assert meta[gguf.Keys.Tokenizer.LIST] == [token for token, _ in vocab]
    types = meta[gguf.Keys.Tokenizer.TOKEN_TYPE]
    assert types[:2] == [gguf.TokenType.CONTROL] * 2 and set(types[2:]) == {gguf.TokenType.NORMAL}
    merges = json.loads(tokenizer.backend_tokenizer.to_str())["model"]["merges"]
    assert meta[gguf.Keys.Tokenizer.MERGES] == [" ".join(pair) for pair in merges]
    assert meta[gguf.Keys.Tokenizer.MERGES][0] == "Ġ t"
    assert meta[gguf.Keys.Tokenizer.BOS_ID] == tokenizer.bos_token_id == 0
    assert meta[gguf.Keys.Tokenizer.EOS_ID] == tokenizer.eos_token_id == 0
    assert meta[gguf.Keys.Tokenizer.PAD_ID] == tokenizer.pad_token_id == 1
    assert meta[gguf.Keys.Tokenizer.ADD_BOS] is False and meta[gguf.Keys.Tokenizer.ADD_EOS] is False
    assert gguf.Keys.Tokenizer.CHAT_TEMPLATE not in meta


def test_gguf_tensor_names_shapes_and_values(tmp_path, small_tokenizer):
    tokenizer = small_tokenizer
    model = tiny_model(tokenizer, tie_word_embeddings=False, attention_bias=True)
    config = model.config
    path = export(model, tokenizer, tmp_path, format="gguf", gguf_type="f32")
    assert path == tmp_path / "model-f32.gguf"
    written = tensors(gguf.GGUFReader(path))
    hf = model.state_dict()

    assert set(written) == {
        "token_embd.weight", "output_norm.weight", "output.weight",
        *(f"blk.{i}.{name}" for i in range(config.num_hidden_layers) for name in (
            "attn_norm.weight", "attn_q.weight", "attn_q.bias", "attn_k.weight", "attn_k.bias", "attn_v.weight",
            "attn_v.bias", "attn_output.weight", "attn_output.bias", "ffn_norm.weight", "ffn_gate.weight",
            "ffn_up.weight", "ffn_down.weight",
        )),
    }
    assert {t for t, _, _ in written.values()} == {"F32"}
    assert written["token_embd.weight"][1] == (config.vocab_size, config.hidden_size)
    assert written["blk.0.attn_k.weight"][1] == (config.num_key_value_heads * config.head_dim, config.hidden_size)
    assert written["blk.1.ffn_down.weight"][1] == (config.hidden_size, config.intermediate_size)
    np.testing.assert_array_equal(written["output.weight"][2], hf["lm_head.weight"].numpy())
    gate = hf["model.layers.1.mlp.gate_proj.weight"]
    np.testing.assert_array_equal(written["blk.1.ffn_gate.weight"][2], gate.numpy())
    # q/k rows are reordered per head, never changed
    q_hf = hf["model.layers.0.self_attn.q_proj.weight"]
    np.testing.assert_array_equal(written["blk.0.attn_q.weight"][2],
                                  interleave_rotary_rows(q_hf, config.num_attention_heads).numpy())
    assert not np.array_equal(written["blk.0.attn_q.weight"][2], q_hf.numpy())
    k_bias = hf["model.layers.1.self_attn.k_proj.bias"]
    np.testing.assert_array_equal(written["blk.1.attn_k.bias"][2],
                                  interleave_rotary_rows(k_bias, config.num_key_value_heads).numpy())


def test_tied_embeddings_write_no_output_tensor(tmp_path, small_tokenizer):
    tokenizer = small_tokenizer
    model = tiny_model(tokenizer)  # tie_word_embeddings=True by default
    written = tensors(gguf.GGUFReader(export(model, tokenizer, tmp_path / "t.gguf", format="gguf")))
    assert "output.weight" not in written and "token_embd.weight" in written


def test_interleaved_rows_give_llama_cpp_rotary_the_same_queries():
    """llama.cpp rotates pairs (2i, 2i+1); transformers rotates (i, i + hd/2). With the rows interleaved,
    llama.cpp's rotation of the projected queries equals ours, interleaved the same way."""
    heads, head_dim, width, seq = 3, 8, 12, 5
    torch.manual_seed(0)
    weight, x = torch.randn(heads * head_dim, width), torch.randn(seq, width)
    positions = torch.arange(seq, dtype=torch.float32)[:, None]
    angles = positions / 10000 ** (torch.arange(0, head_dim, 2) / head_dim)  # (T, hd/2)

    q = (x @ weight.T).view(seq, heads, head_dim).transpose(0, 1)[None]  # (1, H, T, hd)
    cos, sin = torch.cat([angles.cos()] * 2, -1)[None], torch.cat([angles.sin()] * 2, -1)[None]
    ours, _ = apply_rotary_pos_emb(q, q, cos, sin)  # (1, H, T, hd)

    q_cpp = (x @ interleave_rotary_rows(weight, heads).T).view(seq, heads, head_dim // 2, 2)
    even, odd = q_cpp[..., 0], q_cpp[..., 1]  # (T, H, hd/2)
    c, s = angles.cos()[:, None], angles.sin()[:, None]
    theirs = torch.stack([even * c - odd * s, even * s + odd * c], -1).reshape(seq, heads * head_dim)

    expected = interleave_rotary_rows(ours[0].transpose(0, 1).reshape(seq, heads * head_dim).T, heads).T
    torch.testing.assert_close(theirs, expected)


def test_f16_and_q8_0_types(tmp_path, small_tokenizer):
    tokenizer = small_tokenizer
    model = tiny_model(tokenizer)
    hf = model.state_dict()
    f16 = tensors(gguf.GGUFReader(export(model, tokenizer, tmp_path, format="gguf", gguf_type="f16")))
    q8_reader = gguf.GGUFReader(export(model, tokenizer, tmp_path, format="gguf", gguf_type="q8_0"))
    q8 = tensors(q8_reader)
    assert q8_reader.fields["general.file_type"].contents() == gguf.LlamaFileType.MOSTLY_Q8_0

    for name, (ggml_type, shape, _) in f16.items():
        assert ggml_type == ("F32" if len(shape) == 1 else "F16"), name
    assert q8["blk.0.attn_norm.weight"][0] == "F32"
    assert q8["token_embd.weight"][0] == "Q8_0" and q8["blk.0.ffn_up.weight"][0] == "Q8_0"
    # ffn_down rows hold intermediate_size = 176 values, not a whole number of 32-value blocks
    assert q8["blk.0.ffn_down.weight"][0] == "F16"

    embed = hf["model.embed_tokens.weight"].numpy()
    np.testing.assert_allclose(f16["token_embd.weight"][2], embed, rtol=1e-3, atol=1e-6)
    # q8_0 stores each block of 32 as int8 times a float16 scale, max |x| / 127: the error is half a step
    # plus the scale's float16 rounding (2**-11 relative, times up to 127)
    step = np.abs(embed.reshape(-1, 32)).max(axis=1, keepdims=True) / 127
    error = np.abs(q8["token_embd.weight"][2].reshape(-1, 32) - embed.reshape(-1, 32))
    assert (error <= step * (0.5 + 127 * 2**-11)).all() and error.max() > 0


def test_vocabulary_padding_and_chat_template(tmp_path, small_tokenizer):
    tokenizer = small_tokenizer
    model = tiny_model(tokenizer, vocab_size=len(tokenizer) + 8)
    chat = copy.deepcopy(tokenizer)
    chat.chat_template = "{% for m in messages %}{{ m['content'] }}{{ eos_token }}{% endfor %}"
    meta = fields(gguf.GGUFReader(export(model, chat, tmp_path / "p.gguf", format="gguf")))
    assert len(meta["tokenizer.ggml.tokens"]) == len(tokenizer) + 8
    assert meta["tokenizer.ggml.tokens"][-1] == f"[PAD{len(tokenizer) + 7}]"
    assert meta["tokenizer.ggml.token_type"][-8:] == [gguf.TokenType.UNUSED] * 8
    assert meta["tokenizer.chat_template"] == chat.chat_template


@pytest.mark.parametrize("setting, value", [
    ("position_embedding_type", "sinusoidal"), ("position_embedding_type", "learned"),
    ("norm_type", "layernorm"), ("mlp_type", "plain"), ("hidden_act", "gelu"),
    ("rope_parameters", {"rope_type": "linear", "factor": 2.0, "rope_theta": 10000.0}),
])
def test_gguf_refuses_settings_llama_cpp_cannot_express(tmp_path, small_tokenizer, setting, value):
    tokenizer = small_tokenizer
    model = tiny_model(tokenizer, **{setting: value})
    named = "rope_parameters['rope_type']" if setting == "rope_parameters" else setting
    with pytest.raises(ValueError, match=re.escape(f"Cannot export as GGUF Llama: the model has `{named}=")):
        export(model, tokenizer, tmp_path / "x.gguf", format="gguf")
    assert not list(tmp_path.iterdir())  # refused before anything was written


def test_gguf_refuses_a_tokenizer_llama_cpp_would_split_differently(tmp_path):
    normalized = train_tokenizer(dataset=SAMPLE_TEXT, vocab_size=300, min_frequency=0, normalization="NFKC")
    model = tiny_model(normalized)
    with pytest.raises(ValueError, match="the tokenizer has `normalizer="):
        export(model, normalized, tmp_path / "x.gguf", format="gguf")
    assert not list(tmp_path.iterdir())


def test_gguf_type_only_with_gguf_format(tmp_path, small_tokenizer):
    tokenizer = small_tokenizer
    model = tiny_model(tokenizer)
    with pytest.raises(ValueError, match="gguf_type='q8_0' applies to format='gguf' only"):
        export(model, tokenizer, tmp_path / "llama", format="llama", gguf_type="q8_0")
    with pytest.raises(ValueError, match="gguf_type='q4_0'"):
        export(model, tokenizer, tmp_path / "x.gguf", format="gguf", gguf_type="q4_0")


def test_cli_export_gguf(tmp_path, small_tokenizer, capsys):
    tokenizer = small_tokenizer
    save_model_folder(tiny_model(tokenizer), tokenizer, tmp_path / "saved")
    out = tmp_path / "gguf"
    assert cli_main(["export", str(tmp_path / "saved"), str(out), "--format", "gguf", "--gguf_type", "q8_0"]) == 0
    assert (out / "model-q8_0.gguf").is_file() and [p.name for p in out.iterdir()] == ["model-q8_0.gguf"]
    assert "model-q8_0.gguf" in capsys.readouterr().out
    # an existing file is kept unless --overwrite
    assert cli_main(["export", str(tmp_path / "saved"), str(out), "--format", "gguf", "--gguf_type", "q8_0"]) == 2
    assert "--overwrite" in capsys.readouterr().err
    assert cli_main(["export", str(tmp_path / "saved"), str(out), "--format", "gguf", "--gguf_type", "q8_0",
                     "--overwrite"]) == 0
