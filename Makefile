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
	$(BIN)/python -m pip install --quiet -e '.[test,tools,client]'
	touch $(STAMP)

# The browser client's npm packages, from the lock file (npm ci), when missing or outdated.
js/node_modules/.package-lock.json: js/package-lock.json
	cd js && npm ci --no-audit --no-fund

# The page's library and vendor ES modules, copied into astranet/web/ (git-ignored).
web: $(STAMP) js/node_modules/.package-lock.json
	$(BIN)/python -m astranet.tools.webassets

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
