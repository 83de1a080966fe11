# buzz — the two commands that matter: `make run` (the offline demo) and `make test`.
PYTHON ?= python3
VENV   := .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed
CONFIG ?= buzz.toml

.DEFAULT_GOAL := help
.PHONY: help run test system-deps lint typecheck preview status send-test bench clean

help: ## List the targets
	@grep -E '^[a-z-]+:.*## ' $(MAKEFILE_LIST) | awk -F':.*## ' '{printf "  make %-10s %s\n", $$1, $$2}'

$(STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip
	$(BIN)/pip install --quiet -e '.[dev]'
	@touch $(STAMP)

run: $(STAMP) ## Run the whole pipeline once on the bundled demo (offline, outbox transport)
	$(BIN)/buzz subscribers import demo/subscribers.csv --config $(CONFIG)
	$(BIN)/buzz run --config $(CONFIG)

SYSTEM_DEPS := spamassassin chromium npm

system-deps: ## Install what the quality tests use: SpamAssassin, Chromium, Node's mjml
	@missing=""; for tool in $(SYSTEM_DEPS); do command -v $$tool >/dev/null || missing="$$missing $$tool"; done; \
	if [ -n "$$missing" ]; then \
	  if [ "$$(id -u)" = 0 ]; then apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq $$missing >/dev/null; \
	  else echo "missing:$$missing — install them (sudo apt-get install$$missing)"; fi; \
	fi
	@test -d bench/node/node_modules/mjml -a -d bench/node/node_modules/@jsx-email/doiuse-email || (cd bench/node && npm install --silent --no-audit --no-fund >/dev/null)

test: $(STAMP) system-deps ## Run the whole test suite
	$(BIN)/pytest

lint: $(STAMP) ## ruff: lint and format check
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .

typecheck: $(STAMP) ## mypy, strict on pipeline/
	$(BIN)/mypy pipeline

preview: $(STAMP) ## Build the next edition (if any) and list its preview files
	$(BIN)/buzz build --config $(CONFIG)
	$(BIN)/buzz preview --screenshots --config $(CONFIG)

status: $(STAMP) ## Editions, deliveries and feed health
	$(BIN)/buzz status --config $(CONFIG)

send-test: $(STAMP) ## Proof of the newest edition to TO=address
	@test -n "$(TO)" || { echo "usage: make send-test TO=you@example.com"; exit 2; }
	$(BIN)/buzz send --test $(TO) --config $(CONFIG)

bench/.r2e-venv/bin/r2e:
	$(PYTHON) -m venv bench/.r2e-venv
	bench/.r2e-venv/bin/pip install --quiet rss2email==3.14

bench: $(STAMP) system-deps bench/.r2e-venv/bin/r2e ## Run the benchmarks (figures in bench/README.md)
	$(BIN)/python bench/bench_feeds.py
	$(BIN)/python bench/bench_render.py
	$(BIN)/python bench/evaluate.py
	$(BIN)/python bench/bench_related.py
	$(BIN)/python bench/bench_send.py

clean: ## Remove the demo's state and output (var/) and caches
	rm -rf var .pytest_cache .mypy_cache .ruff_cache
