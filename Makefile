# Ellity. On a fresh machine `make run` and `make test` are all you type.
SHELL := /bin/bash
PYTHON ?= python3.11
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed
N ?= 100000
HOST ?= 127.0.0.1
PORT ?= 8000
export ELLITY_TEST_POSTGRES_URL ?= postgresql+asyncpg://postgres@127.0.0.1:5432/postgres

.PHONY: install run test lint unit bench migrate clean

install: $(STAMP)

$(STAMP): pyproject.toml constraints.txt
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip
	$(BIN)/pip install --quiet -c constraints.txt -e '.[dev]'
	touch $(STAMP)

run: install
	$(BIN)/ellity serve --host $(HOST) --port $(PORT)

migrate: install
	$(BIN)/ellity migrate

lint: install
	$(BIN)/ruff check src tests bench migrations
	$(BIN)/mypy
	$(BIN)/lint-imports

test: install lint
	$(BIN)/pytest

unit: install
	$(BIN)/pytest tests/unit

bench: install
	$(BIN)/python bench/core.py --customers $(N)

clean:
	rm -rf $(VENV) .pytest_cache .mypy_cache .ruff_cache
