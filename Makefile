# Two commands on a fresh machine with Python 3.10+:
#   make lab    set up, then open the course in JupyterLab
#   make test   set up, then run the whole test suite (what CI runs)
# Set-up makes a virtual environment in .venv. It installs the CPU build
# torch==2.13.0 unless a torch is already there; to use a GPU, install the
# torch build for your CUDA into .venv first, or run e.g. `make lab TORCH=torch`.

PYTHON ?= python3
VENV ?= .venv
TORCH ?= torch==2.13.0
BIN := $(VENV)/bin
STAMP := $(VENV)/.minattn-installed

.PHONY: lab test setup clean

setup: $(STAMP)

$(STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -c "import torch" 2>/dev/null || $(BIN)/python -m pip install --quiet "$(TORCH)"
	$(BIN)/python -m pip install --quiet --editable ".[course,dev]"
	touch $@

lab: $(STAMP)
	$(BIN)/jupyter lab course/00-start-here.ipynb

test: $(STAMP)
	$(BIN)/python -m pytest

clean:
	rm -rf $(VENV)
