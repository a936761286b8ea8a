#!/usr/bin/env bash
# oar.sh — a single-node OAR 2.5.9 (Debian 12 oar-server/oar-node/oar-user + PostgreSQL 15) run without
# systemd, as root, for the end-to-end tests.
#
#   scripts/oar.sh [start]  install if needed, start PostgreSQL if it is down, create the oar database,
#                           start OAR's node sshd (port 6667) and the server (Almighty), declare one
#                           resource per core of this host, wait until they are Alive. Idempotent.
#   scripts/oar.sh stop     stop Almighty and the OAR sshd (by pid); PostgreSQL only if this script started it.
#   scripts/oar.sh status   daemons and resources; exit 0 only when Almighty and the sshd run.
#
# Facts this relies on (see the project's scheduler research): oarsub refuses to work without $PWD in its
# environment (sudo drops it: submit with `sudo -u U -- env PWD=DIR oarsub ...`); Almighty reads commands
# with a hard-coded 10 s timeout, which makes every job after the first wait ~11 s: OAR_FAST=1 (default)
# lowers it to 1 s and sets SCHEDULER_MIN_TIME_BETWEEN_2_CALLS=1, for ~2 s from submit to Running.
# Knobs: OAR_CORES (resources, default max(4, nproc)), OAR_FAST (default 1).
set -euo pipefail
export DEBIAN_FRONTEND=noninteractive
CONF=/etc/oar/oar.conf
MARK=/var/lib/jupyterhub-hpc-oar
CORES=${OAR_CORES:-$(( $(nproc) > 4 ? $(nproc) : 4 ))}
SERVER_PID=/var/run/oar-server.pid
SSHD_PID=/var/run/oar-node_sshd.pid

log() { echo "[oar.sh] $*" >&2; }
die() { log "ERROR: $*"; exit 1; }
[ "$(id -u)" = 0 ] || die "must run as root"

# alive PIDFILE WORD: print the pid if that process runs and WORD is in its command line
alive() {
  local p
  [ -r "$1" ] || return 1
  p=$(tr -dc 0-9 < "$1") || return 1
  [ -n "$p" ] && [ -r "/proc/$p/cmdline" ] && tr '\0' ' ' < "/proc/$p/cmdline" | grep -q -- "$2" || return 1
  echo "$p"
}
stop_pid() {
  local p=$1 i
  kill "$p" 2>/dev/null || return 0
  for i in $(seq 1 100); do [ -d "/proc/$p" ] || return 0; sleep 0.2; done
  kill -9 "$p" 2>/dev/null || true
}
# (no `grep -q` after a pipe: with pipefail, the writer's SIGPIPE would fail the test)
resources_alive() { [[ "$(oarnodes -s 2>/dev/null)" == *Alive* ]]; }
pg_first() { pg_lsclusters -h 2>/dev/null | awk 'NR==1{print $1" "$2}'; }
pg_online() { pg_lsclusters -h 2>/dev/null | awk 'NR==1 && $4=="online"{ok=1} END{exit !ok}'; }

install_packages() {
  local p need=""
  for p in oar-server oar-server-pgsql oar-node oar-user oar-user-pgsql postgresql sudo; do
    dpkg-query -W -f='${db:Status-Abbrev}' "$p" 2>/dev/null | grep -q '^ii' || need="$need $p"
  done
  [ -z "$need" ] && return 0
  log "installing$need"
  compgen -G '/var/lib/apt/lists/*_Packages*' >/dev/null || apt-get update -qq
  # shellcheck disable=SC2086
  apt-get install -y -qq --no-install-recommends $need >/dev/null \
    || { apt-get update -qq; apt-get install -y -qq --no-install-recommends $need >/dev/null; }
}

start_postgres() {
  [ -n "$(pg_first)" ] || pg_createcluster 15 main >/dev/null
  pg_online && return 0
  # shellcheck disable=SC2046
  set -- $(pg_first)
  log "starting PostgreSQL $1/$2"
  pg_ctlcluster "$1" "$2" start
  mkdir -p "$MARK"; touch "$MARK/pg-started-here"
}

configure() {
  local restart=0
  # the packaged config has empty database passwords, which oar-database refuses
  sed -i -e 's/^DB_BASE_PASSWD=""/DB_BASE_PASSWD="oar-test-rw"/' \
    -e 's/^DB_BASE_PASSWD_RO=""/DB_BASE_PASSWD_RO="oar-test-ro"/' "$CONF"
  if [ "${OAR_FAST:-1}" = 1 ]; then
    grep -q '^SCHEDULER_MIN_TIME_BETWEEN_2_CALLS=' "$CONF" \
      || { echo 'SCHEDULER_MIN_TIME_BETWEEN_2_CALLS="1"' >> "$CONF"; restart=1; }
    if grep -q '^my \$read_commands_timeout = 10;' /usr/lib/oar/Almighty; then
      sed -i 's/^my \$read_commands_timeout = 10;/my $read_commands_timeout = 1;/' /usr/lib/oar/Almighty
      restart=1
    fi
  fi
  if [ $restart = 1 ] && p=$(alive "$SERVER_PID" Almighty); then log "restarting Almighty"; stop_pid "$p"; fi
  oar-database --check >/dev/null 2>&1 || { log "creating the oar database"; oar-database --create --db-is-local >/dev/null; }
}

# cpuset of resource number N (0-based): a real CPU, however many resources are declared (a cpuset
# naming a CPU the machine does not have fails the job with CPUSET_ERROR and suspects the node)
cpuset_of() { echo $(( $1 % $(nproc) )); }

add_resources() {
  local prop c id
  if [ -n "$(oarnodes -l 2>/dev/null)" ]; then
    for id in $(seq 1 "$CORES"); do # repair resources declared by an earlier version of this script
      oarnodesetting -r "$id" -p cpuset="$(cpuset_of $((id - 1)))" >/dev/null 2>&1 || true
    done
    return 0
  fi
  for prop in cpu core; do oarproperty -l | grep -qx $prop || oarproperty -a $prop >/dev/null; done
  oarproperty -l | grep -qx host || oarproperty -c -a host >/dev/null
  for c in $(seq 0 $((CORES - 1))); do
    oarnodesetting -a -h localhost -p host=localhost -p cpu=0 -p core="$c" -p cpuset="$(cpuset_of "$c")" >/dev/null
  done
  log "declared $CORES resources on localhost"
}

do_start() {
  local t0=$SECONDS i p
  install_packages
  start_postgres
  configure
  install -d -m 0755 /run/sshd
  if ! alive "$SSHD_PID" /etc/oar/sshd_config >/dev/null; then
    log "starting OAR's sshd (port 6667)"
    /usr/sbin/sshd -f /etc/oar/sshd_config -o PidFile="$SSHD_PID"
  fi
  if ! alive "$SERVER_PID" Almighty >/dev/null; then
    log "starting oar-server"
    /usr/sbin/oar-server
  fi
  add_resources
  # a node suspected after a failed job takes no job until it is set Alive again
  oarnodesetting -s Alive -h localhost >/dev/null 2>&1 || true
  for i in $(seq 1 100); do resources_alive && break; sleep 0.2; done
  resources_alive || die "no Alive resource"
  alive "$SERVER_PID" Almighty >/dev/null || die "Almighty is not running"
  log "OAR is up in $((SECONDS - t0)) s"
}

do_stop() {
  local p
  if p=$(alive "$SERVER_PID" Almighty); then log "stopping Almighty (pid $p)"; stop_pid "$p"; fi
  if p=$(alive "$SSHD_PID" /etc/oar/sshd_config); then log "stopping OAR's sshd (pid $p)"; stop_pid "$p"; fi
  if [ -e "$MARK/pg-started-here" ]; then
    # shellcheck disable=SC2046
    set -- $(pg_first)
    log "stopping PostgreSQL $1/$2"
    pg_ctlcluster "$1" "$2" stop || true
    rm -f "$MARK/pg-started-here"
  fi
}

do_status() {
  local rc=0 p
  if p=$(alive "$SERVER_PID" Almighty); then echo "Almighty: running (pid $p)"; else echo "Almighty: down"; rc=3; fi
  if p=$(alive "$SSHD_PID" /etc/oar/sshd_config); then echo "sshd: running (pid $p)"; else echo "sshd: down"; rc=3; fi
  pg_lsclusters 2>/dev/null || true
  oarnodes -s 2>/dev/null || true
  return $rc
}

case "${1:-start}" in
  start) do_start ;;
  stop) do_stop ;;
  status) do_status ;;
  -h|--help|help) sed -n '2,16p' "$0" ;;
  *) echo "usage: $0 [start|stop|status]" >&2; exit 2 ;;
esac
