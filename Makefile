# Two commands do all the set-up on a fresh machine:
#   make demo   - simulate a trading day and replay it in-process (no broker needed)
#   make test   - create the venv, install, install Debian's prometheus and chromium if missing,
#                 resolve Apache Kafka from Maven Central, build Helm from the Go module proxy, run pytest
PYTHON ?= python3
VENV   := .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed-stamp

.PHONY: install system-packages helm demo test lint bench bench-memory clean

# Helm, for the chart's tests (tests/deploy): built from source with Go, once per version, into .cache/helm/
# (about 3 minutes with an empty Go module cache, seconds after; the module cache is Go's own, ~/go/pkg/mod)
GO           ?= $(shell command -v go 2>/dev/null || echo /usr/local/go/bin/go)
HELM_VERSION := v4.3.2
HELM         := .cache/helm/$(HELM_VERSION)/bin/helm

$(STAMP): pyproject.toml setup.py surveil/events/_svev.c
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install -q --upgrade pip
	$(BIN)/python -m pip install -q -e '.[test]'
	touch $(STAMP)

install: $(STAMP)

$(HELM):
	GOBIN=$(CURDIR)/$(dir $(HELM)) $(GO) install helm.sh/helm/v4/cmd/helm@$(HELM_VERSION)

helm: $(HELM)

demo: install
	$(BIN)/surveil demo

# Debian's prometheus (promtool) and chromium, for the desk tests; installs only what is missing
system-packages:
	bash deploy/system-packages.sh

test: install system-packages helm
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
