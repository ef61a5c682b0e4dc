# Two entry points, each of which sets up what it needs first:
#   make demo   compare the bundled base/post pair layer by layer and write report/ (the main job)
#   make demo-real   the same on the real-base organism (google/gemma-3-270m and its LoRA post-trained
#                    version), prompts from the public datasets in DATA; writes report-real/
#   make test   run the test suite, real-model tier included (what CI runs)
#   make notebook   install JupyterLab (the `notebook` extra, from the lock) and open notebooks/ in it
# The virtual environment lives in .venv; torch's CPU build is installed before
# the project so that the project's torch range is already satisfied. Everything
# else comes from constraints.txt, the lock of versions the suite passed on.
# For maintainers:
#   make test-latest   the suite in .venv-latest against the newest releases the ranges in
#                      pyproject.toml allow (no lock); writes what it installed to
#                      artifacts/latest-versions.txt and its difference from the lock to
#                      artifacts/latest-vs-lock.diff. To try a release past a range's bound, widen
#                      the range in pyproject.toml first (UPGRADE="transformers==X" then picks it).
#   make lock          after a whole test-latest run passed: copy what it installed into constraints.txt

SHELL   := /bin/bash
PY      ?= python3
VENV    := .venv
BIN     := $(VENV)/bin
TORCH   ?= torch==2.13.0
STAMP   := $(VENV)/.installed
LOCK    := constraints.txt
EXTRAS  ?= dev,real
LATEST  := .venv-latest
UPGRADE ?=
# Extra pytest arguments for test/test-latest (e.g. PYTEST_ARGS='-m "not real"' for a quick run).
PYTEST_ARGS ?=
# Where converted GGUF checkpoints are cached (safetensors folders), kept between runs.
export INTERP_CACHE ?= $(CURDIR)/.cache/interp
# Arguments for `interp compare` in `make demo` (override: make demo ARGS="--base A --post B").
ARGS    ?= --concepts truth,refusal,language,snmf --out report
# Extra flags for `make demo-real` (e.g. REAL_ARGS=--fresh to recompute sections its report folder holds).
REAL_ARGS ?=
# The public datasets (Geometry of Truth, Arditi et al.'s refusal splits, SNMF concepts) for `make demo-real`.
DATA    ?= ../shared/datasets

.PHONY: demo demo-real notebook test test-latest lock bench setup browser clean

$(STAMP): pyproject.toml $(LOCK)
	test -x $(BIN)/python || $(PY) -m venv $(VENV)
	$(BIN)/python -m pip install -q --upgrade pip
	$(BIN)/python -m pip install -q "$(TORCH)"
	$(BIN)/python -m pip install -q -c $(LOCK) -e ".[$(EXTRAS)]"
	$(BIN)/python -m pip check
	touch $(STAMP)

setup: $(STAMP)

demo: $(STAMP)
	@echo "make demo: the bundled pair, about 30 s on 2 idle cores, several minutes when other jobs share them (each section prints its table and wall time as it finishes)"
	$(BIN)/interp compare $(ARGS)

demo-real: $(STAMP)
	@echo "make demo-real: about 15-30 minutes on 2 cores (plus 2 minutes the first time, converting the GGUF files);" \
		"each section prints its table and wall time as it finishes, and a rerun resumes from the finished ones"
	$(BIN)/interp compare --base gemma-270m-organism --data $(DATA) --concepts truth,refusal,language,snmf --out report-real $(REAL_ARGS)

# JupyterLab on top of the project's environment; the notebooks write their reports to notebooks/reports/
# (git-ignored). NOTEBOOK_ARGS passes options to jupyter lab (e.g. --no-browser --port 8899); as root (a
# container), --allow-root is added.
NOTEBOOK_ARGS ?=
$(VENV)/.installed-notebook: $(STAMP)
	$(BIN)/python -m pip install -q -c $(LOCK) -e ".[$(EXTRAS),notebook]"
	$(BIN)/python -m pip check
	touch $@

notebook: $(VENV)/.installed-notebook
	$(BIN)/jupyter lab --notebook-dir=notebooks $(if $(filter 0,$(shell id -u)),--allow-root) $(NOTEBOOK_ARGS)

# The report is checked in a real browser: Debian's chromium, from the system's package manager
# (never a downloaded browser). Installed when missing and apt-get is available.
browser:
	@command -v chromium >/dev/null 2>&1 || { command -v apt-get >/dev/null 2>&1 && \
		(apt-get install -y -q chromium >/dev/null 2>&1 || (apt-get update -q >/dev/null 2>&1 && apt-get install -y -q chromium >/dev/null 2>&1)); } || \
		echo "warning: chromium is not installed and could not be; the browser test of the report will be skipped"

test: $(STAMP) browser
	$(BIN)/python -m pytest -q --durations=10 $(PYTEST_ARGS)

test-latest: browser
	test -x $(LATEST)/bin/python || $(PY) -m venv $(LATEST)
	$(LATEST)/bin/python -m pip install -q --upgrade pip
	$(LATEST)/bin/python -m pip install -q "$(TORCH)"
	$(LATEST)/bin/python -m pip install -q --upgrade --upgrade-strategy eager -e ".[$(EXTRAS)]" $(UPGRADE)
	mkdir -p artifacts
	$(LATEST)/bin/python -m pip freeze --exclude-editable | grep -v -e '^-e ' -e '^torch==' > artifacts/latest-versions.txt
	diff <(grep -v '^#' $(LOCK)) artifacts/latest-versions.txt > artifacts/latest-vs-lock.diff || true
	@echo "test-latest: versions in artifacts/latest-versions.txt; changes from the lock:"; cat artifacts/latest-vs-lock.diff
	rm -f artifacts/latest-passed
	$(LATEST)/bin/python -m pytest -q --durations=10 $(PYTEST_ARGS)
	test -n '$(PYTEST_ARGS)' || cp artifacts/latest-versions.txt artifacts/latest-passed

# Only what a whole test-latest run passed on becomes the lock.
lock: artifacts/latest-passed
	{ head -2 $(LOCK); cat artifacts/latest-passed; } > $(LOCK).new && mv $(LOCK).new $(LOCK)
	@echo "constraints.txt now holds the versions make test-latest passed on; commit it with the ranges it needs"

bench: $(STAMP)
	$(BIN)/python bench/run

clean:
	rm -rf $(VENV) $(LATEST) runs report report-real artifacts .pytest_cache .cache
