# Two commands do all the set-up on a fresh machine:
#   make demo   - simulate a trading day and replay it in-process (no broker needed)
#   make test   - create the venv, install, install Debian's prometheus and chromium if missing,
#                 resolve Apache Kafka from Maven Central, run pytest
PYTHON ?= python3
VENV   := .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed-stamp

.PHONY: install system-packages demo test lint bench bench-memory clean

$(STAMP): pyproject.toml setup.py surveil/events/_svev.c
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install -q --upgrade pip
	$(BIN)/python -m pip install -q -e '.[test]'
	touch $(STAMP)

install: $(STAMP)

demo: install
	$(BIN)/surveil demo

# Debian's prometheus (promtool) and chromium, for the desk tests; installs only what is missing
system-packages:
	bash deploy/system-packages.sh

test: install system-packages
	$(BIN)/ruff check surveil tests bench load_tests
	$(BIN)/python -m surveil.kafka_local resolve
	$(BIN)/python -m pytest -q

lint: install
	$(BIN)/ruff check surveil tests bench load_tests

bench: install
	$(BIN)/python bench/engine_bench.py

bench-memory: install
	$(BIN)/python bench/memory_bench.py

clean:
	rm -rf $(VENV) .cache out *.egg-info
