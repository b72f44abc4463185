# Two entry points for a fresh machine (see README "Quick start"):
#   make demo   install, migrate the embedded SQLite database, show `revoctl health`
#   make test   install with test tools, then lint, type-check and run the whole suite
# Both install from the committed lock (requirements/*.txt, hashes required), then revoctl
# itself without dependencies; see requirements/README.md.
#   make lock      resolve requirements/*.txt again after a change to pyproject.toml
#   make upgrade   resolve to the newest releases, then run the whole suite on them
#   make completions   rewrite the bash, zsh and fish scripts in completions/ (a test checks them)
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
INSTALL := $(BIN)/python -m pip install -q --require-hashes
COMPILE = $(BIN)/uv pip compile -q --universal --python-version 3.11 --generate-hashes \
	--custom-compile-command "make lock" $(LOCK_FLAGS)

.PHONY: demo test dev lint bench clean completions lock upgrade

$(BIN)/python:
	$(PYTHON) -m venv $(VENV)

demo: $(BIN)/python
	$(INSTALL) -r requirements/demo.txt
	$(BIN)/python -m pip install -q --no-deps --no-build-isolation -e .
	$(BIN)/revoctl db migrate
	$(BIN)/revoctl health

dev: $(BIN)/python
	$(INSTALL) -r requirements/dev.txt
	$(BIN)/python -m pip install -q --no-deps --no-build-isolation -e .

test: dev
	$(BIN)/ruff check revoctl tests benchmarks completions examples
	$(BIN)/ruff format --check revoctl tests benchmarks completions examples
	$(BIN)/mypy
	$(BIN)/lint-imports
	$(BIN)/python -m pytest $(PYTEST_ARGS)

completions: dev
	$(BIN)/python completions/generate.py

bench: dev
	for script in benchmarks/[!_]*.py; do echo "== $$script"; $(BIN)/python $$script || exit 1; done

lock: dev
	$(COMPILE) pyproject.toml --all-extras requirements/tools.in requirements/dev.in \
		-o requirements/dev.txt
	$(COMPILE) pyproject.toml --extra runtime requirements/tools.in \
		--constraint requirements/dev.txt -o requirements/demo.txt

upgrade: dev
	$(MAKE) lock LOCK_FLAGS=--upgrade
	$(MAKE) test

clean:
	rm -rf $(VENV) .pytest_cache .mypy_cache .ruff_cache
