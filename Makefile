# Every target creates its virtualenv and installs what it needs when missing.
PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed
# `make demo` needs only brace's runtime dependencies: its own small virtualenv.
DEMO_VENV := .venv-demo
DEMO_STAMP := $(DEMO_VENV)/.installed

.PHONY: demo test test-all servers lint docs bench faults clean

$(STAMP): pyproject.toml
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet -e '.[test,dev,docs]'
	touch $(STAMP)

$(DEMO_STAMP): pyproject.toml
	test -x $(DEMO_VENV)/bin/python || $(PYTHON) -m venv $(DEMO_VENV)
	$(DEMO_VENV)/bin/python -m pip install --quiet -e .
	touch $(DEMO_STAMP)

demo: $(DEMO_STAMP)
	$(DEMO_VENV)/bin/python examples/demo.py

# The real servers the integration tests start (redis-server, PostgreSQL binaries).
servers:
	bash .ci/install-servers

test: $(STAMP) servers
	$(PY) -m pytest

# The suite on every CPython >= 3.10 this machine has (noxfile.py; pyenv's included), slow
# fault-matrix tests excepted; -r reuses each interpreter's virtualenv between runs.
test-all: $(STAMP) servers
	$(PY) -m nox -r

lint: $(STAMP)
	$(PY) -m ruff check src tests examples $(wildcard benchmarks)
	$(PY) -m mypy --strict src
# What users' type checkers see on decorated functions: mypy, then pyright (basedpyright in
# pyright's standard mode, configured by tests/typing/pyrightconfig.json).
	$(PY) -m mypy --strict tests/typing
	$(VENV)/bin/basedpyright --project tests/typing

docs: $(STAMP)
	$(PY) -m mkdocs build --strict --site-dir site

# The fault matrix against real servers (a few minutes): rewrites the table in
# docs/rides-out.md and docs/rides-out.png. FAULTS_ARGS=--long adds llm and background.
faults: $(STAMP) servers
	$(PY) benchmarks/faults.py $(FAULTS_ARGS)

bench: $(STAMP)
	@ls benchmarks/*.py >/dev/null 2>&1 || { echo "no benchmarks yet"; exit 0; }
	for b in benchmarks/*.py; do [ $$b = benchmarks/faults.py ] || $(PY) $$b || exit 1; done

clean:
	rm -rf $(VENV) $(DEMO_VENV) site .mypy_cache .ruff_cache .hypothesis
