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

.PHONY: run test lint format lock system-deps clean help

help:
	@echo "make run   - install and serve the app on http://$(HOST):$(PORT)"
	@echo "make test  - install everything and run the full test suite"
	@echo "make lock  - re-resolve requirements/*.lock from pyproject.toml"

# Installs come from the committed locks (requirements/*.lock, hash-checked, every package
# pinned; see docs/dependencies.md). `make lock` regenerates them from pyproject.toml.
LOCK_RUN := requirements/run.lock
LOCK_DEV := requirements/dev.lock
PIP_VERSION := 26.3
PIP_TOOLS_VERSION := 7.6.2
PIP_INSTALL := $(BIN)/python -m pip install --quiet --disable-pip-version-check
LOCK_VENV := .venv-lock
COMPILE := $(LOCK_VENV)/bin/pip-compile --quiet --generate-hashes --allow-unsafe --strip-extras \
	--no-emit-index-url --no-emit-find-links --build-deps-for editable

$(BIN)/python:
	$(PYTHON) -m venv $(VENV)
	$(PIP_INSTALL) pip==$(PIP_VERSION)

# --no-deps: the lock already lists every package, so nothing unpinned can slip in;
# --no-build-isolation: the project is built with the locked setuptools.
$(STAMP_RUN): $(LOCK_RUN) | $(BIN)/python
	$(PIP_INSTALL) --require-hashes --no-deps -r $(LOCK_RUN)
	$(PIP_INSTALL) --no-deps --no-build-isolation -e .
	touch $@

$(STAMP_TEST): $(LOCK_DEV) | $(BIN)/python
	$(PIP_INSTALL) --require-hashes --no-deps -r $(LOCK_DEV)
	$(PIP_INSTALL) --no-deps --no-build-isolation -e .
	$(BIN)/python -m pip check
	touch $@ $(STAMP_RUN)

# Resolves on this platform (Linux x86_64, CPython 3.11: CI, the Docker image and the servers).
# torch resolves to the local CPU wheel that pip finds through its find-links.
lock:
	[ -x $(LOCK_VENV)/bin/pip-compile ] || { $(PYTHON) -m venv $(LOCK_VENV) && \
		$(LOCK_VENV)/bin/python -m pip install --quiet pip==$(PIP_VERSION) pip-tools==$(PIP_TOOLS_VERSION); }
	$(COMPILE) -o $(LOCK_RUN) pyproject.toml
	$(COMPILE) --extra train --extra test -o $(LOCK_DEV) pyproject.toml

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
	command -v redis-server >/dev/null 2>&1 || missing="$$missing redis-server"; \
	[ -x /usr/sbin/rabbitmq-server ] || missing="$$missing rabbitmq-server"; \
	command -v dciodvfy >/dev/null 2>&1 || missing="$$missing dicom3tools"; \
	command -v Orthanc >/dev/null 2>&1 || missing="$$missing orthanc orthanc-dicomweb"; \
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
	rm -rf $(VENV) $(LOCK_VENV) var test-artifacts .pytest_cache
