# Two entry points: `make up` starts a single-node cloud, `make test` runs every check.
VENV ?= .venv
BIN := $(VENV)/bin

.PHONY: up test deps system lint unit bench clean

system:
	@scripts/setup-system

$(BIN)/.installed: pyproject.toml
	python3 -m venv $(VENV)
	$(BIN)/pip install -q --upgrade pip >/dev/null
	$(BIN)/pip install -q -e '.[dev]'
	touch $@

deps: system $(BIN)/.installed

up: deps
	$(BIN)/atoll up

lint: deps
	$(BIN)/ruff check atoll tests bench
	$(BIN)/ruff format --check atoll tests bench
	$(BIN)/mypy atoll tests bench
	$(BIN)/lint-imports

test: lint
	$(BIN)/pytest

bench: deps
	$(BIN)/python bench/lifecycle.py

clean:
	rm -rf $(VENV) build .mypy_cache .pytest_cache .ruff_cache
