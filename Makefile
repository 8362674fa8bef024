# osrs-diff: `make help` lists the targets.
PYTHON ?= python3
VENV   ?= .venv
PY     := $(VENV)/bin/python
PIP    := $(VENV)/bin/pip

.DEFAULT_GOAL := help
.PHONY: help setup lock test lint fmt migrate up down demo asyncapi clean

help: ## list the targets
	@grep -E '^[a-z-]+:.*## ' $(MAKEFILE_LIST) | awk -F':.*## ' '{printf "  make %-12s %s\n", $$1, $$2}'

$(PY):
	$(PYTHON) -m venv $(VENV)
	$(PIP) install --quiet --upgrade pip

STAMP  := $(VENV)/.installed

$(STAMP): pyproject.toml constraints.txt | $(PY)
	$(PIP) install --quiet -c constraints.txt -e '.[dev,embedded]'
	touch $@

setup: $(STAMP) ## create .venv and install everything (locked versions, dev tools included)

lock: $(PY) ## re-resolve dependencies and rewrite constraints.txt
	$(PIP) install --quiet --upgrade -e '.[dev]'
	$(PIP) freeze --exclude-editable | grep -v '^-e ' > constraints.txt

test: $(STAMP) ## run every test (unit, integration, end-to-end)
	$(PY) -m pytest

lint: $(STAMP) ## ruff: lint and check formatting
	$(VENV)/bin/ruff check .
	$(VENV)/bin/ruff format --check .

fmt: $(STAMP) ## ruff: fix imports and format
	$(VENV)/bin/ruff check --fix .
	$(VENV)/bin/ruff format .

migrate: $(STAMP) ## apply the SQL migrations to DATABASE_URL
	$(VENV)/bin/osrs-diff migrate

up: $(STAMP) ## run the whole product in the foreground (Ctrl-C stops it)
	$(VENV)/bin/osrs-diff up

demo: $(STAMP) ## `up` with the hiscores simulator and a few tracked players
	$(VENV)/bin/osrs-diff up --demo

asyncapi: $(STAMP) ## regenerate docs/asyncapi.json (the progress events) from the code
	$(PY) -m services.progress_docs -o docs/asyncapi.json

down: $(STAMP) ## stop the `make up` or `make demo` running on .data (from another terminal)
	$(VENV)/bin/osrs-diff down

clean: ## remove .data (embedded NATS and Postgres data)
	rm -rf .data

.PHONY: deploy-check
deploy-check: $(STAMP) ## check the Dockerfile, deploy/compose.yaml and the Kubernetes overlays offline
	$(PY) -m pytest tests/test_deploy.py -q

.PHONY: chaos
chaos: $(STAMP) ## the full chaos run (~5 min): kill -9 of everything, then checks against the truth
	OSRS_CHAOS=1 OSRS_CHAOS_REPORT=$${OSRS_CHAOS_REPORT:-chaos-report.md} $(PY) -m pytest tests/chaos/test_chaos.py -k full -s -p no:cacheprovider

.PHONY: soak
soak: $(STAMP) ## the 30-minute soak at nominal load: bench/soak.md (MINUTES=2 for a try)
	$(PY) bench/soak.py --minutes $${MINUTES:-30}

.PHONY: bench bench-full
bench: $(STAMP) ## the benchmarks, quick sizes (< 5 min): bench/results.json, BENCHMARKS.md
	$(PY) bench/run.py

bench-full: $(STAMP) ## the benchmarks at full sizes (200k events)
	$(PY) bench/run.py --full
