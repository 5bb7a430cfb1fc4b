# `make help` lists the targets. Everything installs into .venv from pyproject.toml.
.DEFAULT_GOAL := help
PYTHON ?= python3
VENV := .venv
BIN := $(CURDIR)/$(VENV)/bin
# `mlflow run --env-manager local` starts each step with the `python` on PATH: make it the venv's.
export PATH := $(BIN):$(PATH)
STEPS ?= all
HYDRA_OPTIONS ?=
SERVER_PORT ?= 5000
AUTH ?=

.PHONY: help install browser run test test-fast lint format contracts new-step bench ui server server-stop clean

help: ## List the targets
	@grep -E '^[a-z-]+:.*## ' $(MAKEFILE_LIST) | awk 'BEGIN {FS = ":.*## "} {printf "  make %-12s %s\n", $$1, $$2}'

$(VENV)/.installed: pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -e ".[dev]"
	touch $@

install: $(VENV)/.installed ## Create .venv and install the project with its pinned dependencies

# Debian's chromium, for the test that renders the MLflow UI; without root (or passwordless sudo)
# and apt it says so and goes on: that test is then skipped.
APT := $(if $(filter 0,$(shell id -u)),,$(if $(shell sudo -n true 2>/dev/null && echo y),sudo -n,NONE))
browser: ## Install Chromium (Debian's package) where root and apt allow; never fails
	@if command -v chromium >/dev/null || command -v chromium-browser >/dev/null; then exit 0; \
	elif [ "$(APT)" = NONE ] || ! command -v apt-get >/dev/null; then \
		echo "browser: chromium is not installed and this user cannot apt-get it; the UI test will be skipped"; \
	elif ! { $(APT) apt-get install -y -q chromium >/dev/null 2>&1 || \
		{ $(APT) apt-get update -q >/dev/null 2>&1 && $(APT) apt-get install -y -q chromium >/dev/null 2>&1; }; }; then \
		echo "browser: apt-get install chromium failed; the UI test will be skipped"; \
	fi

run: install ## Run the pipeline on the shipped sample (STEPS=..., HYDRA_OPTIONS="...")
	mlflow run . --env-manager local -P steps=$(STEPS) -P hydra_options="$(HYDRA_OPTIONS)"

test: install browser ## Lint, then every test (the end-to-end `slow` ones too)
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .
	$(BIN)/pytest

test-fast: install ## The fast unit tests only
	$(BIN)/pytest -m "not slow"

lint: install ## ruff check and format check
	$(BIN)/ruff check . && $(BIN)/ruff format --check .

format: install ## Apply ruff's fixes and formatting
	$(BIN)/ruff check --fix . && $(BIN)/ruff format .

contracts: install ## Regenerate each component's MLproject and the README's step table from the contracts
	PYTHONPATH=src $(BIN)/python -m mlpipe.pipeline.derived

new-step: install ## Scaffold a runnable step: make new-step NAME=<name> [READS=<artifact>] [WRITES=<artifact>]
	@test -n "$(NAME)" || { echo "usage: make new-step NAME=<name> [READS=<artifact>] [WRITES=<artifact>]"; exit 2; }
	@PYTHONPATH=src $(BIN)/python -m mlpipe.pipeline.scaffold --reads "$(or $(READS),clean_data)" $(if $(WRITES),--writes "$(WRITES)") -- "$(NAME)"

bench: install ## Measure the pipeline against a plain script, and W&B's cost (benchmarks/)
	$(BIN)/python benchmarks/pipeline_vs_script.py
	$(BIN)/python benchmarks/rerun_phases.py
	$(BIN)/python benchmarks/wandb_overhead.py

ui: install ## The MLflow UI on the project's experiment, training view (HYDRA_OPTIONS="dataset=...")
	PYTHONPATH=src $(BIN)/python -m mlpipe.tracking.ui $(HYDRA_OPTIONS)

server: install ## PostgreSQL under .server/ + `mlflow server` on 127.0.0.1 (SERVER_PORT=5000, AUTH=1: basic auth), artifacts proxied
	@$(BIN)/python -m mlpipe.tracking.server start --folder $(CURDIR)/.server --port $(SERVER_PORT) $(if $(filter 1 yes true,$(AUTH)),--auth)

server-stop: ## Stop what `make server` started, by its pids (the data stays in .server/)
	$(BIN)/python -m mlpipe.tracking.server stop --folder $(CURDIR)/.server

clean: ## Remove the store, the inference ledger, outputs and caches (keeps .venv; `make server-stop` first to drop .server/)
	rm -rf mlflow.db mlartifacts outputs multirun inference_ledger.db* .pytest_cache .ruff_cache
	test -f .server/server.json || rm -rf .server
