# kenshin-hub developer loop. `make help` lists the targets.
PYTHON ?= python3
VENV   := .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed

.DEFAULT_GOAL := help

help: ## list the targets
	@awk 'BEGIN {FS = ":.*## "} /^[a-z-]+:.*## / {printf "  \033[1m%-18s\033[0m %s\n", $$1, $$2}' $(MAKEFILE_LIST)

$(STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip setuptools wheel
	$(BIN)/pip install --quiet -e '.[dev]'
	touch $(STAMP)

setup: $(STAMP) ## create .venv and install the hub with its dev tools

demo: $(STAMP) ## THE MAIN COMMAND: local Kafka + registry (no Docker, secured: TLS, SCRAM, ACLs), then the demo
	PYTHON=$(PYTHON) bash .ci/deps --runtime
	$(BIN)/kenshin-hub demo

deps: ## install what the tests need when missing (Debian packages, docker compose plugin; .ci/deps), print it
	PYTHON=$(PYTHON) bash .ci/deps

# deps first, even under -j: python3-venv may be what it installs for .venv.
test: deps ## THE TEST COMMAND: deps, lint, types, then every tier (unit, integration, slow)
	$(MAKE) --no-print-directory lint typecheck
	$(BIN)/pytest

test-unit: $(STAMP) ## unit tier only (no broker)
	$(BIN)/pytest -m unit

test-integration: $(STAMP) ## integration tier without the slow tests (starts its own broker)
	$(BIN)/pytest -m "integration and not slow"

test-fault: $(STAMP) ## the kill -9 fault tests only
	$(BIN)/pytest -m fault

lint: $(STAMP) ## ruff check + ruff format --check
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .

typecheck: $(STAMP) ## mypy --strict on the hub's packages
	$(BIN)/mypy

stack-up: $(STAMP) ## start the local stack (cached jars), apply topics, register schemas
	$(BIN)/kenshin-hub stack up
	$(BIN)/kenshin-hub setup

stack-down: $(STAMP) ## stop the local stack
	$(BIN)/kenshin-hub stack down

clean: ## remove the virtualenv and caches (not the jar cache or the stack's state)
	rm -rf $(VENV) .mypy_cache .ruff_cache .pytest_cache *.egg-info

.PHONY: help setup deps demo test test-unit test-integration test-fault lint typecheck stack-up stack-down clean
