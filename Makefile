# make dev   — the embedded stack (PostgreSQL, in-memory broker, ticker, the schedules in schedules.py)
# make test  — lint, type-check and the test suite against RabbitMQ on 127.0.0.1:5672 and the embedded PostgreSQL
# Both create .venv with python3 and (re)install the project with its dev and embedded extras when
# pyproject.toml changes.

PYTHON ?= python3
VENV   := .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed
SOURCES := app actors tests bench

export PIP_DISABLE_PIP_VERSION_CHECK := 1

.PHONY: dev test lint bench services clean

dev: $(STAMP)
	$(BIN)/punchclock dev

test: lint services
	$(BIN)/pytest -q

lint: $(STAMP)
	$(BIN)/ruff check $(SOURCES)
	$(BIN)/ruff format --check $(SOURCES)
	$(BIN)/mypy --strict app

bench: $(STAMP) services
	$(BIN)/python bench/tick.py
	$(BIN)/python bench/fire_latency.py
	$(BIN)/python bench/pipeline.py
	$(BIN)/python bench/llm_concurrency.py

services:
	bash .ci/services.sh

$(BIN)/python:
	$(PYTHON) -m venv $(VENV)

$(STAMP): pyproject.toml | $(BIN)/python
	$(BIN)/python -m pip install --quiet -e '.[dev,embedded]'
	touch $@

# Leaves .punchclock/ (the embedded database) alone: remove it by hand to start from an empty database.
clean:
	rm -rf $(VENV) build dist *.egg-info .pytest_cache .mypy_cache .ruff_cache
	find . -name __pycache__ -type d -not -path './.punchclock/*' -prune -exec rm -rf {} +
