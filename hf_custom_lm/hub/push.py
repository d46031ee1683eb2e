"""Upload an exported folder to the Hugging Face Hub."""

import logging
from pathlib import Path

from huggingface_hub import HfApi, ModelCard, get_token
from huggingface_hub.errors import LocalTokenNotFoundError

logger = logging.getLogger(__name__)

# Training artefacts a run folder may hold next to an export; never uploaded (checkpoints are large,
# `.bin`/`.pt` files are pickles).
PUSH_IGNORE_PATTERNS = ["checkpoint-*", "runs/*", "*.pt", "*.pth", "*.bin"]


def push(
    out_dir: str | Path,
    repo_id: str,
    *,
    private: bool = False,
    revision: str | None = None,
    commit_message: str | None = None,
    token: str | None = None,
):
    """Create `repo_id` if needed and upload the exported `out_dir` to it; returns the `CommitInfo`.

    The token is `token`, else `HF_TOKEN`, else the stored login (`hf auth login`); it is sent to the Hub
    only, never printed or logged. `revision` names a branch, created from `main` if missing.
    """
    out_dir = Path(out_dir)
    missing = [name for name in ("config.json", "README.md") if not (out_dir / name).is_file()]
    if missing:
        raise FileNotFoundError(
            f"{out_dir} is not an exported folder (no {', '.join(missing)}): run `hf-custom-lm export` first."
        )
    if repo_id.count("/") != 1 or not all(repo_id.split("/")):
        raise ValueError(f"`repo_id` must be 'namespace/name' (e.g. 'your-user/my-model'), got {repo_id!r}.")
    token = token or get_token()
    if not token:
        raise LocalTokenNotFoundError(
            "No Hugging Face token: set the HF_TOKEN environment variable or run `hf auth login`."
        )
    card_id = ModelCard.load(out_dir / "README.md").data.model_name
    if card_id is not None and card_id != repo_id:
        logger.warning(
            "The model card's usage code names %r, not %r; re-export with `repo_id=%r` (`--repo-id`) so the "
            "published card loads the right repository.", card_id, repo_id, repo_id,
        )
    api = HfApi(token=token)
    api.create_repo(repo_id, private=private, exist_ok=True)
    if revision is not None:
        api.create_branch(repo_id, branch=revision, exist_ok=True)
    return api.upload_folder(
        repo_id=repo_id, folder_path=out_dir, revision=revision, ignore_patterns=list(PUSH_IGNORE_PATTERNS),
        commit_message=commit_message or f"Upload {out_dir.resolve().name} exported with hf_custom_lm",
    )


__all__ = ["PUSH_IGNORE_PATTERNS", "push"]
