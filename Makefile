# fhir-plao: every target bootstraps what it needs (project venv, SEKMET's venv) by itself.
#
#   make test           venv + SEKMET, then pytest (unit + integration against SEKMET), then lint
#   make demo           venv + SEKMET, then scripts/demo.sh (convert, validate, push, pull, verdict)
#   make lint           ruff check + mypy --strict fhir_plao
#   make bench          venv + bench extra + SEKMET, then python -m bench (not part of `make test`):
#                       ratios against fhir.resources, orjson, fhirpy, plain httpx; writes
#                       bench/RESULTS.md (~20 min; quicker: make bench BENCH_MEMORY_CASES=2000)
#   make server-start   start SEKMET in .fhir-server/server (FHIR_PORT=auto picks a free port)
#   make server-stop    stop it
#   make clean          stop servers, remove server state, out/ and caches (venvs are kept)
#   make distclean      clean + remove .venv and .fhir-server (venvs included)

PYTHON     ?= python3
VENV       := .venv
BIN        := $(VENV)/bin
FHIR_PORT  ?= auto
PYTEST_ARGS ?=
SERVER     := $(BIN)/python scripts/fhir_server.py

.DEFAULT_GOAL := test
.PHONY: bench install server-install server-start server-stop server-status test lint demo clean distclean

# The project venv, rebuilt when pyproject.toml changes.
$(VENV)/.installed: pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --disable-pip-version-check -e '.[dev]'
	touch $@

install: $(VENV)/.installed

# `make bench` only: the project venv plus the `bench` extra (orjson, fhirpy, pyinstrument).
# BENCH_MEMORY_CASES: cases of the large bulk push whose peak memory is compared with a tenth of
# it; other knobs (BENCH_RUNS, BENCH_PUSH_CASES, BENCH_ONLY, ...): .venv/bin/python -m bench --help
BENCH_MEMORY_CASES ?= 10000
BENCH_RUNS         ?= 3

$(VENV)/.bench-installed: $(VENV)/.installed pyproject.toml
	$(BIN)/pip install --disable-pip-version-check -e '.[dev,bench]'
	touch $@

bench: $(VENV)/.bench-installed server-install
	$(BIN)/python -m bench --memory-cases $(BENCH_MEMORY_CASES) --runs $(BENCH_RUNS)

# SEKMET in its own venv (.fhir-server/venv); idempotent and instant once stamped.
server-install: install
	$(SERVER) install

server-start: server-install
	$(SERVER) start --port $(FHIR_PORT)

server-stop:
	@if [ -x $(BIN)/python ]; then $(SERVER) stop; else $(PYTHON) scripts/fhir_server.py stop; fi

server-status:
	$(SERVER) status

test: install server-install
	$(BIN)/pytest $(PYTEST_ARGS)
	@$(MAKE) --no-print-directory lint

lint: install
	$(BIN)/ruff check .
	$(BIN)/mypy --strict fhir_plao

demo: install server-install
	bash scripts/demo.sh

clean:
	-@$(PYTHON) scripts/fhir_server.py stop --state-dir .fhir-server/server
	-@$(PYTHON) scripts/fhir_server.py stop --state-dir .fhir-server/demo
	rm -rf .fhir-server/server .fhir-server/demo out .pytest_cache .mypy_cache .ruff_cache .hypothesis
	find . -path ./.venv -prune -o -path ./.fhir-server -prune -o -name __pycache__ -type d -print \
		| xargs rm -rf

distclean: clean
	rm -rf $(VENV) .fhir-server
