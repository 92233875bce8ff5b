# Developer entry points. `make demo` and `make test` work on a fresh machine with Python >= 3.10:
# the first call creates .venv and installs the package with its development dependencies.
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed

.PHONY: help demo test lint typing docs bench serve nox-list clean

help:  ## list the targets
	@awk 'BEGIN {FS = ":.*## "} /^[a-zA-Z_-]+:.*## / {printf "  make %-10s %s\n", $$1, $$2}' $(MAKEFILE_LIST)

demo: $(STAMP)  ## run the user/order demo on the embedded SQLite default
	$(BIN)/python examples/demo.py

test: $(STAMP)  ## run the test suite (server backends run when their URL variables are set)
	$(BIN)/python -m pytest -q $(PYTEST_ARGS)

lint: $(STAMP)  ## ruff check and format check
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .

typing: $(STAMP)  ## mypy --strict (src/, typing_tests/, examples/) and pyright strict (src/, typing_tests/)
	$(BIN)/mypy
	$(BIN)/pyright

docs: $(STAMP)  ## build the documentation site into site/
	$(BIN)/pip install -q --group docs
	NO_MKDOCS_2_WARNING=1 $(BIN)/mkdocs build --strict

bench: $(STAMP)  ## repository vs hand-written SQLAlchemy throughput
	$(BIN)/python benchmarks/run.py $(BENCH_ARGS)

serve: $(STAMP)  ## serve the demo API on http://127.0.0.1:8000
	$(BIN)/uvicorn shop.app:app --app-dir examples --host 127.0.0.1 --port 8000

nox-list: $(STAMP)  ## list the nox sessions (run one with .venv/bin/nox -s NAME)
	$(BIN)/nox -l

$(STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install -q --upgrade pip
	$(BIN)/python -m pip install -q -e . --group dev
	touch $(STAMP)

clean:  ## remove .venv and every build and tool cache
	rm -rf $(VENV) .nox .pytest_cache .mypy_cache .ruff_cache site dist
