# Usage Meter: `make dev` runs the service locally, `make test` runs every test.
SHELL := /bin/bash
.DEFAULT_GOAL := help

VENV    ?= .venv
BIN     := $(VENV)/bin
# Lambda runs python3.13; use it when this machine has it (pyenv keeps it out of PATH).
BOOT_PYTHON ?= $(firstword $(wildcard $(shell pyenv root 2>/dev/null)/versions/3.13*/bin/python3.13) \
                 $(shell command -v python3.13 python3.12 python3.11 python3 2>/dev/null))
# `sam build` needs a python3.13 on PATH: the venv's own interpreter provides it.
export PATH := $(abspath $(BIN)):$(PATH)

.PHONY: help install dev rollup test lint typecheck unit integration engine e2e validate build openapi bench clean

help:
	@echo "make dev        run the whole service locally (DynamoDB Local + gateway on 127.0.0.1:3000)"
	@echo "make rollup     run the rollup function once against the local data (DATE=YYYY-MM-DD: that month)"
	@echo "make test       lint, type-check and run every test tier"
	@echo "make unit       one tier: unit (and the client's) | make integration | make engine | make e2e"
	@echo "make validate   sam validate --lint"
	@echo "make build      sam build (the layer and every function)"
	@echo "make openapi    regenerate openapi.json from the code"
	@echo "make bench      run the benchmarks under bench/"

# uv installs what pip does in a fraction of the time (a fresh clone's install is mostly
# download and unpack). When it is not on PATH it comes from PyPI, once per user, into
# UV_HOME; pip installs everything only when uv cannot be had. The layer's pins constrain
# the venv, so the tests run the boto3, pydantic and Powertools that Lambda will (uv's
# resolver would otherwise prefer the newest boto3 over the newest SAM CLI).
UV_HOME ?= $(or $(XDG_CACHE_HOME),$(HOME)/.cache)/usage-meter/uv
UV ?= $(or $(shell command -v uv 2>/dev/null),$(UV_HOME)/bin/uv)
LAYER_PINS := layers/core/requirements.txt

$(BIN)/.installed: pyproject.toml $(LAYER_PINS) clients/python/pyproject.toml
	@test -n "$(BOOT_PYTHON)" || { echo "error: no python3.11+ found; install Python 3.13 (pyenv install 3.13)"; exit 1; }
	@if [ -x "$(UV)" ] || $(BOOT_PYTHON) -m pip install --quiet --target "$(UV_HOME)" uv; then \
	  echo "uv venv $(VENV) && uv pip install -c $(LAYER_PINS) -e '.[dev]' -e clients/python   (uv: $(UV))"; \
	  "$(UV)" venv --quiet --allow-existing --seed --python "$(BOOT_PYTHON)" $(VENV) && \
	  "$(UV)" pip install --quiet --python $(BIN)/python -c $(LAYER_PINS) -e '.[dev]' -e clients/python; \
	else \
	  echo "uv could not be installed: pip installs instead (slower)"; \
	  $(BOOT_PYTHON) -m venv $(VENV) && \
	  $(BIN)/python -m pip install --quiet --upgrade pip && \
	  $(BIN)/python -m pip install --quiet -e '.[dev]' -e clients/python; \
	fi
	@touch $@

install: $(BIN)/.installed

# The complexity gate, as Powertools gates its own code: no function above grade C, modules
# averaging B at most, the whole code averaging A.
COMPLEXITY_PATHS := layers admin tools functions clients/python/src

lint: install
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .
	$(BIN)/xenon --max-absolute C --max-modules B --max-average A $(COMPLEXITY_PATHS)

typecheck: install
	$(BIN)/mypy

# One tier each; `make test` runs them all, in this order, after lint and type-check.
unit: install
	$(BIN)/pytest tests/unit clients/python/tests

# moto runs in-process: two workers (one per core of a CI machine) halve this tier's time
integration: install
	$(BIN)/pytest -n 2 tests/integration

engine: install
	$(BIN)/pytest tests/engine

# each e2e test starts its own local stack on free ports in its own folder: two workers overlap
# one stack's start-up with another's requests
e2e: install
	$(BIN)/pytest -n 2 tests/e2e

test: lint typecheck unit integration engine e2e

validate: install
	$(BIN)/sam validate --lint

build: install
	$(BIN)/sam build --parallel
	@# Lambda cannot write bytecode under /opt: ship it, compiled for the runtime's Python.
	@# unchecked-hash: packaging does not keep file times, so timestamp checks would miss.
	@if $(BIN)/python -c 'import sys; sys.exit(sys.version_info[:2] != (3, 13))'; then \
	  $(BIN)/python -m compileall -q -j 0 --invalidation-mode unchecked-hash .aws-sam/build >/dev/null && \
	  echo "precompiled .aws-sam/build for python3.13"; \
	else echo "note: not precompiling (the venv is not python3.13)"; fi

openapi: install
	$(BIN)/python -c "from usage_meter.http.docs import openapi_document; print(openapi_document())" > openapi.json

bench: install
	$(BIN)/python bench/calls_per_event.py
	$(BIN)/python bench/grouped_reads.py
	$(BIN)/python bench/vs_naive.py
	$(BIN)/python bench/throughput.py
	$(BIN)/python bench/hot_tenant.py
	$(BIN)/python bench/import_time.py
	$(BIN)/python bench/layer_size.py
	$(BIN)/python bench/metering_overhead.py

dev: install
	$(BIN)/python -m usage_meter_local.dev

rollup: install
	$(BIN)/python -m usage_meter_local.dev rollup $(if $(DATE),--date $(DATE))

clean:
	rm -rf .aws-sam .pytest_cache .mypy_cache .ruff_cache
