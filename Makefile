# The two commands of the README, and the environment they share.
# `make repro` runs the pipeline (dvc repro); `make test` runs the test suite. Both first
# build .venv from requirements.lock (once; again only when the lock or pyproject changes).

PYTHON ?= python3
VENV   ?= .venv
STAMP  := $(VENV)/.installed
export HF_HUB_OFFLINE ?= 1
export HF_HUB_DISABLE_PROGRESS_BARS ?= 1
export TOKENIZERS_PARALLELISM ?= false
# dvc.yaml commands call `python`: the venv's. Under make, PATH says so; for every other way in
# (`.venv/bin/dvc repro` with nothing activated, a queued `dvc exp run` worker) the venv carries
# a .pth line (PATH_PTH) that puts the running interpreter's folder first on PATH at start-up,
# so the shell that DVC opens for a stage finds the same python that runs DVC.
export PATH := $(abspath $(VENV))/bin:$(PATH)
PATH_PTH = $(shell $(VENV)/bin/python -c 'import sysconfig; print(sysconfig.get_paths()["purelib"])')/emotion_heads_path.pth

.PHONY: venv path-pth repro test test-all bench report

venv: $(STAMP)

$(STAMP): requirements.lock pyproject.toml
	$(PYTHON) -m venv $(VENV)
	# CPU torch first: an unpinned torch would pull a multi-GB CUDA build.
	$(VENV)/bin/pip install -q torch==2.13.0
	$(VENV)/bin/pip install -q -r requirements.lock
	$(VENV)/bin/pip install -q --no-deps -e .
	$(MAKE) --no-print-directory path-pth
	touch $@

# One line that site.py runs at every start of the venv's python (a .pth line starting with `import`).
path-pth:
	echo 'import os, sys; os.environ["PATH"] = os.pathsep.join(dict.fromkeys([os.path.dirname(sys.executable), *os.environ.get("PATH", "").split(os.pathsep)]))' > "$(PATH_PTH)"

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
