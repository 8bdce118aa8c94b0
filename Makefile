# Two entry points: `make demo` (set up, run the demo on SQLite) and `make test` (set up, run
# every gate and the whole suite, on SQLite and on the PostgreSQL server at 127.0.0.1:5432, then
# build the sdist and wheel and run the installed wheel in a fresh venv: `make wheel-check`).
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed-$(shell cat pyproject.toml | cksum | cut -d' ' -f1)

.PHONY: demo test lint typecheck pytest wheel-check bench clean browser

$(STAMP): pyproject.toml
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -e '.[dev]'
	rm -f $(VENV)/.installed-*
	touch $(STAMP)

demo: $(STAMP)
	rm -f demo.db demo.db-wal demo.db-shm
	$(BIN)/paygate demo --database-url sqlite:///demo.db

lint: $(STAMP)
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .

typecheck: $(STAMP)
	$(BIN)/mypy

# The console's browser tests drive Debian's chromium (never a browser Playwright downloads).
browser:
	command -v chromium >/dev/null 2>&1 || (apt-get update -qq && apt-get install -y -qq chromium chromium-driver)

# The wheel check is a test of its own (tests/test_packaging.py, marker `wheel`): `pytest`
# leaves it to `wheel-check`, so that `make test` runs it once.
pytest: $(STAMP) browser
	$(BIN)/pytest -q -m 'not wheel'

wheel-check: $(STAMP)
	$(BIN)/pytest -q -m wheel tests/test_packaging.py

test: lint typecheck pytest wheel-check

bench: $(STAMP)
	$(BIN)/python bench/ingest.py

clean:
	rm -rf $(VENV) demo.db demo.db-wal demo.db-shm build dist .pytest_cache .mypy_cache .ruff_cache .hypothesis
