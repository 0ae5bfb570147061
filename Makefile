# Quick start: `make repro` (set up + run the pipeline on the built-in data), `make test`.
# Both are idempotent: the venv is (re)installed only when a requirements file changes.
SHELL := /bin/bash
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed
export DVC_NO_ANALYTICS := 1

.PHONY: setup repro test lint format bench exp plots plots-check clean-outputs

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
	source $(BIN)/activate && for b in $(filter-out bench/bench_recipes.py,$(wildcard bench/bench_*.py)); do echo "== $$b"; python $$b || exit 1; done

# `dvc exp show` narrowed to what tells experiments apart: the params that differ, test accuracy
# and macro-F1 (always), the deployed model's F1 and size and the best epoch (where they differ);
# no source-file hashes, no latency noise. Fits 120 columns for a sweep of one or two params.
# DVC matches these regexes from the start of each column name. `dvc exp show` prints everything.
EXP_DROP := Created|.*/|.*(precision|recall|top3|iou|latency|speedup)|best\.val|epochs_run|step$$|test\.n$$|n_folds|(mean|std)\.|deployed\.variant
EXP_KEEP := Experiment$$|test\.(accuracy|f1_macro)$$
exp: setup
	source $(BIN)/activate && dvc exp show --no-pager --only-changed --drop '$(EXP_DROP)' --keep '$(EXP_KEEP)'

# dvc_plots/index.html, drawn offline (viz/page.html); plots-check renders it in headless Chromium
plots: setup
	source $(BIN)/activate && dvc plots show

plots-check: plots
	source $(BIN)/activate && python tools/check_plots.py
