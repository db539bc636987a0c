# Pasar: `make demo` runs the whole platform on embedded defaults; `make test` runs every test, ruff and mypy.
SHELL := /bin/bash
export PATH := $(HOME)/.local/bin:$(PATH)
export PASAR_HOME ?= $(CURDIR)/.pasar
# Tools that phone home are told not to.
export MLFLOW_DISABLE_TELEMETRY := true
export BENTOML_DO_NOT_TRACK := true
export DBT_SEND_ANONYMOUS_USAGE_STATS := false
export DBT_VERSION_CHECK := false
export LITELLM_LOCAL_MODEL_COST_MAP := True
RUN := uv run --frozen --python 3.11

.PHONY: help install install-test demo test lint typecheck unit bench api clean

help:
	@echo "make demo   set everything up and run the platform (embedded PostgreSQL, demo tenants, API)"
	@echo "make test   set everything up and run the tests, ruff and mypy"
	@echo "make bench  run the benchmarks in bench/"

install:
	@scripts/bootstrap.sh

install-test:
	@scripts/bootstrap.sh --with-redis

demo: install
	$(RUN) pasar demo

api: install
	$(RUN) pasar api

lint:
	$(RUN) ruff check .
	$(RUN) ruff format --check .

typecheck:
	$(RUN) mypy

unit:
	$(RUN) pytest

test: install-test lint typecheck unit

bench: install-test
	$(RUN) python -m bench.cpu_probe
	$(RUN) python -m bench.api_baseline
	$(RUN) python -m bench.ingest
	$(RUN) python -m bench.features
	$(RUN) python -m bench.orders
	$(RUN) python -m bench.inference
	$(RUN) python -m bench.dbt --bars 1000000

clean:
	-$(RUN) pasar db stop
	rm -rf .pasar .mypy_cache .ruff_cache .pytest_cache
