# Every target creates (or reuses) ./.venv and installs the project into it first, so each works on a
# fresh machine that has only python3.
PYTHON ?= python3
VENV   := .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed
export DAGSTER_HOME ?= $(abspath $(or $(PIPELINE_DATA_DIR),data))/dagster_home
UI_HOST ?= 127.0.0.1
UI_PORT ?= 3000
# Test files run in parallel processes (pytest-xdist); a file's tests stay together, in order, in one process.
TEST_WORKERS ?= 3

.PHONY: demo test lint ui bench bench-market venv clean

venv: $(STAMP)

$(STAMP): pyproject.toml constraints.txt
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -c constraints.txt -e '.[test]'
	touch $(STAMP)

demo: $(STAMP)
	$(BIN)/pipeline demo

test: $(STAMP)
	$(BIN)/python -m pytest -q -n $(TEST_WORKERS) --dist loadfile

lint: $(STAMP)
	$(BIN)/ruff check pipeline pipeline_tests
	$(BIN)/ruff format --check pipeline pipeline_tests

ui: $(STAMP)
	# dg dev with the project's current dagster.yaml in $(DAGSTER_HOME); SIGTERM or SIGINT stops all of it
	$(BIN)/pipeline ui --host $(UI_HOST) --port $(UI_PORT)

bench: $(STAMP)
	$(BIN)/python -m pipeline_tests.bench.run_all

# the whole-market benchmark (issue 19): 6,000 synthetic tickers by default; e.g. BENCH_MARKET_ARGS='--tickers 200'
bench-market: $(STAMP)
	$(BIN)/python -m pipeline_tests.bench.bench_market $(BENCH_MARKET_ARGS)

clean:
	rm -rf $(VENV) data
