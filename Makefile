# Single entry points; CI runs `make test` through .ci/run.
PY ?= python3
VENV := .venv
BIN := $(VENV)/bin
SRC := python tests bench

.PHONY: install run fmt lint test test-rust test-python bench

$(BIN)/python:
	$(PY) -m venv $(VENV)
	$(BIN)/pip install -q --upgrade pip

# Builds the Rust extension (release) and installs hopper editable with test tools.
install: $(BIN)/python
	$(BIN)/pip install -q -e '.[test]'

# The job server on 0.0.0.0:6790 (HTTP_PORT, HOST and the other variables apply).
run: install
	$(BIN)/hopper serve

fmt: install
	cargo fmt --all
	$(BIN)/ruff format $(SRC)
	$(BIN)/ruff check --fix $(SRC)

lint: install
	cargo fmt --all -- --check
	cargo clippy --workspace --all-targets -- -D warnings
	$(BIN)/ruff format --check $(SRC)
	$(BIN)/ruff check $(SRC)
	$(BIN)/mypy
	$(BIN)/python -m mypy.stubtest hopper._engine

test-rust:
	cargo test -p hopper-core

test-python: install
	$(BIN)/pytest -q

test: lint test-rust test-python

bench: install
	$(BIN)/python bench/engine.py
