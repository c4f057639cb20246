# pgfleet: `make up` runs the local stack, `make test` runs the whole suite.
SHELL := /bin/bash
VENV ?= .venv
PY := $(VENV)/bin/python
PGFLEET_HOME ?= $(HOME)/.pgfleet
export PGFLEET_HOME
# Debian packages the data plane needs: PostgreSQL 15, etcd (Patroni's DCS), pgBackRest, PgBouncer,
# HAProxy (a migrated instance's old endpoint, forwarded to its cluster's primary);
# and Prometheus, which the tests scrape /api/metrics with. Barman (PyPI; backups of 18) restores
# with rsync, and its psycopg2 builds from source (libpq-dev, python3-dev, gcc). poppler-utils'
# pdftoppm renders the maintenance PDF reports in the tests. pgaudit logs role changes and DDL
# for threat detection.
APT_PACKAGES := postgresql-15 postgresql-client-15 postgresql-15-hypopg postgresql-15-pgaudit etcd-server pgbackrest pgbouncer util-linux prometheus haproxy rsync libpq-dev python3-dev gcc poppler-utils
REQUIRED_BINARIES := /usr/lib/postgresql/15/bin/postgres /usr/lib/postgresql/15/lib/hypopg.so /usr/lib/postgresql/15/lib/pgaudit.so /usr/bin/etcd /usr/bin/pgbackrest /usr/sbin/pgbouncer /usr/sbin/runuser /usr/bin/prometheus /usr/sbin/haproxy /usr/bin/rsync /usr/bin/pg_config /usr/bin/gcc /usr/bin/pdftoppm

.PHONY: help install postgres-access system-packages up down status token test unit lint bench clean provider node-tools postman package

help:
	@echo "make up      start the local stack (moto, gateway, worker, ticker) in the background"
	@echo "make down    stop everything 'make up' started (state stays in PGFLEET_HOME=$(PGFLEET_HOME))"
	@echo "make test    install what is needed and run the whole suite"
	@echo "make provider  install the Terraform provider into a local mirror (offline terraform init)"
	@echo "make bench   run the benchmarks under bench/"
	@echo "make package build the Lambda artifact build/pgfleet-lambda.zip (infra/package.py)"
	@echo "make postman regenerate the Postman collection (tests/postman) from the OpenAPI document"

# Debian starts the services of a package it installs. When pgfleet installs a package, its
# services stay down (a policy-rc.d for the length of the install, unless one exists) and are
# disabled at boot (systemctl, for the packages pgfleet itself installed): pgfleet runs its own
# etcd and servers on other ports. It never stops anything it did not start: an etcd or a
# PostgreSQL cluster already on the machine is left running (see README, "Next to your own").
SERVICES_OF := postgresql-15:postgresql etcd-server:etcd pgbouncer:pgbouncer prometheus:prometheus prometheus:prometheus-node-exporter
POLICY_RC_D := /usr/sbin/policy-rc.d

system-packages:
	@missing=""; for b in $(REQUIRED_BINARIES); do [ -e "$$b" ] || missing="$$missing $$b"; done; \
	[ -z "$$missing" ] && exit 0; \
	if [ "$$(id -u)" != 0 ]; then \
	  echo "missing:$$missing -- install as root: apt-get install $(APT_PACKAGES)" >&2; exit 1; \
	fi; \
	new=""; for p in $(APT_PACKAGES); do \
	  dpkg-query -W -f='$${Status}' "$$p" 2>/dev/null | grep -q ' installed$$' || new="$$new $$p"; \
	done; \
	echo "installing Debian packages for:$$missing"; \
	if [ ! -e $(POLICY_RC_D) ]; then \
	  trap 'rm -f $(POLICY_RC_D)' EXIT; \
	  printf '#!/bin/sh\n# pgfleet: no service starts while pgfleet installs packages\nexit 101\n' > $(POLICY_RC_D); \
	  chmod 755 $(POLICY_RC_D); \
	fi; \
	apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq $(APT_PACKAGES) >/dev/null || exit 1; \
	if [ -d /run/systemd/system ]; then \
	  for pair in $(SERVICES_OF); do \
	    case " $$new " in *" $${pair%%:*} "*) systemctl disable --quiet "$${pair#*:}" || true;; esac; \
	  done; \
	fi

$(VENV)/.installed: pyproject.toml
	python3 -m venv $(VENV)
	$(VENV)/bin/pip install -q --disable-pip-version-check -e '.[dev,local]'
	touch $@

# newman and the OpenAPI -> Postman converter (tests/postman), pinned, in a prefix of the venv.
# The stamp names the versions: nothing runs when they are installed already.
NODE_PREFIX := $(VENV)/node
NODE_TOOLS := newman@6.2.2 openapi-to-postmanv2@6.3.3

node-tools:
	@[ "$$(cat $(NODE_PREFIX)/.installed 2>/dev/null)" = "$(NODE_TOOLS)" ] && exit 0; \
	if ! command -v npm >/dev/null; then \
	  if [ "$$(id -u)" != 0 ]; then echo "npm is missing -- install as root: apt-get install nodejs npm" >&2; exit 1; fi; \
	  apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq nodejs npm >/dev/null || exit 1; \
	fi; \
	echo "installing $(NODE_TOOLS) under $(NODE_PREFIX)"; \
	npm install --prefix $(NODE_PREFIX) --no-save --no-package-lock --no-audit --no-fund --loglevel=error \
	  $(NODE_TOOLS) >/dev/null && echo "$(NODE_TOOLS)" > $(NODE_PREFIX)/.installed

# The servers run as the `postgres` OS user, and so do the tools they call (Barman, as
# archive_command): that user must reach this checkout and the venv's interpreter, whose
# prefix may sit under a home directory closed to others (/root is 0700). Each closed
# directory above them gets o+x (passage only, no listing); nothing else changes.
postgres-access: system-packages $(VENV)/.installed
	@[ "$$(id -u)" = 0 ] || exit 0; \
	for start in "$$(readlink -f $(PY))" "$(CURDIR)/$(VENV)/bin"; do \
	  d="$$start"; while [ "$$d" != / ]; do d=$$(dirname "$$d"); \
	    [ -n "$$(find "$$d" -maxdepth 0 ! -perm -o+x)" ] && { echo "o+x on $$d (for the postgres user)"; chmod o+x "$$d"; }; \
	  done; \
	done; \
	runuser -u postgres -- $(PY) -c 'import barman' 2>/dev/null || runuser -u postgres -- $(PY) -c pass || \
	  { echo "the postgres user cannot run $(PY)" >&2; exit 1; }

install: system-packages $(VENV)/.installed node-tools postgres-access

up: install
	$(VENV)/bin/pgfleet up

down:
	@if [ -x $(VENV)/bin/pgfleet ]; then $(VENV)/bin/pgfleet down; else echo "nothing to stop"; fi

status:
	@$(VENV)/bin/pgfleet status

# The Terraform provider in a filesystem mirror under PGFLEET_HOME, and a CLI config using it.
provider: install
	$(PY) -m pgfleet.provider.install --home $(PGFLEET_HOME)

# The Lambda artifact the template and infra/ deploy: the runtime dependencies as wheels for the
# template's Runtime (python3.13, x86_64) beside the pgfleet package; fails past Lambda's 250 MB.
package: install
	$(PY) infra/package.py

postman: install
	$(PY) tests/postman/generate.py

lint: install
	$(VENV)/bin/ruff check functions tests bench infra
	$(VENV)/bin/ruff format --check functions tests bench infra
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
