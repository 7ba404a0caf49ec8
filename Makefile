# The factory's commands. `make demo` and `make test` are the two that matter; both are
# idempotent and install what they need into .venv on first use.
SHELL := /bin/bash
PYTHON ?= python3
VENV := $(CURDIR)/.venv
STATE := $(CURDIR)/.factory

export PATH := $(VENV)/bin:$(PATH)
export FACTORY_HOME ?= $(STATE)
export FACTORY_DATA_ROOT ?= file://$(STATE)/source
export AIRFLOW_HOME ?= $(STATE)/airflow
export AIRFLOW__CORE__DAGS_FOLDER := $(CURDIR)/dags
export AIRFLOW__CORE__PLUGINS_FOLDER := $(CURDIR)/plugins
export AIRFLOW__CORE__LOAD_EXAMPLES := False
export AIRFLOW__CORE__EXECUTOR := model_factory.airflow.executor.WarmLocalExecutor
export AIRFLOW__CORE__PARALLELISM := 4
export GX_ANALYTICS_ENABLED := false
export MLFLOW_DISABLE_TELEMETRY := true

.PHONY: install browser demo ui serve test lint validate-specs summary status trigger promote rollback abort pin unpin \
	canary env clean docs docs-check docs-serve

install: $(VENV)/.installed

$(VENV)/.installed: requirements.txt requirements-dev.txt pyproject.toml
	test -x $(VENV)/bin/python || $(PYTHON) -m venv $(VENV)
	$(VENV)/bin/python -m pip install -q --disable-pip-version-check uv==0.13.8
	# --compile-bytecode: with PYTHONDONTWRITEBYTECODE set (as on these machines) nothing else writes .pyc,
	# and every process then compiles what it imports: 16 s instead of 7 s for GX + MLflow + Airflow.
	$(VENV)/bin/uv pip install -q --compile-bytecode --python $(VENV)/bin/python -r requirements.txt -r requirements-dev.txt
	$(VENV)/bin/uv pip install -q --python $(VENV)/bin/python --no-deps -e .
	touch $@

$(AIRFLOW_HOME)/.migrated: $(VENV)/.installed
	mkdir -p $(AIRFLOW_HOME)
	airflow db migrate > $(AIRFLOW_HOME)/migrate.log 2>&1 || { cat $(AIRFLOW_HOME)/migrate.log; exit 1; }
	touch $@

## The main job: demo data for several days, every model's retrain DAG run by Airflow, a summary.
# One OpenMP/BLAS thread per process: on a shared 2-core box gradient boosting's thread pool spins
# against the demo's other processes (demand's retrain took 112 s instead of ~20 s at load 9).
demo: export OMP_NUM_THREADS ?= 1
demo: export OPENBLAS_NUM_THREADS ?= 1
demo: install $(AIRFLOW_HOME)/.migrated
	python -m model_factory_dev.demo $(ARGS)

## Airflow UI (standalone: scheduler, dag-processor, api-server, triggerer) + MLflow UI.
## The "Model factory" entry in Airflow's navigation is the fleet view (plugins/, model_factory.console).
ui: export FACTORY_MLFLOW_UI_URL ?= http://localhost:5000
ui: install $(AIRFLOW_HOME)/.migrated
	@echo "Airflow UI: http://localhost:8080  (user admin, password in $(AIRFLOW_HOME)/simple_auth_manager_passwords.json.generated)"
	@echo "Model factory view: http://localhost:8080/plugin/model-factory  (or 'Model factory' in the navigation)"
	@echo "MLflow UI:  http://localhost:5000"
	trap 'kill 0' EXIT INT TERM; \
	mlflow server --host 127.0.0.1 --port 5000 \
	  --backend-store-uri sqlite:///$(FACTORY_HOME)/mlflow/mlflow.db \
	  --default-artifact-root $(FACTORY_HOME)/mlflow/artifacts & \
	airflow standalone

## The test suite (what CI runs). The UI and model-card tests drive Debian's Chromium headless;
## `browser` installs it with apt-get when it is missing (as root, as on CI).
test: install browser docs-check
	lint-imports
	ruff check .
	ruff format --check .
	cd include && mypy -p model_factory
	pytest

## The docs site (mkdocs.yml, MkDocs Material). `make docs` rewrites the pages generated from the code
## (spec reference, configuration table, spec.schema.json, .env.example's FACTORY_* block) and builds
## site/; `docs-check` (part of `make test`) fails on a stale generated page, a broken link or anchor,
## or a page missing from the navigation, and writes nothing in the tree.
export NO_MKDOCS_2_WARNING := 1
docs: install
	python -m model_factory.cli.docs_gen
	mkdocs build --strict

docs-check: install
	python -m model_factory.cli.docs_gen --check
	mkdocs build --strict --site-dir $(STATE)/site

docs-serve: install
	mkdocs serve --dev-addr 127.0.0.1:8001

browser:
	@command -v chromium >/dev/null 2>&1 || { \
	  echo "installing Debian's chromium + chromium-driver for the browser tests"; \
	  apt-get update -q && DEBIAN_FRONTEND=noninteractive apt-get install -y -q chromium chromium-driver; }

## ruff check (with Airflow's AIR rules) and ruff format --check, deptry (every package the code imports is declared in
## requirements.in/pyproject.toml), the import contracts and mypy ([tool.mypy] in pyproject.toml).
lint: install
	ruff check .
	ruff format --check .
	deptry include
	lint-imports
	cd include && mypy -p model_factory

validate-specs: install
	model-factory validate

## The fleet without asking Airflow (make status asks it too; make status MODEL=churn: one model).
summary: install
	model-factory status --offline

## The serving gateway on the embedded registry: champion + canary per model, prediction log in
## .factory/serving/predictions.db. make serve GATEWAY_PORT=8000
GATEWAY_PORT ?= 8000
serve: install
	model-factory serve --host 127.0.0.1 --port $(GATEWAY_PORT)

## The performance table side by side (bench/README.md): make bench, or make bench ARGS=--quick
.PHONY: bench
bench: install
	model-factory bench $(ARGS)

## Rollout control for ops; every command records who ($$FACTORY_ACTOR or login) and REASON.
status: install
	model-factory $(if $(MODEL),show "$(MODEL)",status) $(ARGS)

## make trigger MODEL=churn [DATE=2026-01-05] [ARGS=--force]  (through Airflow's REST API; make ui first)
trigger: install
	model-factory trigger "$(MODEL)" $(if $(DATE),--date "$(DATE)") $(ARGS)

## make promote MODEL=churn [VERSION=5] REASON="..."  (the running canary, else a blessed VERSION)
promote: install
	model-factory promote "$(MODEL)" $(VERSION) --reason "$(REASON)"

## make rollback MODEL=churn REASON="..."  (the running canary; with none, champion -> previous_champion)
rollback: install
	model-factory rollback "$(MODEL)" --reason "$(REASON)"

## make abort MODEL=churn REASON="..."  (stop the canary without a verdict)
abort: install
	model-factory abort "$(MODEL)" --reason "$(REASON)"

## make pin MODEL=churn VERSION=5 REASON="..."  /  make unpin MODEL=churn REASON="..."
pin: install
	model-factory pin "$(MODEL)" "$(VERSION)" --reason "$(REASON)"

unpin: install
	model-factory unpin "$(MODEL)" --reason "$(REASON)"

## make canary MODEL=churn VERSION=6 REASON="..."  (start a canary by hand; the canary DAG judges it)
canary: install
	model-factory canary "$(MODEL)" "$(VERSION)" --reason "$(REASON)"

## eval "$$(make -s env)" puts this shell on the embedded state: plain `airflow`/`mlflow` commands work.
env:
	@for v in PATH FACTORY_HOME FACTORY_DATA_ROOT AIRFLOW_HOME AIRFLOW__CORE__DAGS_FOLDER \
	  AIRFLOW__CORE__PLUGINS_FOLDER AIRFLOW__CORE__LOAD_EXAMPLES AIRFLOW__CORE__EXECUTOR \
	  AIRFLOW__CORE__PARALLELISM GX_ANALYTICS_ENABLED MLFLOW_DISABLE_TELEMETRY; do \
	  printf 'export %s=%q\n' "$$v" "$${!v}"; done
	@printf 'export MLFLOW_TRACKING_URI=%q\n' "sqlite:///$(FACTORY_HOME)/mlflow/mlflow.db"

clean:
	rm -rf $(STATE)

## The production configuration, run for real on this machine (model_factory_dev.stack): Airflow's
## metadata DB in PostgreSQL, CeleryExecutor on Redis, scheduler + dag-processor + triggerer +
## api-server + celery worker, an MLflow server (PostgreSQL backend, artifacts on S3) and a local
## S3 endpoint (moto). Needs PostgreSQL on 127.0.0.1:5432 and Redis on :6379 (trust auth), or
## FACTORY_STACK_POSTGRES_URL / FACTORY_STACK_REDIS_URL. Airflow on :8080, MLflow on :5000.
##   make prod-up      start it in the background (state, logs, password: .factory/prod/)
##   make prod-demo    upload demo batches to its S3 and run every model through its REST API
##   make prod-status  which components run;  make prod-down  stop it and drop its databases
.PHONY: prod-up prod-demo prod-status prod-down
prod-up: install
	python -m model_factory_dev.stack up $(ARGS)

prod-demo: install
	python -m model_factory_dev.stack demo $(ARGS)

prod-status:
	python -m model_factory_dev.stack status

prod-down:
	python -m model_factory_dev.stack down
