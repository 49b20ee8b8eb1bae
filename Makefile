# One entry point for set-up, run, test and the quality gates.
#   make demo   - set up everything, run the whole system on a simulated outbreak
#   make test   - set up everything, run the gates and the full test suite
PYTHON ?= python3
VENV   ?= .venv
BIN    := $(VENV)/bin

.PHONY: setup demo test check fmt unit bench infra-up infra-down clean

$(BIN)/covidtech: pyproject.toml
	@$(PYTHON) -c 'import sys; assert sys.version_info >= (3, 11), "Python 3.11+ is required"'
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install -q --upgrade pip
	$(BIN)/pip install -q -e '.[dev]'
	@touch $@

setup: $(BIN)/covidtech

demo: setup
	$(BIN)/covidtech demo

test: setup
	scripts/test

check: setup
	$(BIN)/ruff format --check .
	$(BIN)/ruff check .
	$(BIN)/mypy

fmt: setup
	$(BIN)/ruff format .
	$(BIN)/ruff check --fix .

unit: setup
	$(BIN)/pytest -q tests/unit

bench: setup infra-up
	$(BIN)/python -m bench.ingest
	$(BIN)/python -m bench.streams

infra-up: setup
	$(BIN)/covidtech infra up

infra-down: setup
	$(BIN)/covidtech infra down

clean:
	rm -rf $(VENV) .pytest_cache .mypy_cache .ruff_cache .hypothesis
