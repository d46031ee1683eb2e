"""The default architecture is Llama: same state dict, same logits, same greedy tokens."""

import torch
from transformers import LlamaConfig, LlamaForCausalLM

from hf_custom_lm import CustomLMForCausalLM

from .conftest import tiny_config


def llama_twin(model: CustomLMForCausalLM) -> LlamaForCausalLM:
    c = model.config
    llama_config = LlamaConfig(
        vocab_size=c.vocab_size,
        hidden_size=c.hidden_size,
        intermediate_size=c.intermediate_size,
        num_hidden_layers=c.num_hidden_layers,
        num_attention_heads=c.num_attention_heads,
        num_key_value_heads=c.num_key_value_heads,
        head_dim=c.head_dim,
        max_position_embeddings=c.max_position_embeddings,
        rms_norm_eps=c.rms_norm_eps,
        rope_parameters=dict(c.rope_parameters),
        tie_word_embeddings=c.tie_word_embeddings,
        bos_token_id=c.bos_token_id,
        eos_token_id=c.eos_token_id,
        pad_token_id=c.pad_token_id,
    )
    llama = LlamaForCausalLM(llama_config).eval()
    missing, unexpected = llama.load_state_dict(model.state_dict(), strict=False)  # the assert names the keys
    assert not missing and not unexpected, (missing, unexpected)
    return llama


def test_state_dict_loads_into_llama_and_logits_match(seeded):
    model = CustomLMForCausalLM(tiny_config()).eval()
    llama = llama_twin(model)
    assert set(model.state_dict()) == set(llama.state_dict())
    input_ids = torch.randint(2, 512, (3, 17))
    with torch.no_grad():
        ours = model(input_ids).logits
        theirs = llama(input_ids).logits
    torch.testing.assert_close(ours, theirs, atol=1e-5, rtol=0)


def test_logits_match_llama_with_left_padding(seeded):
    model = CustomLMForCausalLM(tiny_config()).eval()
    llama = llama_twin(model)
    input_ids = torch.randint(2, 512, (2, 9))
    attention_mask = torch.ones_like(input_ids)
    attention_mask[1, :4] = 0
    with torch.no_grad():
        ours = model(input_ids, attention_mask=attention_mask).logits
        theirs = llama(input_ids, attention_mask=attention_mask).logits
    real = attention_mask.bool()
    torch.testing.assert_close(ours[real], theirs[real], atol=1e-5, rtol=0)


def test_greedy_generate_matches_llama(seeded):
    model = CustomLMForCausalLM(tiny_config()).eval()
    llama = llama_twin(model)
    prompt = torch.randint(2, 512, (2, 6))
    kwargs = dict(max_new_tokens=12, do_sample=False, pad_token_id=1, eos_token_id=None)
    ours = model.generate(prompt, **kwargs)
    theirs = llama.generate(prompt, **kwargs)
    assert ours.shape == (2, 18)
    assert torch.equal(ours, theirs)


def test_training_loss_and_gradients_match_llama(seeded):
    """Training mode runs ours through its own autograd functions (norms, rotary, SwiGLU, the fused loss):
    the loss and every parameter's gradient must still be Llama's."""
    model = CustomLMForCausalLM(tiny_config()).train()
    llama = llama_twin(model).train()
    input_ids = torch.randint(2, 512, (3, 13))
    labels = input_ids.clone()
    labels[1, :4] = -100
    ours, theirs = model(input_ids, labels=labels), llama(input_ids, labels=labels)
    assert ours.logits is None  # the fused path ran
    torch.testing.assert_close(ours.loss, theirs.loss, atol=1e-6, rtol=1e-6)
    ours.loss.backward()
    theirs.loss.backward()
    llama_grads = dict(llama.named_parameters())
    for name, parameter in model.named_parameters():
        torch.testing.assert_close(parameter.grad, llama_grads[name].grad, atol=1e-6, rtol=1e-4, msg=name)
