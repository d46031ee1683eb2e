"""Start-up of the `hf-custom-lm` command, each case in a fresh interpreter: help, version and argument errors
load neither torch nor datasets (every subcommand's help included, `cli/help_cache.py`); each job's OpenMP
wait policy is in the environment before torch loads, and a policy the user set is kept; `import
hf_custom_lm` alone still registers the Auto classes."""

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

import hf_custom_lm
from hf_custom_lm.cli import SUBCOMMANDS
from hf_custom_lm.cli.threads import choose_wait_policy
from hf_custom_lm.hub import export

from .builders import tiny_model

HEAVY = ("torch", "datasets", "transformers.modeling_utils", "transformers.training_args")

# Runs the console command's entry point in-process and reports what it loaded; a meta-path spy records the
# OpenMP wait policy in the environment at the moment torch is first imported.
PROBE = """
import json, os, sys
seen = {}
class Spy:
    def find_spec(self, name, path=None, target=None):
        if name == "torch" and "policy_at_torch_import" not in seen:
            seen["policy_at_torch_import"] = os.environ.get("OMP_WAIT_POLICY")
        return None
sys.meta_path.insert(0, Spy())
import hf_custom_lm_cli
try:
    status = hf_custom_lm_cli.main(json.loads(sys.argv[1]))
except SystemExit as exit:
    status = exit.code
seen.update(status=status, policy=os.environ.get("OMP_WAIT_POLICY"),
            loaded=[m for m in %r if m in sys.modules])
print("PROBE" + json.dumps(seen))
""" % (HEAVY,)


def probe(argv: list[str], **env) -> dict:
    environ = {k: v for k, v in os.environ.items() if k != "OMP_WAIT_POLICY"}  # conftest sets one
    result = subprocess.run(
        [sys.executable, "-c", PROBE, json.dumps(argv)], capture_output=True, text=True, timeout=300,
        env={**environ, **env},
    )
    line = next(line for line in result.stdout.splitlines() if line.startswith("PROBE"))
    return {**json.loads(line[len("PROBE"):]), "out": result.stdout, "err": result.stderr}


@pytest.mark.parametrize("argv", [
    ["--help"], ["--version"], ["no-such-command"],
    *([name, "--help"] for name in SUBCOMMANDS),
    ["train", "--max_train_tme", "10m"],            # unknown flags, named from the saved flags
    ["finetune-classifier", "--model_name_or_path", "m", "--lerning_rate", "1"],
    ["generate", "some/folder"],                      # argument error: --prompt is required
    ["evaluate", "some/folder", "--file", "missing.txt"],
], ids=lambda argv: " ".join(argv))
def test_help_version_and_argument_errors_load_no_torch(argv):
    seen = probe(argv)
    assert seen["status"] in (0, 2), seen["err"]
    assert seen["loaded"] == [], f"{argv} imported {seen['loaded']}"


def test_version_prints_the_package_version():
    assert probe(["--version"])["out"].startswith(f"hf-custom-lm {hf_custom_lm.__version__}")


def test_evaluate_names_the_missing_file_by_its_flag():
    seen = probe(["evaluate", "some/folder", "--file", "missing.txt"])
    assert seen["status"] == 2
    assert "--file 'missing.txt': no such file" in seen["err"] and "train_file" not in seen["err"]


def test_console_script_enters_without_torch():
    script = Path(sys.executable).with_name("hf-custom-lm")
    if not script.exists():
        pytest.skip("the package is not installed with its console script")
    first_line = script.read_text().splitlines()[:3]
    assert any("hf_custom_lm_cli" in line for line in first_line), first_line
    result = subprocess.run([str(script), "--version"], capture_output=True, text=True, timeout=60)
    assert result.returncode == 0 and hf_custom_lm.__version__ in result.stdout


def test_every_training_subcommand_has_a_wait_policy():
    from hf_custom_lm.cli import SUBCOMMANDS
    from hf_custom_lm.cli.threads import WAIT_POLICY

    training = {name for name in SUBCOMMANDS if name == "train" or name.startswith(("finetune-", "evaluate"))}
    assert training <= set(WAIT_POLICY) and "generate" not in WAIT_POLICY


def test_training_jobs_wait_passively_and_generation_keeps_the_openmp_default():
    environ = {}
    assert choose_wait_policy("train", environ) == "PASSIVE" and environ == {"OMP_WAIT_POLICY": "PASSIVE"}
    environ = {}
    assert choose_wait_policy("generate", environ) is None and environ == {}
    environ = {"OMP_WAIT_POLICY": "ACTIVE"}
    assert choose_wait_policy("train", environ) == "ACTIVE"  # the user's setting wins


@pytest.mark.slow
def test_wait_policy_is_in_the_environment_before_torch_loads(tmp_path, tokenizer):
    bad_value = ["train", "--max_steps", "many"]  # judged by the live parser, so torch loads
    seen = probe(bad_value)
    assert seen["status"] == 2, seen["err"]
    assert seen["policy_at_torch_import"] == "PASSIVE"
    assert probe(bad_value, OMP_WAIT_POLICY="ACTIVE")["policy_at_torch_import"] == "ACTIVE"
    # A generation job keeps the OpenMP default, and loads our own model folder with registration deferred.
    folder = export(tiny_model(tokenizer), tokenizer, tmp_path / "model")
    seen = probe(["generate", str(folder), "--prompt", "Once", "--max_new_tokens", "2", "--do_sample", "false"])
    assert seen["status"] == 0, seen["err"]
    assert "torch" in seen["loaded"] and seen["policy_at_torch_import"] is None and seen["policy"] is None


@pytest.mark.slow
def test_importing_the_package_registers_the_auto_classes():
    code = (
        "import hf_custom_lm\n"
        "from transformers import AutoConfig, AutoModelForCausalLM\n"
        "config = AutoConfig.for_model('custom_lm', vocab_size=64, hidden_size=32, intermediate_size=64, "
        "num_hidden_layers=1, num_attention_heads=2, num_key_value_heads=2)\n"
        "print(type(AutoModelForCausalLM.from_config(config)).__name__)\n"
    )
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=300)
    assert result.stdout.strip() == "CustomLMForCausalLM", result.stderr
