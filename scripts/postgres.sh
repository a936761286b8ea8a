#!/usr/bin/env bash
# postgres.sh — a private PostgreSQL cluster (Debian 12's postgresql, 15) run without systemd, as root,
# for the tests of the announcements service on a shared database (several replicas on one URL).
#
#   scripts/postgres.sh [start]  install if needed, initdb (once), start the server (pg_ctl, as the
#                                postgres user), create the test role and database. Idempotent; quick
#                                (one pg_ctl status, two psql) when the server is up already.
#   scripts/postgres.sh stop     stop the server (pg_ctl stop -m fast).
#   scripts/postgres.sh status   exit 0 only when the server runs.
#   scripts/postgres.sh url      print the test database's SQLAlchemy URL (postgresql+psycopg://...);
#                                exit 3 when the server is down.
#
# Its own cluster, not Debian's `main` one (scripts/oar.sh uses that, on port 5432): data, socket,
# log and the test role's password under $PG_BASE, TCP on 127.0.0.1:$PG_PORT only (scram-sha-256),
# the socket for the postgres superuser (peer). The test role may create databases: a test makes an
# empty database of its own and drops it afterwards. Durability is off (fsync, synchronous_commit):
# nothing in this cluster outlives a test.
# Knobs: PG_BASE (default /var/lib/jupyterhub-hpc-postgres), PG_PORT (default 5439).
set -euo pipefail
export DEBIAN_FRONTEND=noninteractive
BASE=${PG_BASE:-/var/lib/jupyterhub-hpc-postgres}
PORT=${PG_PORT:-5439}
DATA=$BASE/data
RUN=$BASE/run
LOG=$BASE/postgres.log
PASSWORD_FILE=$BASE/test-password
ROLE=jupyterhub_hpc_test
DB=jupyterhub_hpc_test

log() { echo "[postgres.sh] $*" >&2; }
die() { log "ERROR: $*"; exit 1; }
[ "$(id -u)" = 0 ] || die "must run as root"
# shellcheck source=lib/daemons.sh
. "$(dirname "$0")/lib/daemons.sh"

bindir() {
  local v
  v=$(find /usr/lib/postgresql -mindepth 1 -maxdepth 1 -printf '%f\n' 2>/dev/null | sort -V | tail -n1)
  [ -n "$v" ] && [ -x "/usr/lib/postgresql/$v/bin/pg_ctl" ] || return 1
  echo "/usr/lib/postgresql/$v/bin"
}
as_postgres() { runuser -u postgres -- "$@"; }
running() { local b; b=$(bindir) && [ -s "$DATA/PG_VERSION" ] && as_postgres "$b/pg_ctl" -D "$DATA" status >/dev/null 2>&1; }
# psql as the superuser, over the private socket
psql_su() { as_postgres "$(bindir)/psql" -X -q -v ON_ERROR_STOP=1 -h "$RUN" -p "$PORT" -d postgres "$@"; }

install_packages() {
  dpkg-query -W -f='${db:Status-Abbrev}' postgresql 2>/dev/null | grep -q '^ii' && bindir >/dev/null && return 0
  log "installing postgresql"
  apt_install postgresql
  bindir >/dev/null || die "no /usr/lib/postgresql/*/bin/pg_ctl after installing postgresql"
}

init_cluster() {
  [ -s "$DATA/PG_VERSION" ] && return 0
  log "initdb $DATA"
  install -d -m 0711 "$BASE"
  rm -rf "$DATA"
  install -d -m 0700 -o postgres -g postgres "$DATA"
  as_postgres "$(bindir)/initdb" -D "$DATA" -U postgres -E UTF8 --locale=C \
    --auth-local=peer --auth-host=scram-sha-256 >/dev/null
  cat >> "$DATA/postgresql.conf" <<EOF
# scripts/postgres.sh: a private test cluster
listen_addresses = '127.0.0.1'
port = $PORT
unix_socket_directories = '$RUN'
fsync = off
synchronous_commit = off
full_page_writes = off
max_connections = 200
EOF
}

start_server() {
  running && return 0
  install -d -m 0755 -o postgres -g postgres "$RUN"
  install -m 0640 -o postgres -g postgres /dev/null "$LOG.new" && mv -f "$LOG.new" "$LOG"
  log "starting PostgreSQL ($DATA, 127.0.0.1:$PORT)"
  as_postgres "$(bindir)/pg_ctl" -D "$DATA" -l "$LOG" -w -t 60 start >/dev/null \
    || { logtail "$LOG"; die "pg_ctl start failed"; }
}

create_role_and_db() {
  local password
  if [ ! -s "$PASSWORD_FILE" ]; then
    (umask 077; head -c 24 /dev/urandom | base64 | tr -dc 'A-Za-z0-9' > "$PASSWORD_FILE")
  fi
  password=$(cat "$PASSWORD_FILE")
  # the password goes through psql's variables (quoted by psql), not the command line
  if [ "$(psql_su -tA -c "SELECT 1 FROM pg_roles WHERE rolname = '$ROLE'")" != 1 ]; then
    log "creating role $ROLE"
    psql_su -v pw="$password" <<< "CREATE ROLE $ROLE LOGIN CREATEDB PASSWORD :'pw';"
  fi
  if [ "$(psql_su -tA -c "SELECT 1 FROM pg_database WHERE datname = '$DB'")" != 1 ]; then
    log "creating database $DB"
    psql_su -c "CREATE DATABASE $DB OWNER $ROLE"
  fi
}

do_start() {
  local t0=$SECONDS
  install_packages
  init_cluster
  start_server
  create_role_and_db
  log "PostgreSQL is up in $((SECONDS - t0)) s: $(do_url | sed 's#:[^:@/]*@#:***@#')"
}

do_stop() {
  running || return 0
  log "stopping PostgreSQL ($DATA)"
  as_postgres "$(bindir)/pg_ctl" -D "$DATA" -m fast -w -t 60 stop >/dev/null
}

do_url() {
  running || { log "PostgreSQL ($DATA) is not running: scripts/postgres.sh start"; return 3; }
  [ -s "$PASSWORD_FILE" ] || { log "no $PASSWORD_FILE: scripts/postgres.sh start"; return 3; }
  echo "postgresql+psycopg://$ROLE:$(cat "$PASSWORD_FILE")@127.0.0.1:$PORT/$DB"
}

case "${1:-start}" in
  start) do_start ;;
  stop) do_stop ;;
  status) if running; then echo "PostgreSQL ($DATA, 127.0.0.1:$PORT): running"; else echo "PostgreSQL: down"; exit 3; fi ;;
  url) do_url ;;
  -h|--help|help) sed -n '2,18p' "$0" ;;
  *) echo "usage: $0 [start|stop|status|url]" >&2; exit 2 ;;
esac
