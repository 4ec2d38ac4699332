# movierec: every workflow is a make target. `make demo` and `make test` work on a fresh machine.
SHELL := /bin/bash
.SHELLFLAGS := -eu -o pipefail -c
.DEFAULT_GOAL := help

VENV        := .venv
VENV_MONGO  := .venv-mongo
VENV_TOOLS  := .venv-tools
PY          := $(VENV)/bin/python
PIP_QUIET   := --quiet --disable-pip-version-check
ARGS        ?=

# pip prints a warning for every empty local index directory on this kind of machine; hide only those.
PIP_FILTER  := { grep -v "is ignored: it is neither a file nor a directory" || true; }

.PHONY: help
help: ## list targets
	@grep -hE '^[a-z-]+:.*## ' $(MAKEFILE_LIST) | awk -F':.*## ' '{printf "  %-14s %s\n", $$1, $$2}'

# ---- environments ---------------------------------------------------------------------------------
$(VENV)/.stamp: pyproject.toml
	@echo "==> creating $(VENV) (Python 3.11, torch==2.13.0 CPU)"
	@rm -rf $(VENV) && $$(scripts/find-python 3.11) -m venv $(VENV)
	@$(VENV)/bin/pip install $(PIP_QUIET) --upgrade pip 2>&1 | $(PIP_FILTER)
	@$(VENV)/bin/pip install $(PIP_QUIET) -e '.[dev,train,ops,features]' 2>&1 | $(PIP_FILTER)
	@touch $@

# The MongoDB-wire test server (see docs/mongodb-backend.md): needs Python 3.13, so it lives apart.
$(VENV_MONGO)/.stamp: infra/local/requirements-mongo.txt
	@echo "==> creating $(VENV_MONGO) (Python 3.13, MongoDB wire-protocol server)"
	@rm -rf $(VENV_MONGO) && $$(scripts/find-python 3.13) -m venv $(VENV_MONGO)
	@$(VENV_MONGO)/bin/pip install $(PIP_QUIET) -r infra/local/requirements-mongo.txt 2>&1 | $(PIP_FILTER)
	@touch $@

# SAM CLI and checkov pin their own dependency trees; keeping them apart keeps ours clean.
$(VENV_TOOLS)/.stamp: infra/requirements-tools.txt
	@echo "==> creating $(VENV_TOOLS) (Python 3.12, aws-sam-cli, checkov)"
	@rm -rf $(VENV_TOOLS) && $$(scripts/find-python 3.12) -m venv $(VENV_TOOLS)
	@$(VENV_TOOLS)/bin/pip install $(PIP_QUIET) -r infra/requirements-tools.txt 2>&1 | $(PIP_FILTER)
	@touch $@

.PHONY: prometheus
prometheus: ## install Debian's prometheus and prometheus-pushgateway if absent (apt-get, root or sudo)
	@scripts/ensure-prometheus

.PHONY: venv
venv: $(VENV)/.stamp $(VENV_MONGO)/.stamp $(VENV_TOOLS)/.stamp ## create every virtualenv

# ---- quality ----------------------------------------------------------------------------------------
.PHONY: lint
lint: $(VENV)/.stamp ## ruff and mypy
	$(VENV)/bin/ruff check .
	$(VENV)/bin/ruff format --check .
	$(VENV)/bin/mypy layers/movierec/movierec functions training_job infra bench tests
	$(VENV)/bin/lint-imports

.PHONY: template-check
template-check: $(VENV)/.stamp $(VENV_TOOLS)/.stamp ## cfn-lint, sam validate --lint, checkov
	$(VENV)/bin/cfn-lint template.yaml
	SAM_CLI_TELEMETRY=0 $(VENV_TOOLS)/bin/sam validate --lint --template-file template.yaml --region us-east-1
	$(VENV_TOOLS)/bin/checkov --quiet --compact --skip-download -f template.yaml --framework cloudformation

.PHONY: test
test: venv prometheus lint template-check ## the full suite: lint, template checks, pytest (starts and stops its own servers)
	PATH="$(CURDIR)/$(VENV)/bin:$$PATH" $(PY) -m pytest $(ARGS)

.PHONY: test-fast
test-fast: $(VENV)/.stamp ## pytest only, no lint
	PATH="$(CURDIR)/$(VENV)/bin:$$PATH" $(PY) -m pytest -x -q $(ARGS)

# ---- local cloud and demo -----------------------------------------------------------------------------
.PHONY: up
up: $(VENV)/.stamp $(VENV_MONGO)/.stamp prometheus ## start moto (4566), Redis, MongoDB, Prometheus (9090) and a Pushgateway (9091) locally and create the template's resources
	$(PY) -m infra.local up $(ARGS)

.PHONY: down
down: $(VENV)/.stamp ## stop the local cloud
	$(PY) -m infra.local down

.PHONY: demo
demo: venv prometheus ## the whole product end to end on synthetic data (ARGS=--once to exit, ARGS="--movielens PATH")
	$(PY) -m infra.local demo $(ARGS)

.PHONY: bench
bench: $(VENV)/.stamp $(VENV_MONGO)/.stamp ## benchmarks: ingest, serve, train (ratios against same-run baselines)
	$(PY) -m bench.ingest --quick
	$(PY) -m bench.serve --quick
	$(PY) -m bench.train --quick

# ---- build and deploy ----------------------------------------------------------------------------------
.PHONY: build
build: $(VENV)/.stamp $(VENV_TOOLS)/.stamp ## sam build (python3.12, arm64); SNAPSHOT_BUCKET=<bucket> bundles popularity
	@if [ -n "$${SNAPSHOT_BUCKET:-}" ]; then $(PY) scripts/bundle_snapshot.py --bucket "$$SNAPSHOT_BUCKET"; \
	else echo "==> SNAPSHOT_BUCKET unset: no popularity snapshot bundled (the function reads S3's at init)"; fi
	PATH="$$(dirname "$$(scripts/find-python 3.12)"):$$PATH" SAM_CLI_TELEMETRY=0 \
		$(VENV_TOOLS)/bin/sam build --template-file template.yaml

.PHONY: deploy
deploy: build ## sam deploy (ARGS=--guided the first time); see docs/deploy.md
	SAM_CLI_TELEMETRY=0 $(VENV_TOOLS)/bin/sam deploy $(ARGS)

.PHONY: clean
clean: ## remove build outputs and caches (keeps virtualenvs)
	rm -rf .aws-sam .mypy_cache .ruff_cache .pytest_cache .hypothesis .local

.PHONY: openapi
openapi: $(VENV)/.stamp ## regenerate docs/openapi.json from the recommend function's routes
	REDIS_URL=redis://127.0.0.1:1/0 ARTIFACT_BUCKET=unused PYTHONPATH=functions/recommend \
		$(PY) functions/recommend/app.py > docs/openapi.json
