# Every target creates (or reuses) ./.venv and installs the project into it first, so each works on a
# fresh machine that has only python3.
PYTHON ?= python3
VENV   := .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed
export DAGSTER_HOME ?= $(abspath $(or $(PIPELINE_DATA_DIR),data))/dagster_home

.PHONY: demo test lint ui bench venv clean

venv: $(STAMP)

$(STAMP): pyproject.toml constraints.txt
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -c constraints.txt -e '.[test]'
	touch $(STAMP)

demo: $(STAMP)
	$(BIN)/pipeline demo

test: $(STAMP)
	$(BIN)/python -m pytest -q

lint: $(STAMP)
	$(BIN)/ruff check pipeline pipeline_tests
	$(BIN)/ruff format --check pipeline pipeline_tests

ui: $(STAMP)
	# installs the project's current dagster.yaml in $(DAGSTER_HOME) (pools, run monitoring, retries)
	$(BIN)/python -c 'from pipeline.cli import ensure_dagster_home; from pipeline.settings import get_settings; ensure_dagster_home(get_settings())'
	$(BIN)/dg dev --host 127.0.0.1 --port 3000

bench: $(STAMP)
	$(BIN)/python -m pipeline_tests.bench.run_all

clean:
	rm -rf $(VENV) data
