# The README's two commands are `make demo` and `make test`. Everything else is a helper of theirs.
SHELL := /bin/bash
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
LOCAL := $(CURDIR)/.local
DEMO_DB := $(LOCAL)/demo/app.db
DEMO_USERS ?= 5000
DEMO_DAGSTER_HOME := $(LOCAL)/dagster_home

# The demo always uses the embedded defaults (never a DAGSTER_HOME or app URL from the shell);
# the test targets see neither variable.
demo-data demo-once demo: export DAGSTER_HOME := $(DEMO_DAGSTER_HOME)
demo-data demo-once demo: export RECS_DATABASE_URL := sqlite:///$(DEMO_DB)

.PHONY: install demo demo-once demo-data test test-services lint pytest bench clean

$(BIN)/.installed: pyproject.toml
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip
	$(BIN)/pip install --quiet -e ".[dev]"
	touch $@

install: $(BIN)/.installed

# Fresh demo data (SQLite) and an embedded Dagster instance, both under the git-ignored .local/.
demo-data: install
	mkdir -p $(DEMO_DAGSTER_HOME) $(LOCAL)/demo
	test -f $(DEMO_DAGSTER_HOME)/dagster.yaml || cp deploy/dagster_home/dagster.yaml $(DEMO_DAGSTER_HOME)/dagster.yaml
	rm -f $(DEMO_DB) $(DEMO_DB)-wal $(DEMO_DB)-shm
	$(BIN)/recs-pipeline init-db
	$(BIN)/recs-pipeline seed --users $(DEMO_USERS) --seed 42

# Run every job once against the demo data and print a summary (CI's smoke test).
demo-once: demo-data
	$(BIN)/recs-pipeline demo

# `demo-once`, then the UI on http://127.0.0.1:3000 with schedules and sensors running.
demo: demo-once
	$(BIN)/dagster dev -h 127.0.0.1 -p 3000 -w workspace.yaml

lint: install
	$(BIN)/ruff check .

pytest: install
	env -u DAGSTER_HOME -u RECS_DATABASE_URL $(BIN)/python -m pytest -q -p no:cacheprovider $(PYTEST_ARGS)

# PostgreSQL, Redis and Chromium, started or installed when missing (deploy/test/services).
test-services:
	deploy/test/services

# The whole test suite: ruff, then pytest on SQLite and PostgreSQL (services provisioned first).
test: lint test-services pytest

clean:
	rm -rf $(LOCAL) .pytest_cache .ruff_cache
