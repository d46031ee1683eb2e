"""Exported folders load where `hf_custom_lm` is not installed.

Each test runs a fresh `python -I` (no cwd or script folder on `sys.path`) whose first act is to put a
meta-path finder in front of the editable install's finder that refuses `hf_custom_lm`, and to check
that `import hf_custom_lm` fails. The `custom_lm` folder must then load through the Auto classes and
`pipeline` with `trust_remote_code=True` only (and give transformers' own error without it); the
`llama` folder with no remote code at all. Logits and greedy continuations must equal the in-process
model's. Offline, with a fresh HF_HOME and modules cache.
"""

import json
import os
import subprocess
import sys

import pytest
import torch

from hf_custom_lm.hub import export

from .builders import tiny_model

PROMPT = "Once upon a time"

BLOCK_PACKAGE = """
import importlib.abc, sys

class RefuseHfCustomLM(importlib.abc.MetaPathFinder):
    def find_spec(self, name, path=None, target=None):
        if name == "hf_custom_lm" or name.startswith("hf_custom_lm."):
            raise ModuleNotFoundError(f"No module named {name!r} (blocked for this test)", name=name)
        return None

sys.meta_path.insert(0, RefuseHfCustomLM())
try:
    import hf_custom_lm
except ModuleNotFoundError:
    pass
else:
    raise SystemExit("hf_custom_lm is importable: the test would prove nothing")
"""

LOAD_AND_RUN = """
import json, sys
import torch
from transformers import AutoConfig, AutoModel, AutoModelForCausalLM, AutoModelForSequenceClassification
from transformers import AutoTokenizer, pipeline

folder, out, trust = sys.argv[1], sys.argv[2], sys.argv[3] == "trust"
result = {}
if trust:
    try:
        AutoModelForCausalLM.from_pretrained(folder)
    except ValueError as error:
        result["error_without_trust"] = str(error)
    kwargs = {"trust_remote_code": True}
    result["base_class"] = type(AutoModel.from_pretrained(folder, **kwargs)).__name__
    result["classifier_class"] = type(AutoModelForSequenceClassification.from_pretrained(folder, **kwargs)).__name__
else:
    kwargs = {}
result["config_class"] = type(AutoConfig.from_pretrained(folder, **kwargs)).__name__
model = AutoModelForCausalLM.from_pretrained(folder, **kwargs).eval()
tokenizer = AutoTokenizer.from_pretrained(folder)
result["model_class"] = type(model).__name__
result["model_module"] = type(model).__module__
ids = tokenizer(PROMPT, return_tensors="pt").input_ids
with torch.no_grad():
    torch.save(model(ids).logits, out + ".logits.pt")
generator = pipeline("text-generation", model=folder, **kwargs)
result["generated"] = generator(PROMPT, max_new_tokens=8, do_sample=False)[0]["generated_text"]
with open(out + ".json", "w") as f:
    json.dump(result, f)
"""


def run_without_package(folder, tmp_path, trust: bool) -> tuple[dict, torch.Tensor]:
    script = tmp_path / "load_exported.py"
    script.write_text(BLOCK_PACKAGE + f"PROMPT = {PROMPT!r}\n" + LOAD_AND_RUN)
    env = {
        **os.environ, "HF_HUB_OFFLINE": "1", "HF_HOME": str(tmp_path / "hf_home"),
        "HF_MODULES_CACHE": str(tmp_path / "modules"), "TOKENIZERS_PARALLELISM": "false",
    }
    out = tmp_path / "result"
    proc = subprocess.run(
        [sys.executable, "-I", str(script), str(folder), str(out), "trust" if trust else "plain"],
        cwd=tmp_path, env=env, capture_output=True, text=True, timeout=300,
    )
    assert proc.returncode == 0, proc.stdout + proc.stderr
    return json.loads((tmp_path / "result.json").read_text()), torch.load(f"{out}.logits.pt", weights_only=True)


def local_reference(model, tokenizer) -> tuple[torch.Tensor, str]:
    ids = tokenizer(PROMPT, return_tensors="pt").input_ids
    with torch.no_grad():
        logits = model(ids).logits
        generated = model.generate(ids, max_new_tokens=8, do_sample=False, pad_token_id=tokenizer.pad_token_id)
    return logits, tokenizer.decode(generated[0], skip_special_tokens=True)


@pytest.mark.slow
def test_custom_lm_export_loads_with_trust_remote_code_only(tmp_path, tokenizer):
    model = tiny_model(tokenizer)
    folder = export(model, tokenizer, tmp_path / "export")
    result, logits = run_without_package(folder, tmp_path, trust=True)

    assert "trust_remote_code=True" in result["error_without_trust"]
    assert result["config_class"] == "CustomLMConfig"
    assert result["model_class"] == "CustomLMForCausalLM"
    assert result["model_module"].startswith("transformers_modules.")  # the folder's code, not the package
    assert result["base_class"] == "CustomLMModel"
    assert result["classifier_class"] == "CustomLMForSequenceClassification"
    local_logits, local_text = local_reference(model, tokenizer)
    torch.testing.assert_close(logits, local_logits, rtol=0, atol=1e-6)
    assert result["generated"] == local_text


@pytest.mark.slow
def test_llama_export_loads_without_remote_code(tmp_path, tokenizer):
    model = tiny_model(tokenizer)
    folder = export(model, tokenizer, tmp_path / "export", format="llama")
    result, logits = run_without_package(folder, tmp_path, trust=False)

    assert (result["config_class"], result["model_class"]) == ("LlamaConfig", "LlamaForCausalLM")
    assert result["model_module"] == "transformers.models.llama.modeling_llama"
    local_logits, local_text = local_reference(model, tokenizer)
    torch.testing.assert_close(logits, local_logits, rtol=0, atol=1e-5)
    assert result["generated"] == local_text


OLD_EXPORT = os.path.join(os.path.dirname(__file__), "fixtures", "export_before_layout")
LOAD_OLD_EXPORT = """
import sys
import torch
from transformers import AutoModelForCausalLM

model = AutoModelForCausalLM.from_pretrained(sys.argv[1], trust_remote_code=True).eval()
with torch.no_grad():
    torch.save(model(torch.tensor([[0, 5, 9, 33, 2, 7]])).logits, sys.argv[2])
"""


@pytest.mark.slow
def test_a_folder_exported_before_the_layout_change_still_loads(tmp_path):
    """`tests/fixtures/export_before_layout`: a tiny model saved for remote code by the package as it was before
    the model moved into `hf_custom_lm/model/` (its three code files, no kernels file). It loads in a clean
    process through its own code, and with this package imported through ours, with the same logits."""
    import shutil

    from transformers import AutoModelForCausalLM

    folder = tmp_path / "old"
    shutil.copytree(OLD_EXPORT, folder)
    script = tmp_path / "load_old.py"
    script.write_text(BLOCK_PACKAGE + LOAD_OLD_EXPORT)
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "HF_HOME": str(tmp_path / "hf_home"),
           "HF_MODULES_CACHE": str(tmp_path / "modules")}
    proc = subprocess.run([sys.executable, "-I", str(script), str(folder), str(tmp_path / "logits.pt")],
                          cwd=tmp_path, env=env, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    remote = torch.load(tmp_path / "logits.pt", weights_only=True)

    model = AutoModelForCausalLM.from_pretrained(folder).eval()  # the registered class: this package's code
    assert type(model).__module__ == "hf_custom_lm.model.modeling_custom_lm"
    with torch.no_grad():
        ours = model(torch.tensor([[0, 5, 9, 33, 2, 7]])).logits
    torch.testing.assert_close(ours, remote)
