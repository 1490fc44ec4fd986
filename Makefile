# Lineside developer entry points. Each target first installs the system packages it needs
# (packaging/system-deps.sh: apt, as root or through sudo), then the Python packages, then runs.
#   make demo    the simulated line with its status page (demo extras only)
#   make test    the test suite (short fault scenarios included; dev extras and chromium)
#   make check   format, lint, types, dependency rule, tests (what developers and CI run)
#   make faults  the long fault-injection scenarios

PYTHON ?= python3
VENV   := .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed
DEMO_STAMP := $(VENV)/.installed-demo
SYSTEM_DEPS := PYTHON='$(PYTHON)' ./packaging/system-deps.sh

.PHONY: demo test check faults lint system-deps venv-deps demo-deps test-deps clean
# One apt-get at a time (dpkg takes a lock), and nothing here gains from -j.
.NOTPARALLEL:

venv-deps:
	@$(SYSTEM_DEPS) venv
demo-deps:
	@$(SYSTEM_DEPS) demo
test-deps:
	@$(SYSTEM_DEPS) test
system-deps: test-deps

# A virtualenv whose pip works. One without (a first try that stopped half-way, e.g. before
# python3-venv was there) is made again instead of failing for ever with "No module named pip".
define fresh_venv
	@if ! $(BIN)/python -m pip --version >/dev/null 2>&1; then \
	  echo "making $(VENV) with $(PYTHON)"; \
	  rm -rf $(VENV) && $(PYTHON) -m venv $(VENV) && \
	  $(BIN)/python -m pip install --quiet --upgrade pip; \
	fi
endef

# The demo needs the demo extras only; tests, lint and types need the dev extras too.
$(DEMO_STAMP): pyproject.toml | venv-deps
	$(fresh_venv)
	$(BIN)/python -m pip install --quiet -e '.[demo]'
	@touch $@

$(STAMP): pyproject.toml | venv-deps
	$(fresh_venv)
	$(BIN)/python -m pip install --quiet -e '.[dev,demo]'
	@touch $@

demo: demo-deps $(DEMO_STAMP)
	$(BIN)/lineside demo

# The suite runs on TEST_WORKERS processes (pytest-xdist), whole files to a worker so a file's
# shared broker or database stays in one process; TEST_WORKERS=0 runs it in this one.
TEST_WORKERS ?= 2
test: test-deps $(STAMP)
	$(BIN)/python -m pytest -q -n $(TEST_WORKERS) --dist loadfile $(PYTEST_ARGS)

lint: $(STAMP)
	$(BIN)/ruff format --check .
	$(BIN)/ruff check .
	$(BIN)/mypy

check: lint test

faults: test-deps $(STAMP)
	LINESIDE_FAULTS=long $(BIN)/python -m pytest -q -s tests/faults $(PYTEST_ARGS)

clean:
	rm -rf $(VENV) .mypy_cache .ruff_cache .pytest_cache *.egg-info
