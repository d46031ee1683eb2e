# Everything runs inside a local virtualenv that these targets create on a fresh machine.
# TORCH_SPEC and TORCH_INDEX choose the torch build: PyPI's torch for Linux is a multi-GB CUDA build, the
# PyTorch CPU index (TORCH_INDEX=https://download.pytorch.org/whl/cpu) has the CPU one; empty, pip's own
# configuration decides (on these development machines it finds a local CPU wheel).
PYTHON      ?= python3
VENV        ?= .venv
TORCH_SPEC  ?= torch==2.13.0
TORCH_INDEX ?=
PY         := $(VENV)/bin/python
PIP        := $(PY) -m pip
STAMP      := $(VENV)/.installed
# OpenMP threads that spin while waiting steal the other core on small shared machines and stall
# training steps; PASSIVE makes them sleep. Override with `make ... OMP_WAIT_POLICY=ACTIVE`.
OMP_WAIT_POLICY ?= PASSIVE
export OMP_WAIT_POLICY

.PHONY: install demo test test-fast bench bench-quality clean test-interop cli-help

$(STAMP): pyproject.toml Makefile
	$(PYTHON) -m venv $(VENV)
	$(PIP) install --upgrade pip
	$(PIP) install $(if $(TORCH_INDEX),--index-url $(TORCH_INDEX)) "$(TORCH_SPEC)"
	$(PIP) install -e ".[test]" "$(TORCH_SPEC)"
	touch $(STAMP)

install: $(STAMP)

demo: $(STAMP)
	$(PY) scripts/demo.py

test: $(STAMP)
	$(PY) -m pytest -q

test-fast: $(STAMP)
	$(PY) -m pytest -q -m "not slow"

# Rewrite the saved help of every subcommand (hf_custom_lm/cli/help/) after changing a flag.
cli-help: $(STAMP)
	$(PY) -m hf_custom_lm.cli.help_cache

# Benchmarks run under the OpenMP default wait policy, what a plain `python` gets, unless a policy is
# given (`OMP_WAIT_POLICY=PASSIVE make bench`): PASSIVE adds a thread wake-up to every small op, which
# slows decoding at batch 1 (see benchmarks/README.md).
BENCH_ENV := $(if $(filter file,$(origin OMP_WAIT_POLICY)),env -u OMP_WAIT_POLICY)

bench: $(STAMP)
	$(BENCH_ENV) $(PY) benchmarks/run_all.py

# Model quality at equal CPU budgets, ours vs stock transformers (about an hour on 2 cores: its own target).
bench-quality: $(STAMP)
	$(PY) -m benchmarks.bench_quality

clean:
	rm -rf $(VENV) outputs build *.egg-info

# The GGUF export run by a real llama.cpp (tests/interop, which `make test` ignores: llama-cpp-python
# compiles llama.cpp from source, minutes on a small machine), then llama.cpp's batch-1 generation
# speed next to ours on the same model.
LLAMA_CPP_SPEC ?= llama-cpp-python>=0.3.16,<0.4

test-interop: $(STAMP)
	$(PIP) install "$(LLAMA_CPP_SPEC)"
	$(PY) -m pytest -q tests/interop
	$(BENCH_ENV) $(PY) -m benchmarks.bench_gguf
