# Two commands for a fresh machine (each makes its own virtual environment in .venv):
#   make demo   set up, then ingest the shipped multilingual sample pool, embed it offline and
#               print the per-language status table (embedded store, no server)
#   make test   set up, then lint and run the whole test suite (what CI runs)
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed
DEMO := $(BIN)/curate --config samples/curate.toml

.PHONY: install demo test lint bench clean-demo

$(STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install -q --upgrade pip
	# torch first: the pinned CPU wheel, or pip would pull a multi-GB CUDA build.
	$(BIN)/python -m pip install -q torch==2.13.0
	$(BIN)/python -m pip install -q -e '.[dev,ray]'
	touch $(STAMP)

install: $(STAMP)

demo: $(STAMP)
	$(DEMO) ingest samples/pool.jsonl samples/pool_bad.csv samples/pool_unlabeled.jsonl
	$(DEMO) embed
	$(DEMO) status

lint: $(STAMP)
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .

test: lint
	# Debian's chromium + chromedriver for the real-browser dashboard test (never
	# `playwright install`); Label Studio gets its own venv from the labeling test fixture.
	bash scripts/install-browser.sh
	$(BIN)/python -m pytest -q

clean-demo:
	rm -rf curation-data/demo
