# Single entry points; CI runs `make test` through .ci/run.
PY ?= python3
VENV := .venv
BIN := $(VENV)/bin
SRC := python tests bench packaging
# What the Rust extension is built from: an install is redone only when these change
# (Python sources are linked by the editable install and need no reinstall).
ENGINE_SRC := Cargo.toml Cargo.lock pyproject.toml $(shell find rust -name '*.rs' -o -name Cargo.toml)

.PHONY: install install-run run fmt lint test test-rust test-python bench wheel binary

$(BIN)/python:
	$(PY) -m venv $(VENV)
	$(BIN)/pip install -q --upgrade pip

# The editable install copies the extension into python/hopper; one left from an older
# build (another Python ABI tag) would shadow the new one, so each install clears them.
CLEAR_STALE := rm -f python/hopper/_engine.*.so

# What serving needs: hopper and its runtime dependencies, no test tooling.
$(VENV)/.installed-run: $(ENGINE_SRC) | $(BIN)/python
	$(CLEAR_STALE)
	$(BIN)/pip install -q -e .
	touch $@

# Everything `make test` uses (the test extra: pytest, linters, browser and packaging tools).
$(VENV)/.installed-test: $(ENGINE_SRC) | $(BIN)/python
	$(CLEAR_STALE)
	$(BIN)/pip install -q -e '.[test]'
	touch $@ $(VENV)/.installed-run

# The reference peers from npm, pinned by the lock file: bun and bunqueue 2.9.5 (its
# SDK drives hopper's TCP protocol in the tests; its server runs in the benchmarks).
PEERS := bench/peers/node_modules/.installed
$(PEERS): bench/peers/package.json bench/peers/package-lock.json
	npm ci --prefix bench/peers --no-audit --no-fund --loglevel=error
	touch $@

install-run: $(VENV)/.installed-run
install: $(VENV)/.installed-test $(PEERS)

# The job server on 0.0.0.0:6790 (HTTP_PORT, HOST and the other variables apply).
run: install-run
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
	$(BIN)/lint-imports

test-rust:
	cargo test -p hopper-core -p hopper-cluster -p hopper-loadgen

# The full suite on the default interface (ASGI), the smoke subset on the other (RSGI).
test-python: install
	$(BIN)/pytest -q
	HOPPER_TEST_INTERFACE=rsgi $(BIN)/pytest -q -m smoke tests/server

test: lint test-rust test-python

bench: install
	$(BIN)/python bench/engine.py

# dist/hopper-*.whl: one abi3 wheel for every CPython >= 3.10 on this platform.
wheel: install
	$(BIN)/python packaging/build.py wheel --out dist

# dist/hopper: one self-contained executable (PyInstaller, one-file mode).
binary: install
	$(BIN)/python packaging/build.py binary --out dist
