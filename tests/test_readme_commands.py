"""Every shell block of README.md and configs/README.md runs as written, in a scratch copy of the repository.

Each command line is split as the shell would (continuations joined, comments dropped, globs expanded) and
run through `hf_custom_lm.cli.main` in this process (one torch import for all of them), in a folder that links
the repository's `hf_custom_lm/`, `configs/`, `scripts/` and `.venv/`. Training commands get small step counts
and a tiny model appended (later flags win); nothing else is changed. What the blocks name but cannot run here
is listed in NOT_RUN with the reason; `make` lines are checked with `make -n`; the user's own files the blocks
name (my_text.txt, reviews.csv, ...) are stand-ins written beforehand, and `outputs/demo/model` is a tiny model
in the place `make demo` puts its export.
"""

import glob
import re
import shlex
import subprocess
import sys
from pathlib import Path

import pytest

from hf_custom_lm.cli import main as cli
from hf_custom_lm.hub import export

from .builders import tiny_model
from .conftest import SAMPLE_TEXT
from .test_classification import write_labelled_csv
from .test_question_answering import write_squad
from .test_token_classification import SENTENCES, write_conll

ROOT = Path(__file__).resolve().parents[1]
VENV = Path(sys.executable).parents[1]
FENCED = re.compile(r"^```bash\n(.*?)^```", re.M | re.S)
INDENTED = re.compile(r"(?:^\n)((?:^    \S.*\n)+)", re.M)

# Appended to the jobs that train: later flags win, so each runs a couple of steps of a tiny model.
FAST_TRAINING = ["--max_steps", "2", "--eval_steps", "2", "--save_steps", "2", "--logging_steps", "1",
                 "--per_device_train_batch_size", "2", "--per_device_eval_batch_size", "2", "--report_to", "none"]
TINY_MODEL = ["--config_name", "tiny", "--config_overrides", "num_hidden_layers=1,max_position_embeddings=512",
              "--max_train_samples", "64", "--max_eval_samples", "4"]
TRAINING_JOBS = ("train", "finetune-classifier", "finetune-qa", "finetune-token-classifier")

# Programs the blocks name that are not this package's, and jobs that need the network.
NOT_RUN = {
    "torchrun": "several processes: tests/test_ddp.py runs scripts/train.py under torchrun",
    "accelerate": "GPU strategies (FSDP2, DeepSpeed): their files are checked by tests/test_cli.py",
    "llama-completion": "llama.cpp's program: tests/interop runs llama.cpp on an export",
    "llama-server": "llama.cpp's program: tests/interop runs llama.cpp on an export",
    "hf-custom-lm push": "needs the network and a Hub token: tests/test_hub_push.py runs it against a fake Hub",
}


def shell_blocks(path: Path) -> list[str]:
    text = path.read_text()
    blocks = FENCED.findall(text)
    for block in INDENTED.findall(text):  # configs/README.md's indented command lines
        lines = [line[4:] for line in block.splitlines()]
        if lines[0].split()[0] in ("hf-custom-lm", "torchrun", "accelerate", "python", "make"):
            blocks.append("\n".join(lines) + "\n")
    return blocks


def command_lines(block: str) -> list[list[str]]:
    """The block's commands as argv lists, as bash would split them."""
    joined = re.sub(r"\\\n\s*", " ", block)
    return [argv for line in joined.splitlines() if (argv := shlex.split(line, comments=True))]


def expand(argv: list[str]) -> list[str]:
    return [match for arg in argv for match in (sorted(glob.glob(arg)) if any(c in arg for c in "*?[") else [arg])]


def write_user_files(tokenizer):
    """Stand-ins for the files the blocks name as the user's own, and the export `make demo` writes."""
    Path("my_texts").mkdir()
    for i in range(2):
        Path(f"my_texts/part{i}.txt").write_text("\n".join(SAMPLE_TEXT[i::2] * 8))
    Path("my_text.txt").write_text("\n".join(SAMPLE_TEXT * 8))
    Path("held_out.txt").write_text("\n".join(SAMPLE_TEXT * 2))
    write_labelled_csv(Path("reviews.csv"), rows=16)
    Path("squad").mkdir()
    write_squad(Path("squad/train.json"))
    Path("ner").mkdir()
    write_conll(Path("ner/train.txt"), SENTENCES * 4)  # every tag in both splits
    export(tiny_model(tokenizer), tokenizer, "outputs/demo/model")


def run(argv: list[str]) -> str | None:
    """Run one command line; returns why it was not run, or None."""
    program = argv[0]
    for name, reason in NOT_RUN.items():
        if " ".join(argv).startswith(name):
            return reason
    if program == ".":  # `. .venv/bin/activate`: the command is then on PATH
        assert argv[1:] == [".venv/bin/activate"], argv
        found = subprocess.run(["bash", "-c", ". .venv/bin/activate && command -v hf-custom-lm"],
                               capture_output=True, text=True)
        assert found.returncode == 0 and found.stdout.strip().endswith("bin/hf-custom-lm"), found.stderr
        return None
    if program == "make":
        dry = subprocess.run(["make", "-n", "-C", str(ROOT), *argv[1:]], capture_output=True, text=True)
        assert dry.returncode == 0, dry.stderr
        return None
    assert program == "hf-custom-lm", f"unexpected program in a README block: {argv}"
    args = expand(argv[1:])
    if args and args[0] in TRAINING_JOBS:
        args += FAST_TRAINING + (TINY_MODEL if args[0] == "train" else [])
    try:
        status = cli(args)
    except SystemExit as exit:  # --help
        status = exit.code
    assert status == 0, f"{' '.join(argv)} exited with {status}"
    return None


@pytest.mark.slow
def test_readme_shell_blocks_run_as_written(tmp_path, monkeypatch, tokenizer, capsys):
    if not (VENV / "bin" / "activate").is_file():
        pytest.skip("not running from a virtualenv")
    skipped = {}
    for readme in (ROOT / "README.md", ROOT / "configs" / "README.md"):  # each read from a fresh clone
        work = tmp_path / readme.parent.name
        work.mkdir()
        for name in ("hf_custom_lm", "configs", "scripts"):
            (work / name).symlink_to(ROOT / name)
        (work / ".venv").symlink_to(VENV)
        monkeypatch.chdir(work)
        write_user_files(tokenizer)
        capsys.readouterr()  # the stand-ins' own output
        blocks = shell_blocks(readme)
        assert blocks, f"no shell block found in {readme}"
        for block in blocks:
            for argv in command_lines(block):
                reason = run(argv)
                if reason:
                    skipped[" ".join(argv[:3])] = reason
        assert "\r" not in capsys.readouterr().err  # progress as plain lines when stderr is not a terminal
    assert (tmp_path / ROOT.name / "outputs/first-hub/config.json").is_file()  # the first screen's exported model
    assert set(skipped.values()) <= set(NOT_RUN.values())


def test_shell_blocks_are_found_and_split_as_bash_would():
    blocks = shell_blocks(ROOT / "README.md")
    first_screen = command_lines(blocks[1])
    assert first_screen[0] == [".", ".venv/bin/activate"]
    assert any(argv[:2] == ["hf-custom-lm", "generate"] for argv in first_screen)
    joined = command_lines("a --x 1 \\\n    --y 2   # comment\nb\n")
    assert joined == [["a", "--x", "1", "--y", "2"], ["b"]]


def test_torch_index_reaches_pip_for_the_torch_build(tmp_path):
    venv = tmp_path / "venv"  # not made: `make -n` prints the recipe of a fresh install
    cpu = "https://download.pytorch.org/whl/cpu"
    dry = subprocess.run(["make", "-n", "-C", str(ROOT), "install", f"VENV={venv}", f"TORCH_INDEX={cpu}"],
                         capture_output=True, text=True, check=True).stdout
    assert f'pip install --index-url {cpu} "torch==' in dry
    default = subprocess.run(["make", "-n", "-C", str(ROOT), "install", f"VENV={venv}"],
                             capture_output=True, text=True, check=True).stdout
    assert "--index-url" not in default
