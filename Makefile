# make run: the demo on embedded defaults. make test: the whole suite. Both work on a fresh machine.
PYTHON ?= python3.11
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed

.PHONY: install run test test-fast lint bench latency soak requirements clean chromium

$(STAMP): pyproject.toml
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -e '.[dev,test,lint]'
	touch $(STAMP)

install: $(STAMP)

# The browser test (tests/integration/test_status_page.py) drives the system's Chromium.
SUDO := $(shell test "$$(id -u)" = 0 || echo sudo)
chromium:
	command -v chromium >/dev/null || { $(SUDO) apt-get update -qq && \
		$(SUDO) apt-get install -y -qq --no-install-recommends chromium; }

test: $(STAMP) chromium
	$(BIN)/python -m pytest --durations=15

# The tests that need no service (unit tests, DAG structure): well under a minute.
test-fast: $(STAMP)
	$(BIN)/python -m pytest -m "not integration"

lint: $(STAMP)
	$(BIN)/ruff check dags include plugins tests bench
	$(BIN)/mypy include

bench: $(STAMP)
	$(BIN)/python bench/dag_parse.py
	$(BIN)/python bench/inbound.py
	$(BIN)/python bench/full_load.py
	$(BIN)/python bench/writeback.py
	$(BIN)/python bench/localorg_query.py
	$(BIN)/python bench/localorg_bulk.py
	$(BIN)/python bench/status_page.py

# Change-to-other-side latency in airflow standalone, with change events and with the schedule alone (~40 min).
latency: $(STAMP)
	$(BIN)/python bench/latency.py $(LATENCY_ARGS)

# Many sync cycles under org activity, faults and killed tasks, then a field-by-field check (bench/soak.py).
soak: $(STAMP)
	$(BIN)/python bench/soak.py $(SOAK_ARGS)

run: $(STAMP)
	$(BIN)/python -m sfsync_dev.demo

clean:
	rm -rf $(VENV) .sfsync .airflow

# requirements.txt (what Astronomer installs) is pyproject.toml's runtime dependencies; a test checks it.
requirements: pyproject.toml
	$(PYTHON) -c "import tomllib; print('\n'.join(tomllib.load(open('pyproject.toml', 'rb'))['project']['dependencies']))" > requirements.txt
