# Two commands matter: `make up` and `make test`. Everything else is a step of those two.
SHELL := /bin/bash
PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed

.PHONY: up status down demo test lint format tools venv bench dashboards kubernetes lock help soak

help:
	@echo "make up      install what is missing, start the stack, print where everything is"
	@echo "HA=1 make up the same with two Prometheus replicas and two clustered Alertmanagers"
	@echo "make status  the same table, for a running stack"
	@echo "make demo    publish 1500 tasks nobody consumes and follow the alert to the receiver"
	@echo "make down    stop everything the native stack started"
	@echo "make test    install what is missing, lint, run every test"
	@echo "make soak    the HA stack under steady load for 30 min (MINUTES=n): 0 notifications, 0 failed scrapes"

venv: $(STAMP)

$(STAMP): requirements.txt constraints.txt exporter/pyproject.toml
	@$(PYTHON) -c 'import sys; sys.exit(sys.version_info < (3, 11))' || \
	  { echo "Python 3.11+ is needed ($(PYTHON) is $$($(PYTHON) --version))"; exit 1; }
	@$(PYTHON) -m venv --help >/dev/null 2>&1 || { \
	  if [ "$$(id -u)" = 0 ]; then apt-get update -qq && apt-get install -y -qq python3-venv >/dev/null; \
	  else echo "python3 -m venv is missing: sudo apt-get install python3-venv"; exit 1; fi; }
	@test -x $(PY) || $(PYTHON) -m venv $(VENV)
	@$(PY) -m pip install -q --upgrade pip
	@$(PY) -m pip install -q -r requirements.txt -c constraints.txt
	@touch $@

tools:
	@native/install-tools.sh

up: venv tools
	@$(PY) -m native up

status: venv
	@$(PY) -m native status

down:
	@if [ -x $(PY) ]; then $(PY) -m native down; else echo "nothing to stop (no virtualenv yet)"; fi

demo: venv
	@$(PY) -m native demo

lint: venv
	@$(VENV)/bin/ruff check .
	@$(VENV)/bin/ruff format --check .

format: venv
	@$(VENV)/bin/ruff format .
	@$(VENV)/bin/ruff check --fix .

test: venv tools lint
	@$(VENV)/bin/pytest

bench: venv
	@native/install-tools.sh --bench
	@$(PY) exporter/bench/bench.py
	@$(PY) exporter/bench/bench_rabbitmq.py
	@$(PY) exporter/bench/bench_targets.py
	@$(PY) -m prometheus.bench.alert_latency

# Not part of `make test`: 30 minutes by default. Its own free ports and run/soak/, so it can run
# beside `make up`. MINUTES=n changes the duration; SOAK_ARGS passes more (--profile demo).
soak: venv tools
	@$(PY) -m native.soak $(if $(MINUTES),--minutes $(MINUTES)) $(SOAK_ARGS)

dashboards: venv
	@$(PY) -m grafana.generate

# deploy/kubernetes/base/generated/ from the production rules, alertmanager.yml and the dashboards.
kubernetes: venv
	@$(PY) -m deploy.kubernetes.generate

# Re-pin every transitive Python dependency after changing requirements.txt.
lock:
	@rm -rf /tmp/celery-stack-lock && $(PYTHON) -m venv /tmp/celery-stack-lock
	@/tmp/celery-stack-lock/bin/pip install -q -r requirements.txt
	@/tmp/celery-stack-lock/bin/pip freeze --exclude-editable | grep -v '^celery-queue-exporter' > constraints.txt
	@rm -rf /tmp/celery-stack-lock
