# Two entry points, each of which sets up what it needs first:
#   make demo   compare the bundled base/post pair layer by layer and write report/ (the main job)
#   make test   run the test suite (what CI runs)
# The virtual environment lives in .venv; torch's CPU build is installed before
# the project so that the project's torch range is already satisfied.

PY      ?= python3
VENV    := .venv
BIN     := $(VENV)/bin
TORCH   ?= torch==2.13.0
STAMP   := $(VENV)/.installed
# Arguments for `interp compare` in `make demo` (override: make demo ARGS="--base A --post B").
ARGS    ?= --concepts truth,refusal,language,snmf --out report

.PHONY: demo test bench setup clean

$(STAMP): pyproject.toml
	test -x $(BIN)/python || $(PY) -m venv $(VENV)
	$(BIN)/python -m pip install -q --upgrade pip
	$(BIN)/python -m pip install -q "$(TORCH)"
	$(BIN)/python -m pip install -q -e ".[dev]"
	touch $(STAMP)

setup: $(STAMP)

demo: $(STAMP)
	$(BIN)/interp compare $(ARGS)

test: $(STAMP)
	$(BIN)/python -m pytest -q

bench: $(STAMP)
	$(BIN)/python bench/run

clean:
	rm -rf $(VENV) runs report .pytest_cache
