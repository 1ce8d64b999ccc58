# Ellity. On a fresh machine `make run` and `make test` are all you type.
SHELL := /bin/bash
PYTHON ?= python3.11
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed
N ?= 100000
DB ?= sqlite
HOST ?= 127.0.0.1
PORT ?= 8000
export ELLITY_TEST_POSTGRES_URL ?= postgresql+asyncpg://postgres@127.0.0.1:5432/postgres

.PHONY: install run test lint unit bench migrate clean

# The pages' gettext catalogs, compiled from src/ellity/locale/*/LC_MESSAGES/messages.po
LOCALE_DIR := src/ellity/locale
CATALOGS := $(patsubst %.po,%.mo,$(wildcard $(LOCALE_DIR)/*/LC_MESSAGES/messages.po))

install: $(STAMP) $(CATALOGS)

$(STAMP): pyproject.toml constraints.txt
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip
	$(BIN)/pip install --quiet -c constraints.txt -e '.[dev]'
	touch $(STAMP)

$(LOCALE_DIR)/%/LC_MESSAGES/messages.mo: $(LOCALE_DIR)/%/LC_MESSAGES/messages.po $(STAMP)
	$(BIN)/pybabel compile --statistics -D messages -l $* -i $< -o $@

# make messages: extract the pages' texts (templates, web code, domain errors) into
# messages.pot and merge them into each catalog
# (then translate the new entries; tests/unit/test_catalogs.py fails while one is missing)
.PHONY: messages
messages: install
	$(BIN)/python -m ellity.web.i18n babel.cfg
	$(BIN)/pybabel update -D messages -i $(LOCALE_DIR)/messages.pot -d $(LOCALE_DIR) \
		--no-wrap --no-fuzzy-matching --ignore-obsolete

run: install
	$(BIN)/ellity serve --host $(HOST) --port $(PORT)

# make worker [BURST=1]: the background worker, against REDIS_URL (`make run` runs its own
# inside the web process); BURST=1 delivers everything due now and exits
.PHONY: worker
worker: install
	$(BIN)/ellity worker $(if $(BURST),--burst)

migrate: install
	$(BIN)/ellity migrate

lint: install
	$(BIN)/ruff check src tests bench migrations
	$(BIN)/ruff format --check src tests bench migrations
	$(BIN)/mypy
	$(BIN)/lint-imports

# The browser tests drive Debian's Chromium (Playwright's own browser download does not work).
CHROMIUM := /usr/bin/chromium
$(CHROMIUM):
	apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium

test: install $(CHROMIUM) lint
	$(BIN)/pytest

unit: install
	$(BIN)/pytest tests/unit

# make bench [N=100000] [DB=sqlite|postgres]: every benchmark on that database, each figure
# beside its floor; results in var/bench/latest.json (see README, "Benchmark")
bench: install
	$(BIN)/python bench/run.py --customers $(N) --db $(DB)

# make export MERCHANT=<slug> [OUT=<file>] [FORMAT=ecomail|excel]: the customer CSV (stdout without OUT)
.PHONY: export
export: install
	@test -n "$(MERCHANT)" || { echo "usage: make export MERCHANT=<slug> [OUT=<file>] [FORMAT=ecomail|excel]" >&2; exit 2; }
	@$(BIN)/ellity export --merchant '$(MERCHANT)' $(if $(OUT),--out '$(OUT)') $(if $(FORMAT),--format '$(FORMAT)')

# make ecomail-emulator [PORT=8025] [KEY=demo-key]: a local, in-memory Ecomail API with one
# list "Newsletter"; point ELLITY_ECOMAIL_API_URL at the URL it prints
.PHONY: ecomail-emulator
ecomail-emulator: PORT = 8025
ecomail-emulator: KEY ?= demo-key
ecomail-emulator: install
	$(BIN)/python -m tests.ecomail_emulator --port $(PORT) --api-key '$(KEY)' --list Newsletter

clean:
	rm -rf $(VENV) .pytest_cache .mypy_cache .ruff_cache
