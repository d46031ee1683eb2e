"""The transformers features users reach for: checkpointing, outputs, embeddings input, loss API, PEFT."""

import pytest
import torch

from transformers import AutoModelForCausalLM

from hf_custom_lm import CustomLMForCausalLM

from .conftest import tiny_config


def loss_and_grads(model, batch):
    model.zero_grad()
    loss = model(batch, labels=batch).loss
    loss.backward()
    return loss.detach(), {n: p.grad.clone() for n, p in model.named_parameters()}


def test_gradient_checkpointing_gives_the_same_loss_and_gradients(seeded):
    model = CustomLMForCausalLM(tiny_config()).train()
    batch = torch.randint(2, 512, (2, 12))
    loss, grads = loss_and_grads(model, batch)
    model.activation_checkpointing_enable()  # the 5.x name of gradient_checkpointing_enable
    assert model.is_activation_checkpointing
    loss_ckpt, grads_ckpt = loss_and_grads(model, batch)
    torch.testing.assert_close(loss_ckpt, loss)
    for name in grads:
        torch.testing.assert_close(grads_ckpt[name], grads[name], atol=1e-6, rtol=1e-5, msg=name)


def test_hidden_states_and_attentions_are_returned(seeded):
    model = AutoModelForCausalLM.from_config(tiny_config(), attn_implementation="eager").eval()
    out = model(torch.randint(2, 512, (2, 7)), output_hidden_states=True, output_attentions=True)
    assert len(out.hidden_states) == 3  # embeddings + 2 layers (the last after the final norm)
    assert all(h.shape == (2, 7, 64) for h in out.hidden_states)
    assert len(out.attentions) == 2 and out.attentions[0].shape == (2, 4, 7, 7)
    torch.testing.assert_close(out.attentions[0].sum(-1), torch.ones(2, 4, 7))


def test_inputs_embeds_equals_input_ids(seeded):
    model = CustomLMForCausalLM(tiny_config()).eval()
    ids = torch.randint(2, 512, (2, 6))
    with torch.no_grad():
        a = model(input_ids=ids).logits
        b = model(inputs_embeds=model.get_input_embeddings()(ids)).logits
    torch.testing.assert_close(a, b)


def test_logits_to_keep_projects_only_the_last_positions(seeded):
    model = CustomLMForCausalLM(tiny_config()).eval()
    ids = torch.randint(2, 512, (2, 9))
    with torch.no_grad():
        full = model(ids).logits
        last = model(ids, logits_to_keep=1).logits
    assert last.shape == (2, 1, 512)
    torch.testing.assert_close(last, full[:, -1:])


def test_loss_honours_ignore_index_and_num_items_in_batch(seeded):
    model = CustomLMForCausalLM(tiny_config()).eval()
    ids = torch.randint(2, 512, (2, 8))
    labels = ids.clone()
    labels[0, :4] = -100
    with torch.no_grad():
        logits = model(ids).logits
        mean_loss = model(ids, labels=labels).loss
        summed = model(ids, labels=labels, num_items_in_batch=torch.tensor(100)).loss
    shift_logits, shift_labels = logits[:, :-1].reshape(-1, 512), labels[:, 1:].reshape(-1)
    expected_sum = torch.nn.functional.cross_entropy(shift_logits, shift_labels, ignore_index=-100, reduction="sum")
    n_valid = (shift_labels != -100).sum()
    torch.testing.assert_close(mean_loss, expected_sum / n_valid)
    torch.testing.assert_close(summed, expected_sum / 100)


def test_return_dict_false_gives_a_tuple(seeded):
    model = CustomLMForCausalLM(tiny_config()).eval()
    ids = torch.randint(2, 512, (1, 4))
    out = model(ids, labels=ids, return_dict=False, use_cache=False)
    assert isinstance(out, tuple) and out[0].ndim == 0 and out[1].shape == (1, 4, 512)


def test_peft_lora_attaches_by_name_and_trains(seeded):
    peft = pytest.importorskip("peft")
    model = CustomLMForCausalLM(tiny_config())
    lora = peft.get_peft_model(model, peft.LoraConfig(r=4, lora_alpha=8, target_modules=["q_proj", "v_proj"]))
    trainable = [n for n, p in lora.named_parameters() if p.requires_grad]
    assert trainable and all("lora_" in n for n in trainable)
    assert sum("q_proj" in n for n in trainable) == 4  # A and B in each of 2 layers
    batch = torch.randint(2, 512, (2, 10))
    optimizer = torch.optim.AdamW([p for p in lora.parameters() if p.requires_grad], lr=1e-2)
    before = lora(batch, labels=batch).loss.item()
    for _ in range(5):
        loss = lora(batch, labels=batch).loss
        loss.backward()
        optimizer.step()
        optimizer.zero_grad()
    assert lora(batch, labels=batch).loss.item() < before


@pytest.mark.parametrize("position_embedding_type", ["rope", "learned"])
def test_positions_that_restart_keep_attention_inside_each_packed_document(seeded, position_embedding_type):
    # `--document_masking` blocks: positions restart where a document starts; transformers' mask builder
    # then keeps each document to itself, so every document's logits are those it gets alone.
    model = CustomLMForCausalLM(tiny_config(position_embedding_type=position_embedding_type)).train()
    ids = torch.randint(2, 512, (2, 12))
    starts = [[0, 5, 7], [0, 9]]  # documents of 5, 2 and 5 tokens; of 9 and 3
    position_ids = torch.tensor([[0, 1, 2, 3, 4, 0, 1, 0, 1, 2, 3, 4], [*range(9), 0, 1, 2]])
    packed = model(ids, position_ids=position_ids).logits
    for row, row_starts in enumerate(starts):
        for start, end in zip(row_starts, [*row_starts[1:], 12]):
            alone = model(ids[row : row + 1, start:end]).logits
            torch.testing.assert_close(packed[row : row + 1, start:end], alone, atol=1e-5, rtol=1e-5)
    # without restarts the second document would see the first
    assert not torch.allclose(model(ids).logits[0, 5:7], packed[0, 5:7], atol=1e-3)


def test_position_ids_reach_the_attention_function(seeded):
    # Flash attention finds packed documents from `position_ids` (the mask builder leaves it no mask), so they
    # must reach the attention function, as in Llama.
    from transformers import AttentionInterface
    from transformers.integrations.sdpa_attention import sdpa_attention_forward

    seen = []

    def recording_sdpa(module, *args, **kwargs):
        seen.append(kwargs.get("position_ids"))
        return sdpa_attention_forward(module, *args, **kwargs)

    AttentionInterface.register("recording_sdpa", recording_sdpa)
    model = CustomLMForCausalLM(tiny_config(attn_implementation="recording_sdpa")).train()
    position_ids = torch.tensor([[0, 1, 2, 0, 1, 2]])
    model(torch.randint(2, 512, (1, 6)), position_ids=position_ids)
    assert len(seen) == model.config.num_hidden_layers
    assert all(torch.equal(p, position_ids) for p in seen)
