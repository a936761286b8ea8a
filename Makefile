# jupyterhub-hpc — machine setup and test entry points (Debian 12, run as root).
#
#   make test      install what is missing, build the Lab extension and the venvs, start the schedulers + test users, run pytest:
#                  the live Slurm end-to-end suite with JupyterHub 5.3 ($(VENV_JH53)), the same suite, the idle
#                  policy and the Lab's job card on Slurm 24.11 (scripts/slurm24.sh: a Debian 13 root, built once,
#                  ~2 min), then everything with JupyterHub 6 ($(VENV))
#   make demo      install + venv, then `jupyterhub-hpc demo`
#   make lint      ruff check, ruff format --check, mypy
#   make labextension  build the JupyterLab extension (labextension/ -> labextension/dist; needs Node + npm)
#   make bench     benchmarks/run.sh: jupyterhub-hpc vs batchspawner on the real Slurm, the scale run,
#                  results in benchmarks/results/ (about 25 min; see docs/benchmarks.md)
#   make bench-ours  issue 2's benchmark only (our spawner: phases, registered jobs, scale run)
#
# The venv is built from Debian's python (not a pyenv python under /root) and the package is installed
# NON-editable: Slurm jobs run as ordinary users, who must be able to run the venv's python and
# import jupyterhub_hpc even when this checkout lives under /root.

SHELL := /bin/bash
.SHELLFLAGS := -eu -o pipefail -c

VENV ?= /opt/jupyterhub-hpc/venv
PYTHON_BASE ?= /usr/bin/python3
PYTEST_ARGS ?=
# the second JupyterHub of the test matrix: same Python, same package, JupyterHub 5.3.x
VENV_JH53 ?= /opt/jupyterhub-hpc/venv-jh53
JH53_REQUIREMENTS ?= "jupyterhub>=5.3,<5.4" "$(CURDIR)[test]"
APT_PACKAGES ?= slurm-wlm munge sudo chromium python3 python3-venv openssh-server ca-certificates postgresql \
  tcpdump iproute2 util-linux \
  podman uidmap crun runc catatonit slirp4netns fuse-overlayfs libnss-wrapper charliecloud-runtime debootstrap \
  squashfs-tools

.PHONY: all system-deps labextension venv venv-jh53 services test demo lint bench bench-ours

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

# $(call build-venv,DIR,REQUIREMENTS): DIR from $(PYTHON_BASE) (recreated if it was built from another
# Python), then pip install REQUIREMENTS (the package non-editable), readable by the job users
define build-venv
	@umask 022; \
	if [ -x "$(1)/bin/python" ]; then \
	  want=$$("$(PYTHON_BASE)" -c 'import sys; print(sys.base_prefix, sys.version_info[:2])'); \
	  have=$$("$(1)/bin/python" -c 'import sys; print(sys.base_prefix, sys.version_info[:2])' 2>/dev/null || true); \
	  if [ "$$want" != "$$have" ]; then \
	    echo "venv: $(1) was not built from $(PYTHON_BASE) ($$have); recreating"; rm -rf "$(1)"; \
	  fi; \
	fi; \
	if [ ! -x "$(1)/bin/python" ]; then \
	  echo "venv: creating $(1) from $(PYTHON_BASE)"; \
	  mkdir -p "$(dir $(1))"; chmod 0755 "$(dir $(1))"; \
	  "$(PYTHON_BASE)" -m venv "$(1)"; \
	fi
	umask 022; "$(1)/bin/python" -m pip install --quiet --disable-pip-version-check $(2)
	@chmod -R a+rX "$(1)"
endef

# The JupyterLab extension (labextension/, TypeScript), prebuilt into labextension/dist, which the wheel
# ships as share/jupyter/labextensions/@jupyterhub-hpc/labextension (pyproject.toml's data-files; the
# wheel build fails without it). Built with JupyterLab's own tools from $(VENV) (jlpm, jupyter-builder),
# packages from the npm registry, Node from system-deps; against the core package.json of the
# installed JupyterLab (its staging/), so nothing but the npm packages is downloaded. Rebuilt only
# when a source changes. Installing the wheel needs no Node.
LABEXT := labextension
LABEXT_BUILT := $(LABEXT)/dist/package.json
LABEXT_SOURCES := $(LABEXT)/package.json $(LABEXT)/yarn.lock $(LABEXT)/tsconfig.json $(LABEXT)/.yarnrc.yml \
  $(wildcard $(LABEXT)/src/*.ts) $(wildcard $(LABEXT)/style/*)
LABEXT_TOOLS := $(VENV)/bin/jlpm

labextension: $(LABEXT_BUILT)

$(LABEXT_TOOLS): | system-deps
	$(call build-venv,$(VENV),"jupyterlab>=4")

$(LABEXT_BUILT): $(LABEXT_SOURCES) | $(LABEXT_TOOLS)
	@t0=$$SECONDS; export PATH="$(VENV)/bin:$$PATH"; cd $(LABEXT); \
	staging=$$(python -c 'import jupyterlab, os; print(os.path.join(os.path.dirname(jupyterlab.__file__), "staging"))'); \
	echo "labextension: jlpm install"; jlpm install; \
	echo "labextension: tsc"; node_modules/.bin/tsc -p .; \
	echo "labextension: build against $$staging/package.json"; \
	if command -v jupyter-builder >/dev/null; then \
	  jupyter-builder build --core-package-file "$$staging/package.json" .; \
	else \
	  jupyter labextension build --core-path "$$staging" .; \
	fi; \
	test -s dist/package.json && compgen -G 'dist/static/remoteEntry.*.js' >/dev/null \
	  || { echo "labextension: the build produced no dist/package.json + remoteEntry"; exit 1; }; \
	touch dist/package.json; \
	echo "labextension: built in $$((SECONDS - t0)) s"

venv: system-deps labextension
	$(call build-venv,$(VENV),"$(CURDIR)[test]")

venv-jh53: system-deps labextension
	$(call build-venv,$(VENV_JH53),$(JH53_REQUIREMENTS))

services: system-deps
	"$(CURDIR)/scripts/slurm.sh" start
	"$(CURDIR)/scripts/slurm-multinode.sh" start
	"$(CURDIR)/scripts/gridengine.sh" start
	"$(CURDIR)/scripts/oar.sh" start
	"$(CURDIR)/scripts/postgres.sh" start   # the announcements replicas' shared database
	"$(CURDIR)/scripts/modules.sh" install  # Lmod (installed, login hook diverted), Tmod 5.2 (unpacked), test trees
	"$(CURDIR)/scripts/test-users.sh"
	VENV="$(VENV)" "$(CURDIR)/scripts/slurm24.sh" start   # after test-users.sh: it copies the users into its root
	VENV="$(VENV)" VENV_JH53="$(VENV_JH53)" "$(CURDIR)/scripts/test-sudoers.sh"

# Every run runs; make fails if any failed. Four runs go side by side first, on separate resources:
# - the multi-node Slurm tests and the maintenance-reservation tests (their own clusters: the private
#   multi-node Slurm and Slurm 24.11; ~4 min, mostly waiting for a walltime kill and the reservations),
#   then, on Slurm 24.11 (free of reservations by then), the idle policy and the Lab's job card in real
#   JupyterLab ($(SLURM24_TESTS), ~2.3 min; they run on 24.11 only: the 22.05 cluster has every other
#   end-to-end test),
# - the tests of the Lab side that need no scheduler (local-backend hubs and a JupyterLab with fake
#   routes: announcements, the idle policy, the extension's contract, per-kernel modules; ~8 min,
#   mostly waiting),
# - the unit tests (no scheduler, no test users, no fixed ports; ~4 min of one core, which the
#   waiting runs leave free),
# - the live Slurm end-to-end suite with JupyterHub 5.3, then the same suite with JupyterHub 6, then the
#   servers in containers (Charliecloud, rootless podman; scripts/containers.sh builds the image, ~1.5
#   min the first time) (all on Slurm 22.05, one after the other; they fit in the first run's ~12 min),
#   then (once the first run is done with Slurm 24.11) the same suite on Slurm 24.11.
# Then everything else with JupyterHub 6.
MULTINODE_TESTS := tests/e2e/test_slurm_multinode.py tests/e2e/test_kernel_jobs_multinode.py tests/e2e/test_maintenance_live.py \
  tests/e2e/test_maintenance_announcements_live.py
SLURM24_TESTS := tests/e2e/test_slurm_idle.py tests/lab/test_lab_live.py
NO_SCHEDULER_TESTS := tests/announcements tests/local/test_idle_hub.py tests/local/test_idle_lab.py \
  tests/lab/test_lab_contract.py tests/lab/test_modules_routes.py tests/lab/test_modules_live.py
UNIT_TESTS := tests/unit
CONTAINER_TESTS := tests/e2e/test_containers_live.py
test: system-deps venv venv-jh53 services
	@rc=0; multi_log=$$(mktemp); side_log=$$(mktemp); unit_log=$$(mktemp); \
	{ r=0; "$(VENV)/bin/python" -m pytest -v -p no:cacheprovider $(MULTINODE_TESTS) || r=1; \
	  echo "== JupyterHub 6 ($(VENV)): $(SLURM24_TESTS) on Slurm 24.11 (after the above)"; \
	  JUPYTERHUB_HPC_TEST_SLURM=24.11 "$(VENV)/bin/python" -m pytest -v -p no:cacheprovider --durations=5 \
	    $(SLURM24_TESTS) || r=1; exit $$r; } > "$$multi_log" 2>&1 & multi=$$!; \
	"$(VENV)/bin/python" -m pytest -v -p no:cacheprovider $(NO_SCHEDULER_TESTS) > "$$side_log" 2>&1 & side=$$!; \
	"$(VENV)/bin/python" -m pytest -v -p no:cacheprovider --durations=5 $(UNIT_TESTS) > "$$unit_log" 2>&1 & unit=$$!; \
	echo "== JupyterHub 5.3 ($(VENV_JH53)): tests/e2e/test_slurm_e2e.py"; \
	"$(VENV_JH53)/bin/python" -m pytest -v -p no:cacheprovider tests/e2e/test_slurm_e2e.py || rc=$$?; \
	echo "== JupyterHub 6 ($(VENV)): tests/e2e/test_slurm_e2e.py"; \
	"$(VENV)/bin/python" -m pytest -v -p no:cacheprovider --durations=5 tests/e2e/test_slurm_e2e.py || rc=$$?; \
	echo "== JupyterHub 6 ($(VENV)): $(CONTAINER_TESTS)"; \
	"$(VENV)/bin/python" -m pytest -v -p no:cacheprovider --durations=5 $(CONTAINER_TESTS) || rc=$$?; \
	wait $$multi || rc=$$?; \
	echo "== JupyterHub 6 ($(VENV)): $(MULTINODE_TESTS) (run beside the above)"; \
	cat "$$multi_log"; rm -f "$$multi_log"; \
	echo "== JupyterHub 6 ($(VENV)): tests/e2e/test_slurm_e2e.py on Slurm 24.11 (scripts/slurm24.sh)"; \
	JUPYTERHUB_HPC_TEST_SLURM=24.11 "$(VENV)/bin/python" -m pytest -v -p no:cacheprovider \
	  tests/e2e/test_slurm_e2e.py || rc=$$?; \
	wait $$side || rc=$$?; \
	echo "== JupyterHub 6 ($(VENV)): $(NO_SCHEDULER_TESTS) (run beside the above)"; \
	cat "$$side_log"; rm -f "$$side_log"; \
	wait $$unit || rc=$$?; \
	echo "== JupyterHub 6 ($(VENV)): $(UNIT_TESTS) (run beside the above)"; \
	cat "$$unit_log"; rm -f "$$unit_log"; \
	echo "== JupyterHub 6 ($(VENV)): tests"; \
	"$(VENV)/bin/python" -m pytest -v --durations=15 tests \
	  $(addprefix --ignore=,tests/e2e/test_slurm_e2e.py $(MULTINODE_TESTS) $(SLURM24_TESTS) $(NO_SCHEDULER_TESTS) \
	    $(UNIT_TESTS) $(CONTAINER_TESTS)) \
	  $(PYTEST_ARGS) || rc=$$?; \
	exit $$rc

demo: system-deps venv
	"$(VENV)/bin/jupyterhub-hpc" demo

lint: venv
	"$(VENV)/bin/ruff" check src tests
	"$(VENV)/bin/ruff" format --check src tests
	"$(VENV)/bin/mypy" src

# not `venv`: it reinstalls the package non-editable; benchmarks/setup.sh checks that $(VENV) exists
bench: services
	VENV="$(VENV)" "$(CURDIR)/benchmarks/run.sh"

bench-ours: services
	VENV="$(VENV)" "$(CURDIR)/benchmarks/run.sh" --ours-only
