# fhir-plao: every target bootstraps what it needs (project venv, SEKMET's venv, the HAPI build)
# by itself. SERVER=sekmet (default) or SERVER=hapi picks the FHIR server of demo, bench and
# server-*; `make test` always runs the integration suite on both.
#
#   make test           venv + SEKMET + HAPI build, then pytest (unit + integration on SEKMET
#                       and HAPI), then lint; HAPI needs Java 17+ and Maven (fails in one line
#                       without them)
#   make demo           venv + server, then scripts/demo.sh (convert, validate, push, pull, verdict)
#   make lint           ruff check + ruff format --check + mypy --strict fhir_plao
#   make bench          venv + bench extra + server, then python -m bench (not part of `make
#                       test`): ratios against fhir.resources, orjson, fhirpy, plain httpx; writes
#                       bench/RESULTS.md (~20 min; quicker: make bench BENCH_MEMORY_CASES=2000)
#   make agreement      our validator and HAPI's over the agreement corpus ->
#                       docs/validation-agreement.md
#   make server-start   start SERVER in .fhir-server/server (FHIR_PORT=auto picks a free port)
#   make server-stop    stop it
#   make clean          stop servers, remove server state, out/ and caches (venvs are kept)
#   make distclean      clean + remove .venv and .fhir-server (venvs included)

PYTHON     ?= python3
VENV       := .venv
BIN        := $(VENV)/bin
FHIR_PORT  ?= auto
PYTEST_ARGS ?=
SERVER     ?= sekmet
SERVERCTL  := $(BIN)/python scripts/fhir_server.py

.DEFAULT_GOAL := test
.PHONY: agreement bench foreign golden install server-install servers-install server-start server-stop server-status test lint demo clean distclean

# The project venv, rebuilt when pyproject.toml changes.
$(VENV)/.installed: pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --disable-pip-version-check -e '.[dev,plot]'
	touch $@

install: $(VENV)/.installed

# `make bench` only: the project venv plus the `bench` extra (orjson, fhirpy, pyinstrument).
# BENCH_MEMORY_CASES: cases of the large bulk push whose peak memory is compared with a tenth of
# it; other knobs (BENCH_RUNS, BENCH_PUSH_CASES, BENCH_ONLY, ...): .venv/bin/python -m bench --help
BENCH_MEMORY_CASES ?= 10000
BENCH_RUNS         ?= 3

$(VENV)/.bench-installed: $(VENV)/.installed pyproject.toml
	$(BIN)/pip install --disable-pip-version-check -e '.[dev,plot,bench]'
	touch $@

bench: $(VENV)/.bench-installed server-install
	$(BIN)/python -m bench --server $(SERVER) --memory-cases $(BENCH_MEMORY_CASES) --runs $(BENCH_RUNS)

# SERVER's install: SEKMET in its own venv (.fhir-server/venv), or the Maven build of
# servers/hapi; idempotent and instant once stamped.
server-install: install
	$(SERVERCTL) install --server $(SERVER)

# Both servers, for `make test`.
servers-install: install
	$(SERVERCTL) install --server sekmet
	$(SERVERCTL) install --server hapi

server-start: server-install
	$(SERVERCTL) start --server $(SERVER) --port $(FHIR_PORT)

server-stop:
	@if [ -x $(BIN)/python ]; then $(SERVERCTL) stop; else $(PYTHON) scripts/fhir_server.py stop; fi

server-status:
	$(SERVERCTL) status

test: install servers-install
	$(BIN)/pytest $(PYTEST_ARGS)
	@$(MAKE) --no-print-directory lint

lint: install
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .
	$(BIN)/mypy --strict fhir_plao

# Rewrite the golden files of the FHIR written by others (tests/golden/foreign); review the diff.
golden: install
	$(BIN)/python scripts/foreign_golden.py

# How much of other systems' FHIR survives FHIR -> case -> FHIR, per resource kind.
foreign: install
	$(BIN)/python scripts/foreign_roundtrip.py $(FOREIGN_DIRS)

demo: install server-install
	SERVER=$(SERVER) bash scripts/demo.sh

agreement: install
	$(SERVERCTL) install --server hapi
	$(BIN)/python scripts/validation_agreement.py

clean:
	-@$(PYTHON) scripts/fhir_server.py stop --state-dir .fhir-server/server
	-@$(PYTHON) scripts/fhir_server.py stop --state-dir .fhir-server/demo
	rm -rf .fhir-server/server .fhir-server/demo out .pytest_cache .mypy_cache .ruff_cache .hypothesis
	find . -path ./.venv -prune -o -path ./.fhir-server -prune -o -name __pycache__ -type d -print \
		| xargs rm -rf

distclean: clean
	rm -rf $(VENV) .fhir-server servers/hapi/target
