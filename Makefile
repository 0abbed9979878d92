# Two commands do everything on a fresh machine: `make run` and `make test`.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed
TAVLE_TEST_DATABASE_URL ?= postgresql://postgres@127.0.0.1:5432/test

.PHONY: install run test test-postgres lint schema bench clean

# Python 3.11 or newer. A .venv made by an older interpreter, or left without pip by a
# failed start, is made anew rather than failing the same way on every run.
$(STAMP): pyproject.toml
	@$(PYTHON) -c 'import sys; sys.exit(sys.version_info < (3, 11))' || { \
	  echo "Tavle trenger Python 3.11 eller nyere; $(PYTHON) er $$($(PYTHON) --version 2>&1)." \
	       "Oppgi en annen med PYTHON=/sti/til/python3.11."; exit 1; }
	@if [ -d $(VENV) ] && ! $(BIN)/python -c 'import sys, pip; sys.exit(sys.version_info < (3, 11))' 2>/dev/null; then \
	  echo "$(VENV) er laget med en annen Python eller mangler pip: lager den på nytt."; rm -rf $(VENV); fi
	test -d $(VENV) || $(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip
	$(BIN)/pip install --quiet -e '.[dev]'
	touch $(STAMP)

install: $(STAMP)

run: $(STAMP)
	$(BIN)/tavle migrate
	TAVLE_DEMO=1 $(BIN)/tavle demo --if-empty
	TAVLE_DEMO=1 $(BIN)/tavle serve

# The SQLite suite ignores any TAVLE_TEST_DATABASE_URL in the environment.
test: $(STAMP)
	env -u TAVLE_TEST_DATABASE_URL -u TAVLE_TEST_REQUIRE_POSTGRES $(BIN)/python -m pytest

# Fails (never skips) when PostgreSQL is unreachable: see tests/conftest.py.
test-postgres: $(STAMP)
	TAVLE_TEST_DATABASE_URL=$(TAVLE_TEST_DATABASE_URL) $(BIN)/python -m pytest

lint: $(STAMP)
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .

schema: $(STAMP)
	$(BIN)/tavle schema > schema.graphql

bench: $(STAMP)
	$(BIN)/python bench/read_api.py

clean:
	rm -rf $(VENV) var *.egg-info
