# Quick start: `make demo` and `make test`. Both create .venv/ and install what they need.
# Python 3.12+ when there is one (synthesis runs faster there: eager asyncio tasks), else
# python3. PYENV_VERSION picks an installed pyenv version without activating it.
PYTHON ?= $(shell PYENV_VERSION=3.12 python3.12 -c 'import sys; print(sys.executable)' 2>/dev/null || echo python3)
VENV := .venv
BIN := $(VENV)/bin
QUESTION ?= How do I tell my team I am burning out?
# Test processes (pytest-xdist): one per core by default. Tests sharing a server stay together
# (--dist loadgroup, see tests/conftest.py); the 15 slowest tests are listed at the end.
WORKERS ?= auto
PYTEST_ARGS ?=
# The suite starts many Python processes (CLI runs, servers, notebook kernels): they write
# the byte code of what they import (pytest's rewritten test modules too) to __pycache__,
# so none compiles again what another already did, whatever PYTHONDONTWRITEBYTECODE says
# in the calling shell.
TEST_ENV := PYTHONDONTWRITEBYTECODE=

.PHONY: demo test lint typecheck format dist bench clean

# Training with SPRI rewards (TRL) runs in its own environment: Python 3.11, the CPU build
# of torch pinned (installed first, so transformers and trl keep it), then the package.
TRAIN_PYTHON ?= python3.11
TRAIN_VENV := .venv-train
TORCH := torch==2.13.0

.PHONY: test-train bench-rewards

$(BIN)/python:
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip

$(VENV)/.installed-local: pyproject.toml | $(BIN)/python
	$(BIN)/python -m pip install --quiet -e '.[local]'
	touch $@

$(VENV)/.installed-dev: pyproject.toml | $(BIN)/python
	$(BIN)/python -m pip install --quiet -e '.[all,dev]'
	touch $@ $(VENV)/.installed-local

demo: $(VENV)/.installed-local
	$(BIN)/spri align "$(QUESTION)"

# Lint and type check first, then every test: unit tests, doctests, notebooks, integration,
# and the training tests. Those run in their own environment beside the main suite (which
# often waits on its servers and subprocesses), their llama.cpp judge on one thread as the
# main suite's workers are; their report follows the main suite's.
TRAIN_LOG := $(TRAIN_VENV)/test.log
test: lint $(TRAIN_VENV)/.installed
	@SPRI_LLAMA_THREADS=$${SPRI_LLAMA_THREADS:-1} $(MAKE) --no-print-directory test-train \
		> $(TRAIN_LOG) 2>&1 & train=$$!; \
	$(TEST_ENV) $(BIN)/python -m pytest -n $(WORKERS) --dist loadgroup --durations=15 $(PYTEST_ARGS); \
	main=$$?; wait $$train; trained=$$?; \
	echo "== make test-train (tests/training in $(TRAIN_VENV)) =="; cat $(TRAIN_LOG); \
	[ $$main -eq 0 ] && [ $$trained -eq 0 ]

lint: $(VENV)/.installed-dev
	$(BIN)/ruff check spri_graph tests benchmarks examples
	$(BIN)/ruff format --check spri_graph tests benchmarks examples
	$(BIN)/python -m mypy

typecheck: $(VENV)/.installed-dev
	$(BIN)/python -m mypy

format: $(VENV)/.installed-dev
	$(BIN)/ruff format spri_graph tests benchmarks examples
	$(BIN)/ruff check --fix spri_graph tests benchmarks examples

# The sdist and the wheel built from it, in dist/ (tests/test_packaging.py installs such a wheel).
dist: $(VENV)/.installed-dev
	rm -rf dist
	$(BIN)/python -m build --outdir dist .

bench: $(VENV)/.installed-dev
	$(BIN)/python benchmarks/synthesis_throughput.py --records 2000 --latency 0.05 --concurrency 64
	$(BIN)/python benchmarks/local_model.py

$(TRAIN_VENV)/.installed: pyproject.toml
	$(TRAIN_PYTHON) -m venv $(TRAIN_VENV)
	$(TRAIN_VENV)/bin/python -m pip install --quiet --upgrade pip
	$(TRAIN_VENV)/bin/python -m pip install --quiet $(TORCH)
	$(TRAIN_VENV)/bin/python -m pip install --quiet $(TORCH) -e '.[local,train]' \
		'pytest>=8' 'pytest-asyncio>=0.24' 'pytest-timeout>=2.3'
	touch $@

# GRPO, SFT and DPO for a step or two on a tiny policy, the embedded model as the SPRI judge.
test-train: $(TRAIN_VENV)/.installed
	$(TEST_ENV) SPRI_TRAIN_TESTS=1 $(TRAIN_VENV)/bin/python -m pytest -o addopts='-ra --strict-markers' --durations=5 tests/training

bench-rewards: $(VENV)/.installed-dev
	$(BIN)/python benchmarks/rewards.py

clean:
	rm -rf $(VENV) .pytest_cache .ruff_cache .mypy_cache dist
