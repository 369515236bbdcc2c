# Entry points (README). Every target sets up first; set-up is idempotent and fast when done.
.PHONY: setup demo test test-fast bench lint

setup:
	@bash scripts/setup.sh

demo: setup
	.venv/bin/gridshare demo

test: setup
	.venv/bin/ruff check .
	.venv/bin/pytest -q

test-fast: setup
	.venv/bin/pytest -q -m "not slow"

bench: setup
	.venv/bin/python -m bench

lint: setup
	.venv/bin/ruff check .
	.venv/bin/ruff format --check .
