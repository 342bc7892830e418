# dataflow-playground: `make demo` and `make test` do all the set-up on a fresh machine.
PYTHON ?= python3
VENV   ?= .venv
BIN    := $(VENV)/bin
PY     := $(BIN)/python
STAMP  := $(VENV)/.installed

.PHONY: install kafka test-deps demo test test-unit browser bench lint proto up down status clean

$(STAMP): pyproject.toml setup.py features/stream/state.py
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet -e '.[dev]'
	touch $(STAMP)

install: $(STAMP)

kafka: install          ## fetch Kafka's jars from Maven Central into the cache (once)
	$(BIN)/playground fetch-kafka

demo: kafka             ## start the native stack, run the end-to-end demo, stop everything
	$(BIN)/playground demo

# The browser tests drive Debian's chromium through chromium-driver (selenium); the metrics
# test scrapes the stack with a real Prometheus; the poison scenario also sends with kcat.
# Without them those tests are skipped (kcat: that scenario uses confluent-kafka only).
test-deps:           ## chromium, chromium-driver, prometheus, kcat via apt when missing (root)
	@if command -v chromium >/dev/null && command -v chromedriver >/dev/null && command -v prometheus >/dev/null && command -v kcat >/dev/null; then :; \
	elif command -v apt-get >/dev/null && [ "$$(id -u)" = 0 ]; then \
		echo "installing chromium, chromium-driver, prometheus and kcat (apt) for the tests"; \
		(apt-get update -qq && apt-get install -y -qq --no-install-recommends chromium chromium-driver prometheus kcat) >/dev/null \
			|| echo "some of them could not be installed; their tests will be skipped"; \
	else echo "chromium, chromedriver, prometheus or kcat missing and apt unavailable: their tests will be skipped"; fi

test: kafka test-deps ## unit + integration tests; the tests start and stop their own broker
	$(BIN)/pytest

test-unit: install      ## the tests that need no broker (seconds)
	$(BIN)/pytest -m 'not kafka'

browser: kafka test-deps ## only the browser tests: the dashboard and the report in headless Chromium
	$(BIN)/pytest -m browser

bench: kafka            ## the benchmarks (minutes); results land in results/
	$(BIN)/playground bench kafka --events 1000000

lint: install
	$(BIN)/ruff check .
	$(BIN)/mypy
	$(BIN)/lint-imports

proto: install          ## regenerate core/proto/events_pb2*.py after editing events.proto
	$(PY) -m dataflow_playground.core.proto.codegen

up: kafka
	$(BIN)/playground up

status: install
	$(BIN)/playground status

down: install
	$(BIN)/playground down

clean:
	rm -rf $(VENV) data results .pytest_cache .mypy_cache .ruff_cache .hypothesis features/stream/state.c features/stream/state.*.so
