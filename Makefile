# Tradehall developer entry points. The README's two commands are `make run` and `make test`.
PYTHON ?= python3
VENV   := .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed

.PHONY: run test lint lock bench clean native

$(STAMP): requirements.lock pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet --require-hashes -r requirements.lock
	$(BIN)/python -m pip install --quiet --no-deps --no-build-isolation -e .
	touch $(STAMP)

## run: start the whole platform (exchange, gateway, tap, bots) on simulated venues; Ctrl-C stops it
## (live venues: .venv/bin/tradehall up; see docs/platform.md)
run: $(STAMP) native
	$(BIN)/tradehall up --sim

## test: lint, type-check and run the whole test suite
test: $(STAMP) native
	$(BIN)/ruff check src tests bench scripts hatch_build.py
	$(BIN)/ruff format --check src tests bench scripts hatch_build.py
	$(BIN)/mypy
	$(BIN)/pytest -n 2

## native: build the optional C core of the matching engine (pure Python where no compiler is)
native: $(STAMP)
	$(BIN)/python scripts/build_native.py --quiet

## lock: re-resolve the pinned, hashed dependency lock
lock:
	uv pip compile pyproject.toml --extra dev --generate-hashes --python-version 3.11 \
		-o requirements.lock -q --custom-compile-command "make lock"

clean:
	rm -rf $(VENV) .mypy_cache .pytest_cache .ruff_cache
