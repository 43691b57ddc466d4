# Valley: the two quick-start commands are `make serve` and `make test`.
VENV ?= .venv
PY := $(VENV)/bin/python
BIN := $(VENV)/bin

.PHONY: setup setup-system serve test check lint typecheck proto bench clean

setup:
	bash scripts/setup.sh

setup-system:
	bash scripts/setup.sh --system

## set everything up and run the service on the embedded default (SQLite, beijing-hebei)
serve: setup
	$(BIN)/valley serve

## set everything up (servers the tests use included) and run lint, types and tests
test: setup-system check
	$(BIN)/pytest -q -p no:cacheprovider

check: lint typecheck

lint:
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .
	$(BIN)/lint-imports

typecheck:
	$(BIN)/mypy scheduler

proto:
	bash scripts/gen_proto.sh $(PY)

bench: setup
	$(BIN)/valley bench scenario --replicas 10000

clean:
	rm -rf build dist *.egg-info .pytest_cache .mypy_cache .ruff_cache
