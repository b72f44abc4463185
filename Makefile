# Two entry points for a fresh machine (see README "Quick start"):
#   make demo   install, migrate the embedded SQLite database, show `revoctl health`
#   make test   install with test tools, then lint, type-check and run the whole suite
#   make completions   rewrite the bash, zsh and fish scripts in completions/ (a test checks them)
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin

.PHONY: demo test lint bench clean completions

$(BIN)/python:
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install -q --upgrade pip

demo: $(BIN)/python
	$(BIN)/pip install -q -e .
	$(BIN)/revoctl db migrate
	$(BIN)/revoctl health

test: $(BIN)/python
	$(BIN)/pip install -q -e '.[test,runtime]'
	$(BIN)/ruff check revoctl tests benchmarks completions examples
	$(BIN)/ruff format --check revoctl tests benchmarks completions examples
	$(BIN)/mypy
	$(BIN)/lint-imports
	$(BIN)/python -m pytest $(PYTEST_ARGS)

completions: $(BIN)/python
	$(BIN)/pip install -q -e .
	$(BIN)/python completions/generate.py

bench: $(BIN)/python
	$(BIN)/pip install -q -e '.[bench,runtime]'
	for script in benchmarks/[!_]*.py; do echo "== $$script"; $(BIN)/python $$script || exit 1; done

clean:
	rm -rf $(VENV) .pytest_cache .mypy_cache .ruff_cache
