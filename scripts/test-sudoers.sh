#!/usr/bin/env bash
# test-sudoers.sh — install the sudoers file the end-to-end tests' non-root hub runs under. Run as root.
#
# The file is what `jupyterhub-hpc sudoers` generates for the tests' configuration (the default
# SlurmSpawner): the account `jupyterhub` may run sbatch, scancel and tail, with exactly the arguments
# the spawner uses, as members of `jupyterhub-users` (never root); the API token passes (env_keep) to
# sbatch only. It replaces any earlier /etc/sudoers.d/jupyterhub-hpc-test. Idempotent.
set -euo pipefail

VENV=${VENV:-/opt/jupyterhub-hpc/venv}
HUB_USER=${HUB_USER:-jupyterhub}
GROUP=${GROUP:-jupyterhub-users}
SUDOERS=/etc/sudoers.d/jupyterhub-hpc-test

log() { echo "[test-sudoers.sh] $*" >&2; }
[ "$(id -u)" = 0 ] || { log "ERROR: must run as root"; exit 1; }
[ -x "$VENV/bin/jupyterhub-hpc" ] || { log "ERROR: $VENV/bin/jupyterhub-hpc missing (make venv)"; exit 1; }

tmp=$(mktemp /etc/sudoers.d/.jupyterhub-hpc-test.XXXXXX)   # '.' in the name: sudo ignores it
trap 'rm -f "$tmp"' EXIT
"$VENV/bin/jupyterhub-hpc" sudoers --hub-user "$HUB_USER" --group "$GROUP" --check > "$tmp"
chmod 0440 "$tmp"
visudo -cqf "$tmp"
if ! cmp -s "$tmp" "$SUDOERS"; then
  log "writing $SUDOERS"
  mv "$tmp" "$SUDOERS"
fi
