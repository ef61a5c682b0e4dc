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

.PHONY: demo test bench setup browser clean

$(STAMP): pyproject.toml
	test -x $(BIN)/python || $(PY) -m venv $(VENV)
	$(BIN)/python -m pip install -q --upgrade pip
	$(BIN)/python -m pip install -q "$(TORCH)"
	$(BIN)/python -m pip install -q -e ".[dev]"
	touch $(STAMP)

setup: $(STAMP)

demo: $(STAMP)
	$(BIN)/interp compare $(ARGS)

# The report is checked in a real browser: Debian's chromium, from the system's package manager
# (never a downloaded browser). Installed when missing and apt-get is available.
browser:
	@command -v chromium >/dev/null 2>&1 || { command -v apt-get >/dev/null 2>&1 && \
		(apt-get install -y -q chromium >/dev/null 2>&1 || (apt-get update -q >/dev/null 2>&1 && apt-get install -y -q chromium >/dev/null 2>&1)); } || \
		echo "warning: chromium is not installed and could not be; the browser test of the report will be skipped"

test: $(STAMP) browser
	$(BIN)/python -m pytest -q

bench: $(STAMP)
	$(BIN)/python bench/run

clean:
	rm -rf $(VENV) runs report artifacts .pytest_cache
