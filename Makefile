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

.PHONY: install serve test lint bench
install: $(STAMP)

serve: $(STAMP)
	$(BIN)/sluice serve

test: $(STAMP)
	$(BIN)/ruff check sluice tests bench
	$(BIN)/pytest

# Bench-only tools (dlt, py-spy) are installed here, never while the suite or the tests run.
$(BENCH_STAMP): $(STAMP) bench/requirements.txt
	$(BIN)/pip install -q --disable-pip-version-check -r bench/requirements.txt
	touch $(BENCH_STAMP)

bench: $(BENCH_STAMP)
	$(BIN)/python -m bench.run
