# Two commands a new user needs: `make serve` and `make test` (see README).
PY ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed
BENCH_STAMP := $(VENV)/.bench-installed

$(STAMP): pyproject.toml requirements.txt
	$(PY) -m venv $(VENV)
	$(BIN)/pip install -q --disable-pip-version-check -r requirements.txt
	$(BIN)/pip install -q --disable-pip-version-check --no-deps -e .
	touch $(STAMP)

DBT_VENV := .venv-dbt
DBT_STAMP := $(DBT_VENV)/.installed

.PHONY: install serve test lint bench dbt browser screenshots
install: $(STAMP)

serve: $(STAMP)
	$(BIN)/sluice serve

test: $(STAMP)
	$(BIN)/ruff check sluice tests bench
	$(BIN)/pytest

# Tools the integration tests drive, each apart from the app's venv (tests skip, naming these, without them):
# dbt in its own venv (tests/test_dbt.py); Segment's analytics.js from npm and Debian's Chromium
# (tests/test_analytics_js.py). .ci/run makes both.
$(DBT_STAMP): tests/dbt/requirements.txt
	$(PY) -m venv $(DBT_VENV)
	$(DBT_VENV)/bin/pip install -q --disable-pip-version-check -r tests/dbt/requirements.txt
	touch $(DBT_STAMP)

dbt: $(DBT_STAMP)

browser:
	command -v chromium >/dev/null || (apt-get update -q && apt-get install -y -q chromium)
	cd tests/js && npm ci --no-audit --no-fund

# The console's pictures in docs/screenshots/ (README), taken in Debian's Chromium from a demo-filled server.
screenshots: $(STAMP) browser
	$(BIN)/python tests/screenshots.py

# Bench-only tools (dlt, py-spy) are installed here, never while the suite or the tests run.
$(BENCH_STAMP): $(STAMP) bench/requirements.txt
	$(BIN)/pip install -q --disable-pip-version-check -r bench/requirements.txt
	touch $(BENCH_STAMP)

bench: $(BENCH_STAMP)
	$(BIN)/python -m bench.run
