# Anju — the two commands: `make demo` and `make test`. Everything else is a helper of those two.
PYTHON ?= python3
VENV   := .venv
BIN    := $(VENV)/bin

.PHONY: demo test lint typecheck audit unit bench services clean

# A stamp per install profile: re-installs when pyproject.toml changes.
$(VENV)/.stamp-demo: pyproject.toml scripts/venv
	PYTHON=$(PYTHON) scripts/venv "$(VENV)" ".[edge,hub,sim,demo]"
	touch $@

$(VENV)/.stamp-dev: pyproject.toml scripts/venv
	PYTHON=$(PYTHON) scripts/venv "$(VENV)" ".[dev]"
	touch $@ $(VENV)/.stamp-demo

## make demo: the whole system on embedded defaults (broker, hub, simulator, 2 gateways, receiver).
demo: $(VENV)/.stamp-demo
	$(BIN)/anju-hub demo --run-dir run/demo

## make test: lint, types, the dependency audit and the whole suite, with a real Mosquitto.
test: services $(VENV)/.stamp-dev lint typecheck audit unit

services:
	@scripts/ensure-services

lint: $(VENV)/.stamp-dev
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .

typecheck: $(VENV)/.stamp-dev
	$(BIN)/mypy

# Every installed distribution against PyPI's vulnerability records (devtools/audit.py); fails on a known one.
audit: $(VENV)/.stamp-dev
	$(BIN)/python -m devtools.audit

unit: $(VENV)/.stamp-dev
	scripts/run-tests $(BIN)

## make bench: the performance figures recorded in BENCHMARKS.md.
bench: $(VENV)/.stamp-dev
	$(BIN)/python -m bench

clean:
	rm -rf $(VENV) run .pytest_cache .mypy_cache .ruff_cache
