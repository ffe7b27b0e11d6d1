# The two commands of the README, and the environment they share.
# `make repro` runs the pipeline (dvc repro); `make test` runs the test suite. Both first
# build .venv from requirements.lock (once; again only when the lock or pyproject changes).

PYTHON ?= python3
VENV   ?= .venv
STAMP  := $(VENV)/.installed
export HF_HUB_OFFLINE ?= 1
export HF_HUB_DISABLE_PROGRESS_BARS ?= 1
export TOKENIZERS_PARALLELISM ?= false
# dvc.yaml commands call `python`: the venv's.
export PATH := $(abspath $(VENV))/bin:$(PATH)

.PHONY: venv repro test test-all bench report

venv: $(STAMP)

$(STAMP): requirements.lock pyproject.toml
	$(PYTHON) -m venv $(VENV)
	# CPU torch first: an unpinned torch would pull a multi-GB CUDA build.
	$(VENV)/bin/pip install -q torch==2.13.0
	$(VENV)/bin/pip install -q -r requirements.lock
	$(VENV)/bin/pip install -q --no-deps -e .
	touch $@

repro: $(STAMP)
	$(VENV)/bin/dvc repro

test: $(STAMP)
	$(VENV)/bin/pytest

test-all: $(STAMP)
	$(VENV)/bin/pytest -m ""

bench: $(STAMP)
	$(VENV)/bin/pytest -m benchmark -s tests/benchmarks

report:
	QUARTO_PYTHON=$(abspath $(VENV))/bin/python quarto render report
