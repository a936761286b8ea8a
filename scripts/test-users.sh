#!/usr/bin/env bash
# test-users.sh — create the accounts the integration tests use. Idempotent; run as root.
#
#   hpcuser1, hpcuser2, hpcuser3  ordinary login users (bash, home 0755), members of jupyterhub-users
#   jupyterhub                    non-root system account with home /var/lib/jupyterhub-hpc-test,
#                                 for running the hub without root
set -euo pipefail

USERS="hpcuser1 hpcuser2 hpcuser3"
GROUP=jupyterhub-users
HUB_USER=jupyterhub
HUB_HOME=/var/lib/jupyterhub-hpc-test

log() { echo "[test-users.sh] $*" >&2; }
[ "$(id -u)" = 0 ] || { log "ERROR: must run as root"; exit 1; }

getent group "$GROUP" >/dev/null || { log "creating group $GROUP"; groupadd "$GROUP"; }

for u in $USERS; do
  if ! id -u "$u" >/dev/null 2>&1; then
    log "creating user $u"
    useradd -m -s /bin/bash "$u"
  fi
  home=$(getent passwd "$u" | cut -d: -f6)
  [ -d "$home" ] || install -d -o "$u" -g "$(id -gn "$u")" "$home"
  chmod 0755 "$home"
  [ "$(getent passwd "$u" | cut -d: -f7)" = /bin/bash ] || usermod -s /bin/bash "$u"
  id -nG "$u" | tr ' ' '\n' | grep -qx "$GROUP" || usermod -a -G "$GROUP" "$u"
done

if ! id -u "$HUB_USER" >/dev/null 2>&1; then
  log "creating system user $HUB_USER"
  useradd --system --user-group --create-home --home-dir "$HUB_HOME" -s /bin/bash "$HUB_USER"
fi
install -d -m 0755 -o "$HUB_USER" -g "$(id -gn "$HUB_USER")" "$HUB_HOME"
[ "$(getent passwd "$HUB_USER" | cut -d: -f6)" = "$HUB_HOME" ] || usermod -d "$HUB_HOME" "$HUB_USER"

# The root hub of the end-to-end tests submits with `sudo -n -u USER -- sbatch`; the server's token
# travels in sbatch's environment (never on a command line or in the script), so sudo must keep it.
# (Issue 5's `jupyterhub-hpc sudoers` generates the complete file for a non-root hub.)
SUDOERS=/etc/sudoers.d/jupyterhub-hpc-test
want='Defaults!/usr/bin/sbatch env_keep += "JUPYTERHUB_API_TOKEN JPY_API_TOKEN"'
if [ "$(cat "$SUDOERS" 2>/dev/null)" != "$want" ]; then
  log "writing $SUDOERS"
  printf '%s\n' "$want" > "$SUDOERS.tmp"
  chmod 0440 "$SUDOERS.tmp"
  visudo -cqf "$SUDOERS.tmp"
  mv "$SUDOERS.tmp" "$SUDOERS"
fi
