#!/usr/bin/env bash
# setup.sh — prepare the benchmark (idempotent; run as root). Called by run.sh.
#
#   - the benchmark venv $BENCH_VENV (default /opt/jupyterhub-hpc/bench-venv), built from
#     /usr/bin/python3 (job users must be able to run it): batchspawner 1.3.0 from PyPI, matplotlib,
#     and exactly the JupyterHub / jupyter_server / JupyterLab versions of our venv ($VENV), so both
#     spawners start the same Jupyter;
#   - the accounts benchuser1..20 (server owners), benchfail1/2 (failing spawns), benchstat (our
#     hub's watcher runs squeue as this user, so sdiag counts its RPCs apart) and benchstat2 (the same
#     for the registered-jobs run, which also owns its sleep jobs): `useradd -m`, only if missing;
#     they are left in place afterwards;
#   - the Slurm partition $BENCH_SHARED_PARTITION (default benchshared) over all nodes with
#     OverSubscribe=FORCE:12, Hidden, created at run time with `scontrol create` (not written to
#     slurm.conf; run.sh deletes it at the end): the test node declares 8 CPUs, and 2 x 20 servers
#     plus 50 sleep jobs need more job slots than that. Every other scenario runs in the ordinary
#     partition $BENCH_PARTITION (default debug). Slurm never lets jobs of a FORCE partition share a
#     node with jobs of an ordinary one: that stage waits for a quiet node and stops as soon as
#     anybody else's job waits for it.
set -euo pipefail

VENV=${VENV:-/opt/jupyterhub-hpc/venv}
BENCH_VENV=${BENCH_VENV:-/opt/jupyterhub-hpc/bench-venv}
SHARED_PARTITION=${BENCH_SHARED_PARTITION:-benchshared}
BATCHSPAWNER_VERSION=${BATCHSPAWNER_VERSION:-1.3.0}
HERE=$(cd "$(dirname "$0")" && pwd)

log() { echo "[bench setup] $*" >&2; }
[ "$(id -u)" = 0 ] || { log "must run as root"; exit 1; }
[ -x "$VENV/bin/jupyterhub" ] || { log "$VENV is missing: run 'make venv' first"; exit 1; }
"$VENV/bin/python" -c 'import jupyterhub_hpc' || { log "jupyterhub_hpc is not installed in $VENV"; exit 1; }
command -v configurable-http-proxy >/dev/null || { log "configurable-http-proxy is missing: run 'make system-deps'"; exit 1; }
scontrol ping | grep -q UP || { log "slurmctld is not up: run 'scripts/slurm.sh start'"; exit 1; }

# -- the benchmark venv ----------------------------------------------------------------------------
umask 022
if ! "$BENCH_VENV/bin/python" - "$BATCHSPAWNER_VERSION" <<'EOF' 2>/dev/null; then
import sys
from importlib.metadata import version
import matplotlib, requests  # noqa: F401
assert version("batchspawner") == sys.argv[1]
EOF
  log "creating $BENCH_VENV (batchspawner $BATCHSPAWNER_VERSION, matplotlib)"
  rm -rf "$BENCH_VENV"
  /usr/bin/python3 -m venv "$BENCH_VENV"
  constraints=$(mktemp)
  # the same versions as our venv (JupyterHub, jupyter_server, JupyterLab, ...), minus our package
  "$VENV/bin/python" -m pip freeze --exclude-editable --disable-pip-version-check \
    | grep -v -i -E '^(jupyterhub-hpc|jupyterhub_hpc)[= ]' > "$constraints"
  "$BENCH_VENV/bin/python" -m pip install --quiet --disable-pip-version-check -c "$constraints" \
    "batchspawner==$BATCHSPAWNER_VERSION" jupyterhub jupyterlab requests matplotlib
  rm -f "$constraints"
fi
chmod -R a+rX "$BENCH_VENV"

# -- accounts -----------------------------------------------------------------------------------------
for u in $(seq -f 'benchuser%g' 1 20) benchfail1 benchfail2 benchstat benchstat2; do
  if ! id -u "$u" >/dev/null 2>&1; then
    log "creating user $u"
    useradd -m -s /bin/bash "$u"
  fi
  chmod 0755 "$(getent passwd "$u" | cut -d: -f6)"
done

# -- the partition ----------------------------------------------------------------------------------
# (again right before each scenario that uses it: a slurmctld restart forgets it)
"$VENV/bin/python" -c 'import sys; sys.path.insert(0, sys.argv[1]); import bench_lib; bench_lib.ensure_shared_partition()' "$HERE"

chmod 0755 "$HERE/lightserver.py"
log "ready"
