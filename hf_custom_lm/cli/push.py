"""`hf-custom-lm push OUT_DIR --repo-id user/name`: upload an exported folder to the Hugging Face Hub.

The token comes from HF_TOKEN or the stored login (`hf auth login`); it is never printed.
"""

from dataclasses import dataclass, field

from huggingface_hub.errors import HfHubHTTPError, LocalTokenNotFoundError
from transformers import HfArgumentParser

from .common import USER_ERRORS, fail


@dataclass
class PushArguments:
    repo_id: str = field(metadata={"help": "Hub repository, 'namespace/name'."})
    private: bool = field(default=False, metadata={"help": "Create the repository as private."})
    revision: str | None = field(default=None, metadata={"help": "Branch to push to (created if missing)."})
    commit_message: str | None = field(default=None, metadata={"help": "Commit title (default: names the folder)."})


def build_parser() -> HfArgumentParser:
    parser = HfArgumentParser(PushArguments, prog="hf-custom-lm push", description=__doc__)
    parser.add_argument("out_dir", help="a folder written by `hf-custom-lm export`")
    return parser


def main(argv: list[str]) -> int:
    parser = build_parser()
    try:
        args, paths = parser.parse_args_into_dataclasses(argv)
        from ..hub import push  # after parsing: --help and argument errors load no torch

        commit = push(paths.out_dir, args.repo_id, private=args.private, revision=args.revision,
                      commit_message=args.commit_message)
    except (*USER_ERRORS, LocalTokenNotFoundError, HfHubHTTPError) as error:
        return fail("hf-custom-lm push", error)
    print(f"Pushed {paths.out_dir} to {commit.repo_url} (commit {commit.oid}).")
    print(f'Load this exact commit with revision="{commit.oid}".')
    return 0
