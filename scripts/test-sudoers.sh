#!/usr/bin/env bash
# test-sudoers.sh — install the sudoers file the end-to-end tests' non-root hub runs under. Run as root.
#
# The file is what `jupyterhub-hpc sudoers` generates for the tests' configuration (the default
# SlurmSpawner): the account `jupyterhub` may run sbatch, scancel and the venv's jupyterhub-hpc-read-output,
# with exactly the arguments the spawner uses, as members of `jupyterhub-users` (never root); the API
# token passes (env_keep) to sbatch only. It replaces any earlier /etc/sudoers.d/jupyterhub-hpc-test.
# Idempotent.
#
# With VENV_JH53 (the JupyterHub 5.3 test venv), /etc/sudoers.d/jupyterhub-hpc-test-jh53 is the same
# for that venv (its hub runs that venv's reader).
# A further file, /etc/sudoers.d/jupyterhub-hpc-test-multinode, is generated the same way for the hubs of
# the multi-node tests (tests/e2e/slurm_multinode_hub.py: scheduler_environment SLURM_CONF, so the rules
# are `/usr/bin/env ^SLURM_CONF=... sbatch --parsable$` etc. with env_keep of the token on that exact
# command), with its own alias names (sudo refuses an alias defined twice).
# And /etc/sudoers.d/jupyterhub-hpc-test-slurm24 for the hubs of the live suite on Slurm 24.11
# (tests/e2e/slurm24_hub.py: scripts/slurm24.sh's wrappers and SLURM_CONF, alias JUPYTERHUB_HPC_S24).
# And /etc/sudoers.d/jupyterhub-hpc-test-multicluster for the multi-node hubs' profile that names the
# cluster (tests/e2e/slurm_multinode_cluster_hub.py: sbatch/scancel with --clusters=multi, alias JUPYTERHUB_HPC_MCL).
set -euo pipefail

VENV=${VENV:-/opt/jupyterhub-hpc/venv}
HUB_USER=${HUB_USER:-jupyterhub}
GROUP=${GROUP:-jupyterhub-users}
SUDOERS=/etc/sudoers.d/jupyterhub-hpc-test

log() { echo "[test-sudoers.sh] $*" >&2; }
[ "$(id -u)" = 0 ] || { log "ERROR: must run as root"; exit 1; }
[ -x "$VENV/bin/jupyterhub-hpc" ] || { log "ERROR: $VENV/bin/jupyterhub-hpc missing (make venv)"; exit 1; }
[ -x "$VENV/bin/jupyterhub-hpc-read-output" ] || { log "ERROR: $VENV/bin/jupyterhub-hpc-read-output missing (reinstall)"; exit 1; }

# install_generated FILE ARGS...: generate with `jupyterhub-hpc sudoers ARGS`, check it, replace FILE if it differs
tmp=""
trap 'rm -f "$tmp"' EXIT
install_generated() {
  local dest=$1; shift
  tmp=$(mktemp /etc/sudoers.d/.jupyterhub-hpc-test.XXXXXX)   # '.' in the name: sudo ignores it
  "$VENV/bin/jupyterhub-hpc" sudoers --hub-user "$HUB_USER" --group "$GROUP" --check "$@" > "$tmp"
  chmod 0440 "$tmp"
  visudo -cqf "$tmp"
  if ! cmp -s "$tmp" "$dest"; then
    log "writing $dest"
    mv "$tmp" "$dest"
  fi
  rm -f "$tmp"
}

install_generated "$SUDOERS"
# the JupyterHub 5.3 run's hub reads job output with its own venv's reader (its own path)
VENV_JH53=${VENV_JH53:-}
if [ -n "$VENV_JH53" ] && [ -x "$VENV_JH53/bin/jupyterhub-hpc" ]; then
  VENV_SAVED=$VENV; VENV=$VENV_JH53
  install_generated "$SUDOERS-jh53" --alias JUPYTERHUB_HPC_JH53
  VENV=$VENV_SAVED
fi
install_generated "$SUDOERS-multinode" --alias JUPYTERHUB_HPC_MULTI \
  --config "$(readlink -f "$(dirname "$0")/../tests/e2e/slurm_multinode_hub.py")"
install_generated "$SUDOERS-slurm24" --alias JUPYTERHUB_HPC_S24 \
  --config "$(readlink -f "$(dirname "$0")/../tests/e2e/slurm24_hub.py")"
install_generated "$SUDOERS-multicluster" --alias JUPYTERHUB_HPC_MCL \
  --config "$(readlink -f "$(dirname "$0")/../tests/e2e/slurm_multinode_cluster_hub.py")"
visudo -cq
