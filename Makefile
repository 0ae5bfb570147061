# Quick start: `make repro` (set up + run the pipeline on the built-in data), `make test`.
# Both are idempotent: the venv is (re)installed only when a requirements file changes.
SHELL := /bin/bash
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed
export DVC_NO_ANALYTICS := 1

.PHONY: setup repro test lint format bench clean-outputs

$(STAMP): requirements.txt requirements-dev.txt pyproject.toml
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --disable-pip-version-check -q -r requirements-dev.txt
	$(BIN)/pip install --disable-pip-version-check -q --no-deps --no-build-isolation -e .
	touch $(STAMP)

setup: $(STAMP)

repro: setup
	source $(BIN)/activate && dvc repro

test: setup
	source $(BIN)/activate && pytest -q

lint: setup
	$(BIN)/ruff check . && $(BIN)/ruff format --check .

format: setup
	$(BIN)/ruff check --fix . && $(BIN)/ruff format .

bench: setup
	source $(BIN)/activate && for b in bench/bench_*.py; do echo "== $$b"; python $$b || exit 1; done
