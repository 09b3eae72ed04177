# locstream: `make run` starts the dev stack, `make test` runs every check CI runs.
VENV ?= .venv
PY := $(VENV)/bin/python
JARS := broker/target/lib/.resolved

WEB := ws_edge/web
WEB_DEPS := $(WEB)/node_modules/.package-lock.json

.PHONY: install compile run test unit lint bench broker-jars web clean

install: $(VENV)/.installed

$(VENV)/.installed: pyproject.toml
	test -x $(PY) || python3 -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip
	$(PY) -m pip install -q -e ".[test,dev,bench,parquet,compile]"
	touch $@

# The pure core's per-fix rules compiled with mypyc (launch/compile_domain.py): about twice as fast. The build is used
# only while it matches the sources (domain/__init__.py), so a stale one costs speed, never correctness.
COMPILED := build/mypyc/domain/SOURCES
compile: $(COMPILED)

$(COMPILED): $(VENV)/.installed $(wildcard domain/*.py) schemas/events.py schemas/tenant_rules.py schemas/geofences.py
	$(PY) -m launch.compile_domain

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
run: install compile broker-jars web
	$(VENV)/bin/locstream dev

lint: install
	$(VENV)/bin/ruff check .
	$(VENV)/bin/ruff format --check .
	$(VENV)/bin/mypy

# Lint, the JS client's unit tests, then unit, integration and browser tests in two phases. First, TEST_PROCESSES (4)
# test processes (pytest-xdist) share out every test that asserts no time, at the lowest CPU priority (nice 19; their
# output goes to test-artifacts/parallel-pass.log, printed when they end), while the tests that assert a time or a
# latency (marked serial) run one at a time at the normal priority beside them: the scheduler gives those the CPU
# whenever they want it, and the rest soaks up what they leave. Then the tests that measure what the whole machine
# can do (marked alone: frame times in the browser, a tenant's p99 while another attacks) run with nothing else.
# Without KAFKA_BOOTSTRAP_SERVERS each pytest run starts (and stops) the project's own broker. Services under test are
# forked from one process per test process that has imported them once (launch/prefork.py). A module holding a
# costly module fixture keeps its tests on one process (pytest.mark.xdist_group). Browser tests drive Debian's
# chromium (LOCSTREAM_CHROMIUM). Every pass runs whatever another's outcome; make fails if one failed.
# TEST_PROCESSES=1: one process, one pass.
TEST_PROCESSES ?= 4
PARALLEL_LOG := test-artifacts/parallel-pass.log
test: lint compile broker-jars web
	npm test --prefix $(WEB)
ifeq ($(TEST_PROCESSES),1)
	$(PY) -m pytest --durations=25
else
	mkdir -p $(dir $(PARALLEL_LOG))
	nice -n 19 $(PY) -m pytest -n $(TEST_PROCESSES) --dist loadgroup -m "not serial and not alone" --durations=25 \
		> $(PARALLEL_LOG) 2>&1 & background=$$!; \
	$(PY) -m pytest -p no:cacheprovider -m serial --durations=10; serial=$$?; \
	wait $$background; parallel=$$?; echo "--- the parallel pass (nice 19), from $(PARALLEL_LOG):"; cat $(PARALLEL_LOG); \
	$(PY) -m pytest -p no:cacheprovider -m alone --durations=5; alone=$$?; \
	echo "exit codes: parallel $$parallel, serial $$serial, alone $$alone"; \
	[ $$parallel -eq 0 ] && [ $$serial -eq 0 ] && [ $$alone -eq 0 ]
endif

# The tests that need no broker, database or browser (pure cores, parsers, encoders, the config docs): a minute at
# most. Any test that uses a service's fixture is marked integration by tests/conftest.py and left out.
unit: install compile
	$(PY) -m pytest -m "not integration" -q

# One benchmark scenario (or all) against locstream and its peers: make bench SCENARIO=fanout SIZE=full
SCENARIO ?= all
SIZE ?= small
bench: install compile broker-jars
	$(PY) -m bench $(SCENARIO) --size $(SIZE) --out bench-results/$(SCENARIO)-$(SIZE)

clean:
	rm -rf .data broker/target build .pytest_cache .mypy_cache .ruff_cache $(WEB)/node_modules
