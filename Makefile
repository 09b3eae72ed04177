# locstream: `make run` starts the dev stack, `make test` runs every check CI runs.
VENV ?= .venv
PY := $(VENV)/bin/python
JARS := broker/target/lib/.resolved

.PHONY: install run test lint bench broker-jars clean

install: $(VENV)/.installed

$(VENV)/.installed: pyproject.toml
	test -x $(PY) || python3 -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip
	$(PY) -m pip install -q -e ".[test,dev,bench,parquet]"
	touch $@

# The Kafka broker's runtime jars from Maven Central (Java 17 and Maven are the only system prerequisites).
broker-jars: $(JARS)

$(JARS): broker/pom.xml
	mvn -q -B -f broker/pom.xml dependency:copy-dependencies
	touch $@

# The dev stack on http://127.0.0.1:8000: broker, ingest API, projector, WebSocket edge, simulated fleet.
run: install broker-jars
	$(VENV)/bin/locstream dev

lint: install
	$(VENV)/bin/ruff check .
	$(VENV)/bin/ruff format --check .
	$(VENV)/bin/mypy

# Lint, then unit and integration tests. Without KAFKA_BOOTSTRAP_SERVERS the tests start (and stop)
# the project's own broker.
test: lint broker-jars
	$(PY) -m pytest

# One benchmark scenario (or all) against locstream and its peers: make bench SCENARIO=fanout SIZE=full
SCENARIO ?= all
SIZE ?= small
bench: install broker-jars
	$(PY) -m bench $(SCENARIO) --size $(SIZE) --out bench-results/$(SCENARIO)-$(SIZE)

clean:
	rm -rf .data broker/target .pytest_cache .mypy_cache .ruff_cache
