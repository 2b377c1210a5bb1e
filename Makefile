# quantgym: two commands do everything on a fresh machine.
#   make train   -> create .venv, install, run the main Hydra training job on the shipped sample
#   make test    -> create .venv, install, run ruff, mypy and the test suite (one pytest worker per CPU,
#                   each test file in one worker: pytest-xdist `-n auto --dist loadfile`)
PYTHON ?= python3
VENV ?= .venv
PY := $(VENV)/bin/python
# Torch is installed first and pinned so pip never resolves a multi-GB CUDA build by accident.
# CPU-only machines elsewhere can use the official CPU index:
#   make TORCH_INDEX=https://download.pytorch.org/whl/cpu train
TORCH_SPEC ?= torch==2.13.0
TORCH_INDEX ?=
TORCH_INDEX_ARG := $(if $(TORCH_INDEX),--index-url $(TORCH_INDEX),)
ARGS ?=
SHELL := /bin/bash
.SHELLFLAGS := -o pipefail -c
# this machine's pip config lists local mirrors that lack some packages: hide those harmless warnings only
QUIET_PIP := 2>&1 | { grep -v "is ignored: it is neither a file nor a directory" || true; }

.PHONY: install train test bench clean

$(VENV)/.installed: pyproject.toml
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -c "import torch" 2>/dev/null || $(PY) -m pip install -q $(TORCH_INDEX_ARG) "$(TORCH_SPEC)" $(QUIET_PIP)
	$(PY) -m pip install -q -e ".[test]" $(QUIET_PIP)
	touch $@

install: $(VENV)/.installed

train: install
	$(PY) scripts/train.py $(ARGS)

test: install
	$(PY) -m ruff check envs agents scripts bench tests
	$(PY) -m mypy
	$(PY) -m pytest -q -n auto --dist loadfile $(ARGS)

# Peers live in their own venv: gym-trading-env pins ccxt==3.0.59, which would break quantgym's ccxt>=4.3.
PEERS := .venv-peers
$(PEERS)/.installed:
	test -x $(PEERS)/bin/python || $(PYTHON) -m venv $(PEERS)
	$(PEERS)/bin/python -m pip install -q gym-anytrading==2.0.0 gym-trading-env==0.3.5 pyarrow $(QUIET_PIP)
	touch $@

bench: install $(PEERS)/.installed
	$(PY) bench/env_speed.py --peer-python $(PEERS)/bin/python

clean:
	rm -rf $(VENV)
