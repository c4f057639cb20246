# pgfleet: `make up` runs the local stack, `make test` runs the whole suite.
SHELL := /bin/bash
VENV ?= .venv
PY := $(VENV)/bin/python
PGFLEET_HOME ?= $(HOME)/.pgfleet
export PGFLEET_HOME
# Debian packages the data plane needs: PostgreSQL 15, etcd (Patroni's DCS), pgBackRest, PgBouncer.
APT_PACKAGES := postgresql-15 postgresql-client-15 etcd-server pgbackrest pgbouncer util-linux
REQUIRED_BINARIES := /usr/lib/postgresql/15/bin/postgres /usr/bin/etcd /usr/bin/pgbackrest /usr/sbin/pgbouncer /usr/sbin/runuser

.PHONY: help install system-packages up down status token test unit lint bench clean provider

help:
	@echo "make up      start the local stack (moto, gateway, worker, ticker) in the background"
	@echo "make down    stop everything 'make up' started (state stays in PGFLEET_HOME=$(PGFLEET_HOME))"
	@echo "make test    install what is needed and run the whole suite"
	@echo "make provider  install the Terraform provider into a local mirror (offline terraform init)"
	@echo "make bench   run the benchmarks under bench/"

system-packages:
	@missing=""; for b in $(REQUIRED_BINARIES); do [ -x "$$b" ] || missing="$$missing $$b"; done; \
	if [ -n "$$missing" ]; then \
	  if [ "$$(id -u)" = 0 ]; then \
	    echo "installing Debian packages for:$$missing"; \
	    apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq $(APT_PACKAGES) >/dev/null; \
	  else \
	    echo "missing:$$missing -- install as root: apt-get install $(APT_PACKAGES)" >&2; exit 1; \
	  fi; \
	fi
	@# Debian starts a cluster and the services on install; pgfleet runs its own on loopback.
	@if [ "$$(id -u)" = 0 ]; then \
	  for s in etcd pgbouncer; do (service $$s stop || true) >/dev/null 2>&1; done; \
	  (pg_ctlcluster 15 main stop || true) >/dev/null 2>&1; \
	fi

$(VENV)/.installed: pyproject.toml
	python3 -m venv $(VENV)
	$(VENV)/bin/pip install -q --disable-pip-version-check -e '.[dev]'
	touch $@

install: system-packages $(VENV)/.installed

up: install
	$(VENV)/bin/pgfleet up

down:
	@if [ -x $(VENV)/bin/pgfleet ]; then $(VENV)/bin/pgfleet down; else echo "nothing to stop"; fi

status:
	@$(VENV)/bin/pgfleet status

# The Terraform provider in a filesystem mirror under PGFLEET_HOME, and a CLI config using it.
provider: install
	$(PY) -m pgfleet.provider.install --home $(PGFLEET_HOME)

lint: install
	$(VENV)/bin/ruff check functions tests bench
	$(VENV)/bin/ruff format --check functions tests bench
	$(VENV)/bin/mypy functions/pgfleet
	$(VENV)/bin/lint-imports --no-cache
	$(PY) -m pgfleet.provider.generate --check

unit: install
	$(PY) -m pytest -q tests/unit

test: install lint
	$(PY) -m pytest -q -p no:cacheprovider tests

bench: install
	@for b in bench/bench_*.py; do echo "== $$b"; $(PY) $$b || exit 1; done

clean:
	rm -rf $(VENV) .pytest_cache .ruff_cache .mypy_cache
