# Baosong: `make demo` runs everything on embedded defaults; `make test` installs and runs the suite.
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed

.PHONY: install demo test test-fast lint bench clean

$(STAMP): pyproject.toml examples/weekly_report/pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install -q --upgrade pip
	$(BIN)/pip install -q -e '.[test]' -e examples/weekly_report
	touch $(STAMP)

install: $(STAMP)

demo: install
	$(BIN)/baosong demo

test: install
	$(BIN)/ruff check core plugins web demo tests bench examples worker.py
	$(BIN)/python -m pytest -q

test-fast: install
	$(BIN)/python -m pytest -q -m "not slow and not browser"

lint: install
	$(BIN)/ruff check core plugins web demo tests bench examples worker.py

bench: install
	$(BIN)/python bench/run_all.py

clean:
	rm -rf $(VENV) instance .pytest_cache
