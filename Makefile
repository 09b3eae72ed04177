# locstream: `make run` starts the dev stack, `make test` runs every check CI runs.
VENV ?= .venv
PY := $(VENV)/bin/python
JARS := broker/target/lib/.resolved

WEB := ws_edge/web
WEB_DEPS := $(WEB)/node_modules/.package-lock.json

.PHONY: install run test unit lint bench broker-jars web clean

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

# The map page's Leaflet and the JS client's test dependencies, from the npm registry (package-lock.json).
web: $(WEB_DEPS)

$(WEB_DEPS): $(WEB)/package.json $(WEB)/package-lock.json
	npm ci --prefix $(WEB) --no-audit --no-fund --loglevel=error

# The dev stack on http://127.0.0.1:8000: broker, ingest API, projector, WebSocket edge, simulated fleet.
run: install broker-jars web
	$(VENV)/bin/locstream dev

lint: install
	$(VENV)/bin/ruff check .
	$(VENV)/bin/ruff format --check .
	$(VENV)/bin/mypy

# Lint, the JS client's unit tests, then unit, integration and browser tests in two passes: TEST_PROCESSES (4) test
# processes (pytest-xdist) share out every test but those that assert a time or a latency (marked serial), which then
# run alone on the machine. Without KAFKA_BOOTSTRAP_SERVERS the tests start (and stop) the project's own broker: one
# for the parallel pass, one for the serial pass. Services under test are forked from one process per test process
# that has imported them once (launch/prefork.py). A module holding a costly module fixture keeps its tests on
# one process (pytest.mark.xdist_group). Browser tests drive Debian's chromium (LOCSTREAM_CHROMIUM).
# The serial pass runs even when the parallel pass failed (make fails then). TEST_PROCESSES=1: one process, one pass.
TEST_PROCESSES ?= 4
test: lint broker-jars web
	npm test --prefix $(WEB)
ifeq ($(TEST_PROCESSES),1)
	$(PY) -m pytest --durations=25
else
	$(PY) -m pytest -n $(TEST_PROCESSES) --dist loadgroup -m "not serial" --durations=25; parallel=$$?; \
	$(PY) -m pytest -m serial --durations=10 || exit $$?; exit $$parallel
endif

# The tests that need no broker, database or browser (pure cores, parsers, encoders, the config docs): a minute at
# most. Any test that uses a service's fixture is marked integration by tests/conftest.py and left out.
unit: install
	$(PY) -m pytest -m "not integration" -q

# One benchmark scenario (or all) against locstream and its peers: make bench SCENARIO=fanout SIZE=full
SCENARIO ?= all
SIZE ?= small
bench: install broker-jars
	$(PY) -m bench $(SCENARIO) --size $(SIZE) --out bench-results/$(SCENARIO)-$(SIZE)

clean:
	rm -rf .data broker/target .pytest_cache .mypy_cache .ruff_cache $(WEB)/node_modules
