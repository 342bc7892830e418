# dataflow-playground: `make demo` and `make test` do all the set-up on a fresh machine.
PYTHON ?= python3
VENV   ?= .venv
BIN    := $(VENV)/bin
PY     := $(BIN)/python
STAMP  := $(VENV)/.installed

.PHONY: install kafka demo test test-unit test-integration bench lint up down status clean

$(STAMP): pyproject.toml
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet -e '.[dev]'
	$(PY) -m playground.codegen
	touch $(STAMP)

install: $(STAMP)

kafka: install          ## fetch Kafka's jars from Maven Central into the cache (once)
	$(BIN)/playground fetch-kafka

demo: kafka             ## start the native stack, run the end-to-end demo, stop everything
	$(BIN)/playground demo

test: kafka             ## unit + integration tests; the tests start and stop their own broker
	$(BIN)/pytest tests/unit tests/integration

test-unit: install
	$(BIN)/pytest tests/unit

bench: kafka            ## the benchmarks (minutes); results land in results/
	$(BIN)/playground bench kafka --events 1000000

lint: install
	$(BIN)/ruff check .
	$(BIN)/mypy

up: kafka
	$(BIN)/playground up

status: install
	$(BIN)/playground status

down: install
	$(BIN)/playground down

clean:
	rm -rf $(VENV) data results .pytest_cache .mypy_cache .ruff_cache services/rpc/generated
