"""The model runs inside transformers' own pipelines with a real tokenizer."""

import torch
from transformers import pipeline

from hf_custom_lm import CustomLMForCausalLM, CustomLMForSequenceClassification

from .conftest import tiny_config


def test_text_generation_pipeline(tokenizer, tmp_path):
    torch.manual_seed(0)
    model = CustomLMForCausalLM(tiny_config(vocab_size=len(tokenizer), pad_token_id=tokenizer.pad_token_id,
                                            eos_token_id=tokenizer.eos_token_id, bos_token_id=tokenizer.bos_token_id))
    model.save_pretrained(tmp_path)
    tokenizer.save_pretrained(tmp_path)
    generator = pipeline("text-generation", model=str(tmp_path))
    out = generator(["Once upon a time", "The fox"], max_new_tokens=8, do_sample=False)
    texts = [o[0]["generated_text"] for o in out]
    assert texts[0].startswith("Once upon a time") and texts[1].startswith("The fox")
    assert all(len(t) > len(p) for t, p in zip(texts, ["Once upon a time", "The fox"]))


def test_text_classification_pipeline(tokenizer):
    torch.manual_seed(0)
    config = tiny_config(vocab_size=len(tokenizer), pad_token_id=tokenizer.pad_token_id,
                         eos_token_id=tokenizer.eos_token_id, bos_token_id=tokenizer.bos_token_id,
                         id2label={0: "negative", 1: "positive"}, label2id={"negative": 0, "positive": 1})
    model = CustomLMForSequenceClassification(config).eval()
    classifier = pipeline("text-classification", model=model, tokenizer=tokenizer)
    out = classifier(["I loved it", "A long and rather tedious afternoon"])
    assert [set(o) for o in out] == [{"label", "score"}] * 2
    assert all(o["label"] in ("negative", "positive") and 0.5 <= o["score"] <= 1 for o in out)


def test_classifier_pools_the_last_real_token_with_either_padding_side(tokenizer):
    torch.manual_seed(0)
    model = CustomLMForSequenceClassification(
        tiny_config(vocab_size=len(tokenizer), pad_token_id=tokenizer.pad_token_id, num_labels=2)
    ).eval()
    texts = ["short", "a somewhat longer sentence here"]
    logits = {}
    for side in ("left", "right"):
        tokenizer.padding_side = side
        batch = tokenizer(texts, padding=True, return_tensors="pt")
        if side == "left":  # positions as generate() would give them
            batch["position_ids"] = (batch["attention_mask"].cumsum(-1) - 1).clamp(min=0)
        with torch.no_grad():
            logits[side] = model(**batch).logits
    tokenizer.padding_side = "right"
    with torch.no_grad():
        alone = model(**tokenizer(texts[:1], return_tensors="pt")).logits
    torch.testing.assert_close(logits["left"], logits["right"], atol=1e-5, rtol=0)
    torch.testing.assert_close(logits["right"][:1], alone, atol=1e-5, rtol=0)
