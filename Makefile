# jupyterhub-hpc — machine setup and test entry points (Debian 12, run as root).
#
#   make test      install what is missing, build the venv, start Slurm + test users, run pytest
#   make demo      install + venv, then `jupyterhub-hpc demo`
#   make lint      ruff check, ruff format --check, mypy
#
# The venv is built from Debian's python (not a pyenv python under /root) and the package is installed
# NON-editable: Slurm jobs run as ordinary users, who must be able to run the venv's python and
# import jupyterhub_hpc even when this checkout lives under /root.

SHELL := /bin/bash
.SHELLFLAGS := -eu -o pipefail -c

VENV ?= /opt/jupyterhub-hpc/venv
PYTHON_BASE ?= /usr/bin/python3
PYTEST_ARGS ?=
APT_PACKAGES ?= slurm-wlm munge sudo chromium python3 python3-venv openssh-server ca-certificates

.PHONY: all system-deps venv services test demo lint

all: test

system-deps:
	@missing=""; \
	for p in $(APT_PACKAGES); do \
	  case "$$(dpkg-query -W -f='$${db:Status-Abbrev}' "$$p" 2>/dev/null || true)" in \
	    ii*) ;; *) missing="$$missing $$p" ;; \
	  esac; \
	done; \
	if ! command -v configurable-http-proxy >/dev/null && ! command -v npm >/dev/null; then \
	  missing="$$missing npm"; \
	fi; \
	if [ -n "$$missing" ]; then \
	  echo "system-deps: apt-get install$$missing"; \
	  export DEBIAN_FRONTEND=noninteractive; \
	  apt-get update -qq; \
	  apt-get install -y -qq $$missing; \
	fi
	@command -v configurable-http-proxy >/dev/null || { \
	  echo "system-deps: npm install -g configurable-http-proxy"; \
	  npm install -g --no-fund --no-audit configurable-http-proxy; }

venv: system-deps
	@umask 022; \
	if [ -x "$(VENV)/bin/python" ]; then \
	  want=$$("$(PYTHON_BASE)" -c 'import sys; print(sys.base_prefix, sys.version_info[:2])'); \
	  have=$$("$(VENV)/bin/python" -c 'import sys; print(sys.base_prefix, sys.version_info[:2])' 2>/dev/null || true); \
	  if [ "$$want" != "$$have" ]; then \
	    echo "venv: $(VENV) was not built from $(PYTHON_BASE) ($$have); recreating"; rm -rf "$(VENV)"; \
	  fi; \
	fi; \
	if [ ! -x "$(VENV)/bin/python" ]; then \
	  echo "venv: creating $(VENV) from $(PYTHON_BASE)"; \
	  mkdir -p "$(dir $(VENV))"; chmod 0755 "$(dir $(VENV))"; \
	  "$(PYTHON_BASE)" -m venv "$(VENV)"; \
	fi
	umask 022; "$(VENV)/bin/python" -m pip install --quiet --disable-pip-version-check "$(CURDIR)[test]"
	@chmod -R a+rX "$(VENV)"

services: system-deps
	"$(CURDIR)/scripts/slurm.sh" start
	"$(CURDIR)/scripts/gridengine.sh" start
	"$(CURDIR)/scripts/oar.sh" start
	"$(CURDIR)/scripts/test-users.sh"

test: system-deps venv services
	"$(VENV)/bin/python" -m pytest -v tests $(PYTEST_ARGS)

demo: system-deps venv
	"$(VENV)/bin/jupyterhub-hpc" demo

lint: venv
	"$(VENV)/bin/ruff" check src tests
	"$(VENV)/bin/ruff" format --check src tests
	"$(VENV)/bin/mypy" src
