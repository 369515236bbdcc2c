# Entry points (README). Every target sets up first; set-up is idempotent and fast when done.
.PHONY: setup demo test test-all bench lint

# Suites marked slow (reliability, property, cluster, demo) run in CI (CI=true) and in test-all.
SLOW := $(if $(filter true,$(CI)),,-m "not slow")

setup:
	@bash scripts/setup.sh

demo: setup
	.venv/bin/gridshare demo

test: setup
	.venv/bin/ruff check .
	.venv/bin/pytest -q $(SLOW)

test-all: setup
	.venv/bin/ruff check .
	.venv/bin/pytest -q

bench: setup
	.venv/bin/python -m bench

lint: setup
	.venv/bin/ruff check .
	.venv/bin/ruff format --check .
