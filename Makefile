# Two commands set everything up on a machine that has Python 3.11:
#   make run    create .venv, install, migrate the SQLite database and serve on 127.0.0.1:8000
#   make test   create .venv as needed and run the whole suite
PYTHON ?= python3.11
VENV := .venv
BIN := $(VENV)/bin
STAMP_RUN := $(VENV)/.installed-run
STAMP_TEST := $(VENV)/.installed-test
HOST ?= 127.0.0.1
PORT ?= 8000

.PHONY: run test lint format system-deps clean help

help:
	@echo "make run   - install and serve the app on http://$(HOST):$(PORT)"
	@echo "make test  - install everything and run the full test suite"

$(BIN)/python:
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip

$(STAMP_RUN): pyproject.toml | $(BIN)/python
	$(BIN)/pip install --quiet -e .
	touch $@

$(STAMP_TEST): pyproject.toml | $(BIN)/python
	$(BIN)/pip install --quiet -e '.[train,test]'
	touch $@ $(STAMP_RUN)

run: $(STAMP_RUN)
	$(BIN)/fetalcns db upgrade
	$(BIN)/fetalcns users bootstrap-admin
	$(BIN)/fetalcns demo-data --if-empty
	$(BIN)/fetalcns serve --host $(HOST) --port $(PORT)

# Debian packages the tests use: Chromium for the browser tests, dcmtk as an
# independent DICOM toolkit. Installed only when missing and when apt-get exists.
system-deps:
	@missing=""; \
	[ -x /usr/bin/chromium ] || missing="$$missing chromium"; \
	command -v dcmdump >/dev/null 2>&1 || missing="$$missing dcmtk"; \
	if [ -n "$$missing" ]; then \
		if command -v apt-get >/dev/null 2>&1 && [ "$$(id -u)" = 0 ]; then \
			echo "installing$$missing with apt-get"; \
			apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq $$missing >/dev/null; \
		else \
			echo "warning:$$missing not installed and apt-get unavailable; those tests will be skipped"; \
		fi; \
	fi

lint: $(STAMP_TEST)
	$(BIN)/ruff check app tests benchmarks migrations
	$(BIN)/ruff format --check app tests benchmarks migrations

format: $(STAMP_TEST)
	$(BIN)/ruff check --fix app tests benchmarks migrations
	$(BIN)/ruff format app tests benchmarks migrations

test: $(STAMP_TEST) system-deps
	$(BIN)/ruff check app tests benchmarks migrations
	PLAYWRIGHT_SKIP_BROWSER_DOWNLOAD=1 $(BIN)/python -m pytest $(PYTEST_ARGS)

clean:
	rm -rf $(VENV) var test-artifacts .pytest_cache
