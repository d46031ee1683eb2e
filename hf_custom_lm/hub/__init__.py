"""The Hub: exported folders (the model's own code, or plain Llama), their model card, and the upload.

    export_run("outputs/run", "outputs/run-hub", repo_id="you/my-model")
    push("outputs/run-hub", "you/my-model")
"""

from .export import FORMATS, export, export_run, load_run
from .llama import from_llama, to_llama
from .push import push

__all__ = ["FORMATS", "export", "export_run", "load_run", "from_llama", "to_llama", "push"]
