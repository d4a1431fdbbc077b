# ByteSpike Gateway. `make run` starts the whole suite; `make test` runs every test.
# Both install what they need into .venv first.
SHELL := /bin/bash
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
DEPS_STAMP := $(VENV)/.deps-installed
PROTO_FILES := $(shell find proto -name '*.proto')
GEN_STAMP := gen/.generated
DEV_STAMP := $(VENV)/.project-installed
PYTEST_ARGS ?=

.PHONY: run test check lint typecheck proto install lock bench bench-codecs clean help

help:
	@echo "make run    - start nats-server and the four services with a demo key (Ctrl-C stops)"
	@echo "make test   - install, generate contracts, run every test"
	@echo "make check  - ruff + mypy + tests (what CI runs, and more)"
	@echo "make proto  - regenerate gen/ from proto/"
	@echo "make lock   - re-resolve requirements.lock from pyproject.toml"
	@echo "make bench  - the gateway's overhead against a direct call (bench-codecs: translation cost)"

$(BIN)/python:
	$(PYTHON) -m venv $(VENV)

$(DEPS_STAMP): requirements.lock | $(BIN)/python
	$(BIN)/python -m pip install --quiet --disable-pip-version-check -r requirements.lock
	@touch $@

# Generated code is never edited by hand and never committed.
$(GEN_STAMP): $(PROTO_FILES) $(DEPS_STAMP)
	rm -rf gen && mkdir -p gen
	$(BIN)/python -m grpc_tools.protoc -Iproto \
	  --plugin=protoc-gen-mypy=$(BIN)/protoc-gen-mypy \
	  --plugin=protoc-gen-mypy_grpc=$(BIN)/protoc-gen-mypy_grpc \
	  --python_out=gen --grpc_python_out=gen \
	  --mypy_out=gen --mypy_grpc_out=gen $(PROTO_FILES)
	find gen -type d -exec touch {}/__init__.py \;
	rm -f gen/__init__.py
	@touch $@

$(DEV_STAMP): pyproject.toml $(GEN_STAMP)
	$(BIN)/python -m pip install --quiet --disable-pip-version-check --no-deps --no-build-isolation -e .
	@touch $@

proto: $(GEN_STAMP)

install: $(DEV_STAMP)

run: install
	$(BIN)/bytespike-dev

test: install
	$(BIN)/python -m pytest $(PYTEST_ARGS)

lint: install
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .

typecheck: install
	$(BIN)/mypy libs/common services

check: lint typecheck test

bench: install
	$(BIN)/python -m bench

bench-codecs: install
	$(BIN)/python -m bench.codecs

lock: | $(BIN)/python
	$(BIN)/python -m pip install --quiet -e '.[dev]'
	{ echo '# Full pinned dependency tree (runtime + dev). Regenerate with `make lock`.'; \
	  $(BIN)/python -m pip freeze --exclude-editable; } > requirements.lock

clean:
	rm -rf $(VENV) gen .data .pytest_cache .mypy_cache .ruff_cache
