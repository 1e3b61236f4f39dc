# routeproof: `make run` checks the SUT against real Envoy, `make test` runs the suite.
# Both create the local virtualenv on first use; only Python 3.11 is needed.

PYTHON ?= python3.11
VENV := .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed-stamp

.PHONY: run test lint typecheck check format protos goldens mutants-table clean

$(STAMP): pyproject.toml
	@test -x $(PY) || $(PYTHON) -m venv $(VENV) || python3 -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet -e '.[dev]'
	@touch $(STAMP)

run: $(STAMP)
	$(PY) -m harness check --xds both

test: $(STAMP) lint typecheck
	$(PY) -m pytest -q -n auto

lint: $(STAMP)
	$(PY) -m ruff check .
	$(PY) -m ruff format --check .
	$(VENV)/bin/lint-imports

typecheck: $(STAMP)
	$(PY) -m mypy

format: $(STAMP)
	$(PY) -m ruff format .
	$(PY) -m ruff check --fix .

protos: $(STAMP)
	$(PY) -m sut.extension.regenerate
	$(PY) -m harness.loopback.adapter.regenerate

goldens: $(STAMP)
	$(PY) -m pytest -q tests/translate --update-goldens

# Pairs of the kill table searched at once, one process each (default: one per core). The budget
# per pair is counted in examples, so more workers make no search weaker.
WORKERS ?= $(shell nproc 2>/dev/null || echo 1)

mutants-table: $(STAMP)
	$(PY) -m harness mutants --xds both --transport all --readme README.md --witnesses tests/harness_commands/witnesses \
		--workers $(WORKERS)

clean:
	rm -rf $(VENV) .pytest_cache .mypy_cache .ruff_cache .hypothesis
