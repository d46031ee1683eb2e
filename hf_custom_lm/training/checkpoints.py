"""Checkpoints of a run folder: which exist, which are complete, and which one a run resumes from.

The Trainer writes `checkpoint-<step>` folders; a crash, a signal or a full disk can leave the newest one
half-written. Every reader of a run folder (resume, export) lists checkpoints through this module.
"""

import json
import logging
import shutil
import zipfile
from pathlib import Path

from transformers.trainer_utils import PREFIX_CHECKPOINT_DIR

from ..folders import check_model_folder
from .sizing import SIZING_FILE

logger = logging.getLogger(__name__)

# Written by `Trainer._save_checkpoint` after the model, optimizer, scheduler and RNG states: its presence
# (and the model's) marks a checkpoint whose save finished. The JIT-checkpoint sentinel marks one that did not.
TRAINER_STATE_NAME = "trainer_state.json"
MODEL_FILES = ("model.safetensors", "model.safetensors.index.json")
INCOMPLETE_SENTINEL = "checkpoint-is-incomplete.txt"
# Written at the top of an output_dir by runs (the Trainer's state and arguments, the metrics, TensorBoard, and
# before the first step the model sizing and the tokenizer trained on the user's text, `language_model.py`): a
# folder holding one of them, or a checkpoint, is a training run's.
RUN_MARKERS = (TRAINER_STATE_NAME, "training_args.json", "all_results.json", "runs", SIZING_FILE, "tokenizer")



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


def unrelated_files(output_dir: str | Path) -> list[str]:
    """The visible names in `output_dir` when it is neither empty nor a training run's folder, else []."""
    folder = Path(output_dir)
    if not folder.is_dir():
        return []
    names = sorted(path.name for path in folder.iterdir() if not path.name.startswith("."))
    if checkpoint_folders(folder) or any(name in RUN_MARKERS for name in names):
        return []
    return names


def resolve_resume_checkpoint(training_args) -> str | None:
    """The checkpoint to resume from, or None for a fresh run. A fresh run refuses a folder of old checkpoints or
    of files no run wrote, unless `overwrite_output_dir` (then the old checkpoints are deleted: the Trainer's
    rotation and `--resume` would take them for the new run's)."""
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
    overwrite = getattr(training_args, "overwrite_output_dir", False)
    existing = checkpoint_folders(output_dir)
    if existing and not overwrite:
        raise ValueError(
            f"{output_dir!r} already holds checkpoints ({existing[0].name}, ...). Pass `--resume` to continue "
            "that run, `--overwrite_output_dir` to start a new one there, or choose a new `--output_dir`."
        )
    if existing and getattr(training_args, "process_index", 0) == 0:
        logger.warning(f"`--overwrite_output_dir`: deleting the checkpoints of an earlier run in {output_dir!r}.")
        for path in existing:
            shutil.rmtree(path)
    unrelated = unrelated_files(output_dir)
    if unrelated and not overwrite:
        raise ValueError(
            f"`output_dir` {str(output_dir)!r} holds files that no training run wrote ({', '.join(unrelated[:3])}"
            + (", ..." if len(unrelated) > 3 else "") + "): the run's checkpoints, logs and model would mix with "
            "them. Choose a new or empty `--output_dir`, or pass `--overwrite_output_dir` to write there anyway."
        )
    return None
