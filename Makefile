# Two commands set everything up on a fresh machine: `make run` and `make test`.
PYTHON ?= python3
VENV   ?= .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed

.PHONY: run test lint bench clean venv web

venv: $(STAMP)

$(STAMP): pyproject.toml
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -e '.[test,tools,client,fast]'
	touch $(STAMP)

# The browser client (/play): npm ci from the lock file when js/node_modules is missing or
# older than the lock, then copy the library and msgpack's ES modules into astranet/web/
# (git-ignored). Without npm the server still runs, only /play is missing.
web: $(STAMP)
	@if command -v npm >/dev/null 2>&1; then \
	  [ js/node_modules/.package-lock.json -nt js/package-lock.json ] || (cd js && npm ci --no-audit --no-fund); \
	  $(BIN)/python -m astranet.tools.webassets; \
	else echo "make web: npm not found; skipping the browser client (/play)"; fi

run: $(STAMP) web
	$(BIN)/python -m astranet.server $(ARGS)

test: $(STAMP) web
	$(BIN)/ruff check .
	$(BIN)/python -m pytest $(PYTEST_ARGS)

lint: $(STAMP)
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .

bench: $(STAMP)
	$(BIN)/python -m pytest benchmarks --benchmark-only -p no:randomly

clean:
	rm -rf $(VENV) .pytest_cache .hypothesis .benchmarks js/node_modules astranet/web/lib astranet/web/vendor
