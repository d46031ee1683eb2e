"""Bad input on every `hf-custom-lm` subcommand ends in one line `hf-custom-lm <sub>: error: <message>` on
stderr naming the problem, and exit code 2; never a traceback, a hang or a silent wrong answer.

The table `CASES` is the contract: one row per (subcommand, bad input), with a fragment the message must
hold. Commands run in this process through `hf_custom_lm.cli.main`; argparse's own refusals (a missing
positional, a value of the wrong type, a choice not offered) exit through `SystemExit(2)` with the same
one-line format. Two behaviours that are not errors are pinned down at the end: an empty prompt samples
from the beginning-of-text token, and a rotary model may generate past `max_position_embeddings`.
"""

import json
import logging

import pytest
import torch
from transformers import AutoModelForCausalLM, AutoTokenizer

from hf_custom_lm import CustomLMConfig, CustomLMForCausalLM
from hf_custom_lm.cli import main as cli
from hf_custom_lm.folders import save_model_folder

from ..test_training import corpus_text, write_jsonl

SUBCOMMANDS = ["train", "evaluate", "generate", "export", "push", "train-tokenizer", "finetune-classifier",
               "finetune-qa", "finetune-token-classifier"]


@pytest.fixture(scope="module")
def paths(tmp_path_factory, tokenizer):
    """`{name: path}` of the files and folders the cases refer to as `{name}` (dots as underscores)."""
    root = tmp_path_factory.mktemp("bad_input")
    files = {
        "empty.txt": b"",
        "binary.txt": bytes(range(256)) * 8,  # 0x80-0xff: not UTF-8
        "binary.jsonl": b"\x89PNG\r\n\x1a\n" + bytes(range(256)) * 8,
        "binary.csv": b"\xff\xfe\x00" + bytes(range(256)) * 8,
        "header_only.csv": b"text,label\n",
        "labels.csv": b"text,label\nwhat a lovely day,pos\nawful film,neg\nlovely,pos\nawful,neg\n",
        "a_file": b"not a folder",
        "squad.json": json.dumps({"data": [{"paragraphs": [{"context": "Alice lives in Paris.", "qas": [
            {"id": "q1", "question": "Where does Alice live?", "answers": [{"text": "Paris", "answer_start": 15}]},
        ]}]}]}).encode(),
        "tags.txt": b"Alice B-PER\nlives O\nin O\nParis B-LOC\n\nBob B-PER\nsleeps O\n",
    }
    for name, content in files.items():
        (root / name).write_bytes(content)
    write_jsonl(root / "corpus.jsonl", [corpus_text()[:2000]])
    for name in ("empty_dir", "pushable"):
        (root / name).mkdir()
    (root / "pushable" / "config.json").write_text("{}")  # what `push` checks before the repository id
    (root / "pushable" / "README.md").write_text("---\nlicense: apache-2.0\n---\n")

    def model(name, **overrides):
        torch.manual_seed(0)
        config = CustomLMConfig.from_preset(
            "tiny", vocab_size=len(tokenizer), bos_token_id=tokenizer.eos_token_id,
            eos_token_id=tokenizer.eos_token_id, pad_token_id=tokenizer.pad_token_id, **overrides,
        )
        save_model_folder(CustomLMForCausalLM(config), tokenizer, root / name)

    model("model")
    model("learned16", position_embedding_type="learned", max_position_embeddings=16)
    model("rope16", max_position_embeddings=16)
    (root / "config_only").mkdir()
    CustomLMConfig.from_pretrained(root / "model").save_pretrained(root / "config_only")
    # `{binary_txt}`, not `{binary.txt}`: str.format reads a dot as attribute access
    named = {p.name.replace(".", "_"): str(p) for p in root.iterdir()}
    return named | {"missing": str(root / "missing"), "root": str(root)}


# (subcommand, argv after the subcommand with {name} placeholders, fragment the error line must hold)
CASES = [
    # --- train ---
    ("train", "--train_file {missing}.txt", "missing.txt"),
    ("train", "--train_file {empty_txt}", "is empty"),
    ("train", "--train_file {binary_txt}", "binary.txt"),
    ("train", "--train_file {binary_jsonl}", "binary.jsonl"),
    ("train", "--bogus 1", "--bogus"),
    ("train", "--block_size 0", "`block_size` must be at least 2"),
    ("train", "--max_steps many", "invalid int value: 'many'"),
    ("train", "--model_name_or_path {missing}", "is not a folder"),
    ("train", "--model_name_or_path {empty_dir}", "config.json"),
    ("train", "--train_file {corpus_jsonl} --output_dir {a_file}/run", "`output_dir`"),
    ("train", "--config {missing}.yaml", "missing.yaml"),
    # --- evaluate ---
    ("evaluate", "{model} --file {missing}.txt", "missing.txt"),
    ("evaluate", "{model} --file {empty_txt}", "is empty"),
    ("evaluate", "{model} --file {binary_txt}", "binary.txt"),
    ("evaluate", "{model} --file {corpus_jsonl} --block_size 0", "block_size=0"),
    ("evaluate", "{model} --file {corpus_jsonl} --block_size -4", "block_size=-4"),
    ("evaluate", "{model} --file {corpus_jsonl} --batch_size 0", "batch_size"),
    ("evaluate", "{missing} --file {corpus_jsonl}", "does not exist"),
    ("evaluate", "{empty_dir} --file {corpus_jsonl}", "config.json"),
    ("evaluate", "{model} --file {corpus_jsonl} --bogus", "--bogus"),
    ("evaluate", "--file {corpus_jsonl}", "the following arguments are required: model_dir"),
    # --- generate ---
    ("generate", "{model} --prompt Hello --max_new_tokens -3", "max_new_tokens"),
    ("generate", "{model} --prompt Hello --max_new_tokens 0", "max_new_tokens"),
    ("generate", "{model} --prompt Hello --temperature 0", "temperature"),
    ("generate", "{model} --prompt Hello --top_p 1.5", "top_p"),
    ("generate", "{model} --prompt Hello --top_k -1", "top_k"),
    ("generate", "{model} --prompt Hello --num_return_sequences 0", "num_return_sequences"),
    ("generate", "{learned16} --prompt Hello --max_new_tokens 40", "max_position_embeddings"),
    ("generate", "{missing} --prompt Hello", "does not exist"),
    ("generate", "{empty_dir} --prompt Hello", "config.json"),
    ("generate", "{config_only} --prompt Hello", "model.safetensors"),
    ("generate", "{model} --prompt Hello --bogus", "--bogus"),
    ("generate", "{model}", "the following arguments are required: --prompt"),
    # --- export ---
    ("export", "{missing} {root}/out", "is not a folder"),
    ("export", "{empty_dir} {root}/out", "config.json"),
    ("export", "{model} {root}/out --format onnx", "invalid choice: 'onnx'"),
    ("export", "{model} {root}/out --bogus", "--bogus"),
    # --- push ---
    ("push", "{missing} --repo_id user/name", "not an exported folder"),
    ("push", "{pushable} --repo_id nonsense", "'namespace/name'"),
    ("push", "{pushable} --repo_id user/name --bogus", "--bogus"),
    # --- train-tokenizer ---
    ("train-tokenizer", "--output_dir {root}/tok --files {missing}.txt", "missing.txt"),
    ("train-tokenizer", "--output_dir {root}/tok --files {empty_txt}", "is empty"),
    ("train-tokenizer", "--output_dir {root}/tok --files {binary_txt}", "not valid UTF-8"),
    ("train-tokenizer", "--output_dir {root}/tok --files {corpus_jsonl} --vocab_size 0", "vocab_size=0"),
    ("train-tokenizer", "--output_dir {root}/tok", "exactly one of --files"),
    ("train-tokenizer", "--output_dir {root}/tok --dataset_name json --data_files {binary_jsonl}", "binary.jsonl"),
    ("train-tokenizer", "--output_dir {a_file}/tok --files {corpus_jsonl} --vocab_size 300", "a_file/tok"),
    ("train-tokenizer", "--output_dir {root}/tok --files {corpus_jsonl} --bogus", "--bogus"),
    # --- finetune-classifier ---
    ("finetune-classifier", "--model_name_or_path {missing} --train_file {labels_csv}", "is not a folder"),
    ("finetune-classifier", "--model_name_or_path {model} --train_file {missing}.csv", "missing.csv"),
    ("finetune-classifier", "--model_name_or_path {model} --train_file {empty_txt}", "not a .csv, .json or .jsonl"),
    ("finetune-classifier", "--model_name_or_path {model} --train_file {binary_csv}", "binary.csv"),
    ("finetune-classifier", "--model_name_or_path {empty_dir} --train_file {labels_csv}", "config.json"),
    ("finetune-classifier", "--model_name_or_path {model} --train_file {labels_csv} --bogus", "--bogus"),
    ("finetune-classifier", "--model_name_or_path {model} --train_file {labels_csv} --output_dir {a_file}/c",
     "`output_dir`"),
    ("finetune-classifier", "--model_name_or_path {model} --train_file {header_only_csv}", "header_only.csv"),
    ("finetune-classifier", "--model_name_or_path {model} --train_file {labels_csv} --max_length 0", "max_length"),
    # --- finetune-qa ---
    ("finetune-qa", "--model_name_or_path {missing} --train_file {squad_json}", "is not a folder"),
    ("finetune-qa", "--model_name_or_path {empty_dir} --train_file {squad_json}", "config.json"),
    ("finetune-qa", "--model_name_or_path {model} --train_file {missing}.json", "missing.json"),
    ("finetune-qa", "--model_name_or_path {model} --train_file {binary_jsonl}", "binary.jsonl"),
    ("finetune-qa", "--model_name_or_path {model} --train_file {squad_json} --max_length 0", "max_length"),
    ("finetune-qa", "--model_name_or_path {model} --train_file {squad_json} --bogus", "--bogus"),
    ("finetune-qa", "--model_name_or_path {model} --train_file {squad_json} --output_dir {a_file}/q", "`output_dir`"),
    # --- finetune-token-classifier ---
    ("finetune-token-classifier", "--model_name_or_path {missing} --train_file {tags_txt}", "is not a folder"),
    ("finetune-token-classifier", "--model_name_or_path {empty_dir} --train_file {tags_txt}", "config.json"),
    ("finetune-token-classifier", "--model_name_or_path {model} --train_file {missing}.txt", "missing.txt"),
    ("finetune-token-classifier", "--model_name_or_path {model} --train_file {binary_txt}", "binary.txt"),
    ("finetune-token-classifier", "--model_name_or_path {model} --train_file {tags_txt} --max_length 0", "max_length"),
    ("finetune-token-classifier", "--model_name_or_path {model} --train_file {tags_txt} --bogus", "--bogus"),
    ("finetune-token-classifier", "--model_name_or_path {model} --train_file {tags_txt} --output_dir {a_file}/t",
     "`output_dir`"),
]


def case_id(case) -> str:
    values = case.values if hasattr(case, "values") else case
    return f"{values[0]}:{values[1]}"


@pytest.fixture(autouse=True)
def fresh_log_handlers():
    """The CLI adds a stderr handler once per process; bound to one test's captured stderr, it would write
    "--- Logging error ---" tracebacks into the next test's. Each test starts without it."""
    logger = logging.getLogger("hf_custom_lm")
    handlers = list(logger.handlers)
    yield
    logger.handlers = handlers


def run_cli(argv: list[str], capsys) -> tuple[int, str, str]:
    capsys.readouterr()
    try:
        code = cli(argv)
    except SystemExit as exit_:  # argparse refusing the command line
        code = exit_.code
    captured = capsys.readouterr()
    return code, captured.out, captured.err


@pytest.mark.parametrize("subcommand, arguments, fragment", CASES, ids=[case_id(c) for c in CASES])
def test_bad_input_ends_in_one_clear_error_line(paths, tmp_path, monkeypatch, capsys, subcommand, arguments,
                                                fragment):
    monkeypatch.chdir(tmp_path)  # runs' default output_dir lands here
    argv = [subcommand, *arguments.format(**paths).split()]
    if subcommand in ("train", "finetune-classifier", "finetune-qa", "finetune-token-classifier"):
        defaults = ["--report_to", "none", "--tokenizer_name", paths["model"]] if subcommand == "train" else \
            ["--report_to", "none"]
        if "--output_dir" not in argv:
            defaults += ["--output_dir", str(tmp_path / "out")]
        argv += defaults
    code, _, err = run_cli(argv, capsys)
    assert code == 2, f"exit code {code}"  # every subcommand, as argparse exits on a bad command line
    assert "Traceback" not in err, err[-3000:]
    lines = err.strip().splitlines()
    prefix = f"hf-custom-lm {subcommand}: error: "
    errors = [line for line in lines if line.startswith(prefix)]
    assert len(errors) == 1 and lines[-1] == errors[0], err[-3000:]
    assert fragment in errors[0], errors[0]
    print(errors[0])  # `pytest -rP` shows every message (the table in README.md)


def test_the_table_covers_every_subcommand():
    from hf_custom_lm.cli import SUBCOMMANDS as registered

    covered = {(c.values if hasattr(c, "values") else c)[0] for c in CASES}
    assert covered == set(registered) == set(SUBCOMMANDS)


# ---------------------------------------------------------------------------------------------------------------
# Not errors
# ---------------------------------------------------------------------------------------------------------------


def test_an_empty_prompt_samples_from_the_beginning_of_text_token(paths, capsys):
    """`--prompt ""` is an unconditional sample: generation starts from `bos_token_id` (the pipeline's rule)."""
    code, out, err = run_cli(["generate", paths["model"], "--prompt", "", "--max_new_tokens", "6",
                              "--do_sample", "false"], capsys)
    assert code == 0, err
    model = AutoModelForCausalLM.from_pretrained(paths["model"])
    tokenizer = AutoTokenizer.from_pretrained(paths["model"])
    bos = torch.tensor([[model.config.bos_token_id]])
    expected = model.generate(bos, attention_mask=torch.ones_like(bos), max_new_tokens=6, do_sample=False)
    assert out.splitlines()[0] == tokenizer.decode(expected[0], skip_special_tokens=True).splitlines()[0]


def test_a_rotary_model_may_generate_past_max_position_embeddings(paths, capsys):
    """Rotary (and sinusoidal) positions have no table to run off; transformers warns, and the tokens come."""
    code, out, err = run_cli(["generate", paths["rope16"], "--prompt", "Hello", "--max_new_tokens", "24",
                              "--do_sample", "false"], capsys)
    assert code == 0, err
    tokenizer = AutoTokenizer.from_pretrained(paths["rope16"])
    text = out.split("\n" + "-" * 40)[0]
    assert len(tokenizer(text)["input_ids"]) > 16


def test_a_learned_position_model_generates_up_to_its_table(paths, capsys):
    """The limit is exact: prompt + max_new_tokens == max_position_embeddings still runs."""
    tokenizer = AutoTokenizer.from_pretrained(paths["learned16"])
    prompt_tokens = len(tokenizer("Hello")["input_ids"])
    code, _, err = run_cli(["generate", paths["learned16"], "--prompt", "Hello", "--max_new_tokens",
                            str(16 - prompt_tokens), "--do_sample", "false"], capsys)
    assert code == 0, err
    code, _, err = run_cli(["generate", paths["learned16"], "--prompt", "Hello", "--max_new_tokens",
                            str(17 - prompt_tokens), "--do_sample", "false"], capsys)
    assert code == 2 and "max_position_embeddings" in err
