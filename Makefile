# ste-opt: each target sets up .venv itself on a fresh machine.
PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
PIP := $(PY) -m pip
CONSTRAINTS := constraints.txt
STAMP := $(VENV)/.installed

.PHONY: demo test test-fast bench lint clean venv

venv: $(STAMP)

$(STAMP): pyproject.toml $(CONSTRAINTS)
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PIP) install -q -c $(CONSTRAINTS) torch==2.13.0
	$(PIP) install -q -c $(CONSTRAINTS) -e ".[all]"
	touch $(STAMP)

demo: $(STAMP)
	$(VENV)/bin/ste-opt demo

# the import contracts first (layers, no cycles, private modules: docs/ARCHITECTURE.md), then the
# whole suite (about 3 minutes on 2 cores, including the Ray/Flower engine tests marked slow)
test: $(STAMP)
	$(VENV)/bin/lint-imports
	$(PY) -m pytest -q

# skip the tests marked slow (about 45 s)
test-fast: $(STAMP)
	$(VENV)/bin/lint-imports
	$(PY) -m pytest -q -m "not slow"

bench: $(STAMP)
	$(PY) -m benchmarks.run_all

lint: $(STAMP)
	$(VENV)/bin/ruff check ste_opt tests benchmarks
	$(VENV)/bin/lint-imports

clean:
	rm -rf $(VENV) runs .pytest_cache build dist *.egg-info
