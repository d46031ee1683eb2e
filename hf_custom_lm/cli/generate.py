"""`hf-custom-lm generate MODEL_DIR --prompt TEXT`: sample text from a saved model with `pipeline`.

    hf-custom-lm generate outputs/demo/model --prompt "It is a truth" --max_new_tokens 60 --temperature 0.8

An empty prompt (`--prompt ""`) is an unconditional sample: generation starts from the beginning-of-text
token. A model with learned positions stops at `max_position_embeddings` (prompt + new tokens); rotary and
sinusoidal models may go past it, with transformers' warning that quality may suffer.
"""

import sys
from dataclasses import dataclass, field

from transformers import HfArgumentParser

from .common import USER_ERRORS, fail


@dataclass
class GenerateArguments:
    prompt: list[str] = field(metadata={"help": "One or more prompts."})
    max_new_tokens: int = field(default=50, metadata={"help": "Tokens to generate after the prompt."})
    do_sample: bool = field(default=True, metadata={"help": "Sample; `--do_sample false` decodes greedily."})
    temperature: float = field(default=0.8, metadata={"help": "Softmax temperature when sampling."})
    top_k: int = field(default=50, metadata={"help": "Sample among the k most likely tokens (0: all)."})
    top_p: float = field(default=0.95, metadata={"help": "Sample from the smallest set of tokens with this mass."})
    repetition_penalty: float = field(default=1.0, metadata={"help": "> 1 discourages repeating tokens."})
    num_return_sequences: int = field(default=1, metadata={"help": "Samples per prompt."})
    seed: int | None = field(default=None, metadata={"help": "Seed for reproducible samples."})

    def __post_init__(self):
        # transformers checks max_new_tokens, temperature and top_k; these two it would take without a word.
        if not 0 < self.top_p <= 1:
            raise ValueError(f"`top_p` must be in (0, 1], got {self.top_p}; 1 samples from every token.")
        if self.num_return_sequences < 1:
            raise ValueError(f"`num_return_sequences` must be at least 1, got {self.num_return_sequences}.")


def check_learned_positions_fit(model, tokenizer, prompts: list[str], max_new_tokens: int) -> None:
    """A learned position table ends at `max_position_embeddings`: refuse before generating what cannot fit.

    Rotary and sinusoidal positions are computed, so those models may go past it (transformers warns); a plain
    Llama folder (`export --format llama`) has rotary positions and no `position_embedding_type`.
    """
    config = model.config
    if getattr(config, "position_embedding_type", "rope") != "learned":
        return
    longest = max(len(tokenizer(prompt)["input_ids"]) for prompt in prompts) or 1  # empty: starts from bos
    if longest + max_new_tokens > config.max_position_embeddings:
        raise ValueError(
            f"The prompt ({longest} tokens) plus `max_new_tokens` ({max_new_tokens}) exceeds this model's "
            f"`max_position_embeddings` ({config.max_position_embeddings}), the end of its learned position table; "
            f"use `--max_new_tokens {max(config.max_position_embeddings - longest, 0)}` or less, or a shorter prompt."
        )


def generate_text(model_dir: str, args: GenerateArguments) -> list[list[str]]:
    """Per prompt, `num_return_sequences` continuations (prompt included)."""
    from pathlib import Path

    from transformers import pipeline, set_seed

    from ..folders import load_model, load_tokenizer_from

    if not Path(model_dir).is_dir():
        raise FileNotFoundError(f"Model folder {model_dir!r} does not exist; pass a folder written by training.")
    model, tokenizer = load_model(model_dir), load_tokenizer_from(model_dir)
    check_learned_positions_fit(model, tokenizer, args.prompt, args.max_new_tokens)
    if args.seed is not None:
        set_seed(args.seed)
    generator = pipeline("text-generation", model=model, tokenizer=tokenizer)
    sampling = dict(temperature=args.temperature, top_k=args.top_k, top_p=args.top_p) if args.do_sample else {}
    outputs = generator(
        args.prompt,
        max_new_tokens=args.max_new_tokens,
        do_sample=args.do_sample,
        repetition_penalty=args.repetition_penalty,
        num_return_sequences=args.num_return_sequences,
        **sampling,
    )
    return [[sample["generated_text"] for sample in per_prompt] for per_prompt in outputs]


def build_parser() -> HfArgumentParser:
    parser = HfArgumentParser(GenerateArguments, prog="hf-custom-lm generate", description=__doc__.split("\n\n")[0])
    parser.add_argument("model_dir", help="A folder written by training (model + tokenizer).")
    return parser


def main(argv: list[str]) -> int:
    parser = build_parser()
    try:
        args, namespace = parser.parse_args_into_dataclasses(args=argv)
        samples = generate_text(namespace.model_dir, args)
    except USER_ERRORS as error:
        return fail("hf-custom-lm generate", error)
    for prompt_samples in samples:
        for text in prompt_samples:
            print(text)
            print("-" * 40)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
