# Lineside developer entry points. Each target sets up what it needs on a fresh machine.
#   make demo    the simulated line with its status page
#   make test    the test suite (short fault scenarios included)
#   make check   format, lint, types, dependency rule, tests (what developers and CI run)
#   make faults  the long fault-injection scenarios

PYTHON ?= python3
VENV   := .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed

.PHONY: demo test check faults lint system-deps clean

$(STAMP): pyproject.toml
	@test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -e '.[dev,demo]'
	@touch $(STAMP)

system-deps:
	@./packaging/system-deps.sh

demo: $(STAMP) system-deps
	$(BIN)/lineside demo

test: $(STAMP) system-deps
	$(BIN)/python -m pytest -q $(PYTEST_ARGS)

lint: $(STAMP)
	$(BIN)/ruff format --check .
	$(BIN)/ruff check .
	$(BIN)/mypy

check: lint test

faults: $(STAMP) system-deps
	LINESIDE_FAULTS=long $(BIN)/python -m pytest -q -s tests/faults $(PYTEST_ARGS)

clean:
	rm -rf $(VENV) .mypy_cache .ruff_cache .pytest_cache *.egg-info
