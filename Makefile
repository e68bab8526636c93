# Two commands do everything on a fresh machine: `make dev` and `make test`.
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin

NODE_TESTS := tests/node
SANDBOX_VENV ?= .venv-sandbox

.PHONY: dev test check lint typecheck format install node-install sandbox bench clean lock

$(BIN)/.installed: pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -e '.[dev]'
	touch $@

install: $(BIN)/.installed

# The official `openai` npm package, at the version the lock pins, for the Node SDK tests
# (tests/integration/test_node_sdk.py). Needs Node.js >= 20 and npm; reinstalled when the lock
# changes.
$(NODE_TESTS)/node_modules/.installed: $(NODE_TESTS)/package.json $(NODE_TESTS)/package-lock.json
	cd $(NODE_TESTS) && npm ci --no-audit --no-fund --loglevel=error
	touch $@

node-install: $(NODE_TESTS)/node_modules/.installed

# The code_interpreter sandbox's own Python (assistants/sandbox/requirements.txt), mounted
# read-only into every sandbox, with matplotlib's font cache built once here (a cold plot then
# takes ~1 s less). Rebuilt when the list changes.
$(SANDBOX_VENV)/.installed: assistants/sandbox/requirements.txt
	$(PYTHON) -m venv $(SANDBOX_VENV)
	$(SANDBOX_VENV)/bin/python -m pip install --quiet --upgrade pip
	$(SANDBOX_VENV)/bin/python -m pip install --quiet -r assistants/sandbox/requirements.txt
	MPLCONFIGDIR=$(SANDBOX_VENV)/mplconfig $(SANDBOX_VENV)/bin/python -c 'import matplotlib.pyplot'
	touch $@

sandbox: $(SANDBOX_VENV)/.installed

dev: install sandbox
	$(BIN)/durable-assistants dev

lint: install
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .

typecheck: install
	$(BIN)/mypy

check: lint typecheck

test: check node-install sandbox
	$(BIN)/python -m pytest -q --durations=25

format: install
	$(BIN)/ruff format .
	$(BIN)/ruff check --fix .

bench: install
	$(BIN)/python -m bench.run_latency
	$(BIN)/python -m bench.run_streaming

# The container images' hashed lock files (deploy/docker/*.lock; see deploy/README.md): rerun
# after changing pyproject.toml's dependencies or the sandbox's list (tests/unit/test_deploy.py
# fails while they disagree). Needs the package index.
LOCK := $(BIN)/uv pip compile --generate-hashes --universal --python-version 3.11 --quiet \
	--custom-compile-command 'make lock'

lock: install
	$(LOCK) -o deploy/docker/requirements.lock pyproject.toml deploy/docker/build-requirements.in
	$(LOCK) -o deploy/docker/requirements-sandbox.lock assistants/sandbox/requirements.txt

clean:
	rm -rf $(VENV) $(SANDBOX_VENV) .data $(NODE_TESTS)/node_modules
