"""Checkpoints of a run folder: which exist, which are complete, and which one a run resumes from.

The Trainer writes `checkpoint-<step>` folders; a crash, a signal or a full disk can leave the newest one
half-written. Every reader of a run folder (resume, export) lists checkpoints through this module.
"""

import json
import logging
import zipfile
from pathlib import Path

from transformers.trainer_utils import PREFIX_CHECKPOINT_DIR

from ..folders import check_model_folder

logger = logging.getLogger(__name__)

# Written by `Trainer._save_checkpoint` after the model, optimizer, scheduler and RNG states: its presence
# (and the model's) marks a checkpoint whose save finished. The JIT-checkpoint sentinel marks one that did not.
TRAINER_STATE_NAME = "trainer_state.json"
MODEL_FILES = ("model.safetensors", "model.safetensors.index.json")
INCOMPLETE_SENTINEL = "checkpoint-is-incomplete.txt"



def _has_optimizer_state(path: Path) -> bool:
    """`optimizer.pt` + `scheduler.pt` (one process, DDP), or FSDP's `optimizer.bin` / `optimizer_0` folder, or
    DeepSpeed's `global_step<N>` folder."""
    if (path / "optimizer.pt").is_file():
        # torch.save writes a zip archive; a cut one has no central directory at its end.
        return zipfile.is_zipfile(path / "optimizer.pt") and (path / "scheduler.pt").is_file()
    return (path / "optimizer.bin").is_file() or any(
        child.is_dir() and child.name.startswith(("optimizer", "global_step")) for child in path.iterdir()
    )


def is_complete_checkpoint(path: str | Path) -> bool:
    """A checkpoint folder whose save finished: whole safetensors weights, optimizer (and scheduler) state and a
    readable trainer_state.json, no sentinel.

    A SIGKILL leaves at worst a folder without trainer_state.json, which the Trainer writes last; a power cut
    can also leave earlier files empty or cut, as writes are not synced. Resuming without the optimizer state
    would restart AdamW from zero without a word, so such a folder does not count either.
    """
    path = Path(path)
    if (path / INCOMPLETE_SENTINEL).exists() or not any((path / name).is_file() for name in MODEL_FILES):
        return False
    try:
        json.loads((path / TRAINER_STATE_NAME).read_text())
        check_model_folder(path)  # every safetensors file opens and covers its header's tensors
    except (OSError, ValueError):
        return False
    return _has_optimizer_state(path)


def checkpoint_folders(output_dir: str | Path) -> list[Path]:
    """`checkpoint-<step>` folders of `output_dir`, newest step first."""
    output_dir = Path(output_dir)
    if not output_dir.is_dir():
        return []
    found = []
    for path in output_dir.glob(f"{PREFIX_CHECKPOINT_DIR}-*"):
        step = path.name[len(PREFIX_CHECKPOINT_DIR) + 1 :]
        if path.is_dir() and step.isdigit():
            found.append((int(step), path))
    return [path for _, path in sorted(found, reverse=True)]


def last_complete_checkpoint(output_dir: str | Path) -> Path | None:
    """The newest complete checkpoint in `output_dir`, skipping ones a crash or a signal left half-written."""
    for path in checkpoint_folders(output_dir):
        if is_complete_checkpoint(path):
            return path
        logger.warning(f"Skipping incomplete checkpoint {path} (interrupted while saving, or damaged).")
    return None


def resolve_resume_checkpoint(training_args) -> str | None:
    """The checkpoint to resume from, or None for a fresh run; refuses to start fresh over old checkpoints."""
    output_dir = training_args.output_dir
    if training_args.resume_from_checkpoint:
        if not is_complete_checkpoint(training_args.resume_from_checkpoint):
            raise FileNotFoundError(
                f"`resume_from_checkpoint` {training_args.resume_from_checkpoint!r} is not a complete checkpoint "
                f"(needs {MODEL_FILES[0]} and {TRAINER_STATE_NAME}); use `--resume` to pick the newest complete one."
            )
        return str(training_args.resume_from_checkpoint)
    if training_args.resume:
        checkpoint = last_complete_checkpoint(output_dir)
        if checkpoint is None:
            incomplete = [path.name for path in checkpoint_folders(output_dir)]
            raise FileNotFoundError(
                f"`--resume` found no complete checkpoint in {output_dir!r}"
                + (f" ({', '.join(incomplete)}: interrupted while saving; delete them to start over)" if incomplete
                   else "; drop `--resume` to start a new run") + "."
            )
        logger.info(f"Resuming from {checkpoint}")
        return str(checkpoint)
    existing = checkpoint_folders(output_dir)
    if existing:
        raise ValueError(
            f"{output_dir!r} already holds checkpoints ({existing[0].name}, ...). Pass `--resume` to continue "
            "that run, or choose a new `--output_dir`."
        )
    return None
