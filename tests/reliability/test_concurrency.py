"""One model and one tokenizer shared by 8 threads give the sequential answers."""

from concurrent.futures import ThreadPoolExecutor

import torch
from transformers import pipeline

from hf_custom_lm import CustomLMForCausalLM

from ..conftest import tiny_config

PROMPTS = ["Once upon a time", "The fox", "敏捷的棕色狐狸", "Attention is", "A", "It read about kings",
           "softmax(QK^T)", "The quick brown fox jumps over"]


def test_pipeline_from_eight_threads_matches_sequential_calls(tokenizer):
    torch.manual_seed(0)
    model = CustomLMForCausalLM(tiny_config(vocab_size=len(tokenizer), pad_token_id=tokenizer.pad_token_id,
                                            eos_token_id=tokenizer.eos_token_id, bos_token_id=tokenizer.bos_token_id))
    generator = pipeline("text-generation", model=model.eval(), tokenizer=tokenizer)

    def run(prompt):
        return generator(prompt, max_new_tokens=12, do_sample=False)[0]["generated_text"]

    sequential = [run(p) for p in PROMPTS]
    with ThreadPoolExecutor(max_workers=8) as pool:
        threaded = list(pool.map(run, PROMPTS * 2))
    assert threaded == sequential * 2


def test_tokenizer_is_safe_to_share_across_threads(tokenizer):
    texts = [p * (i + 1) for i, p in enumerate(PROMPTS)] * 4
    expected = [tokenizer(t)["input_ids"] for t in texts]
    with ThreadPoolExecutor(max_workers=8) as pool:
        got = list(pool.map(lambda t: tokenizer(t)["input_ids"], texts))
        decoded = list(pool.map(tokenizer.decode, got))
    assert got == expected and decoded == texts
