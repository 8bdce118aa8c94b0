# Two entry points: `make demo` (set up, run the demo on SQLite) and `make test` (set up, run
# every gate, build the documentation site with --strict, run the whole suite on SQLite and on
# the PostgreSQL server at 127.0.0.1:5432, then build the sdist and wheel and run the installed
# wheel in a fresh venv: `make wheel-check`). `make docs` builds the site into site/.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed-$(shell cat pyproject.toml | cksum | cut -d' ' -f1)

.PHONY: demo test lint typecheck browser docs docs-check pytest wheel-check bench clean

$(STAMP): pyproject.toml
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -e '.[dev,docs]'
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

# Headless Chromium for the report page tests and the console's browser tests: Debian's own
# package, never a browser build of Playwright's; and a Chinese font, so that the Chinese pages
# are laid out (and their screenshots drawn) with real glyphs.
browser:
	command -v chromium >/dev/null 2>&1 || (apt-get update -qq && apt-get install -y -qq chromium chromium-driver)
	fc-list :lang=zh 2>/dev/null | grep -q . || (apt-get update -qq && apt-get install -y -qq fonts-wqy-zenhei)

# The documentation site (mkdocs.yml): docs/ and the API reference from the docstrings.
# docs-check fails on any warning: a broken link or anchor, a page outside the nav.
docs: $(STAMP)
	NO_MKDOCS_2_WARNING=1 $(BIN)/mkdocs build

docs-check: $(STAMP)
	NO_MKDOCS_2_WARNING=1 $(BIN)/mkdocs build --strict

# The wheel check is a test of its own (tests/test_packaging.py, marker `wheel`): `pytest`
# leaves it to `wheel-check`, so that `make test` runs it once. The suite runs in one process
# per core (pytest-xdist), a test file to a process: each process has its own PostgreSQL
# database, SQLite files and broker names, so no test sees another's rows.
pytest: $(STAMP) browser
	$(BIN)/pytest -q -m 'not wheel' -n auto --dist loadfile

wheel-check: $(STAMP)
	$(BIN)/pytest -q -m wheel tests/test_packaging.py

test: lint typecheck docs-check pytest wheel-check

bench: $(STAMP)
	$(BIN)/python bench/ingest.py

clean:
	rm -rf $(VENV) demo.db demo.db-wal demo.db-shm build dist site .pytest_cache .mypy_cache .ruff_cache .hypothesis
