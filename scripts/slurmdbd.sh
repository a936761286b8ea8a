#!/usr/bin/env bash
# slurmdbd.sh — Slurm accounting (slurmdbd 22.05 + a private MariaDB) for the multi-node test cluster of
# scripts/slurm-multinode.sh, which calls it before starting its slurmctld. No systemd; run as root.
# Idempotent.
#
# slurm-multinode.sh writes the cluster's slurm.conf (AccountingStorageType=accounting_storage/slurmdbd,
# which sacctmgr needs) before it calls this script.
#
#   scripts/slurmdbd.sh [start]  install mariadb-server + slurmdbd if missing, start a private MariaDB
#                                (127.0.0.1:$SLURMDBD_DB_PORT, data under $BASE/mysql) and slurmdbd
#                                (port $SLURMDBD_PORT), then create the cluster "multi", its accounts,
#                                QoS and user associations (below) if they are missing.
#   scripts/slurmdbd.sh stop     stop slurmdbd and the private MariaDB (by pid).
#   scripts/slurmdbd.sh status   exit 0 only when both answer.
#
# Everything lives under $SLURM_MULTI_DIR (default /var/lib/jupyterhub-hpc-slurm-multi), beside the
# cluster's own files: etc/slurmdbd.conf (0600, read by slurmdbd from the directory of SLURM_CONF),
# mysql/ (the database files), run/, log/. The Debian MariaDB service of the machine is never used.
#
# The associations the tests rely on (tests/profiles/test_two_clusters.py, tests/e2e/test_slurm_multinode.py):
#   accounts physics, chemistry (and root's); QoS normal, long, debug
#   hpcuser3: physics (default), chemistry; QoS normal (default), long
#   hpcuser4: physics (default); QoS normal
set -euo pipefail

BASE=${SLURM_MULTI_DIR:-/var/lib/jupyterhub-hpc-slurm-multi}
PORT_BASE=${SLURM_MULTI_PORT_BASE:-7817}
DBD_PORT=${SLURMDBD_PORT:-$((PORT_BASE + 2))}
DB_PORT=${SLURMDBD_DB_PORT:-$((PORT_BASE + 3))}
WAIT_S=${SLURM_WAIT_S:-60}
CLUSTER=multi
DB_NAME=slurm_acct_db_multi
DB_USER=slurm
export SLURM_CONF=$BASE/etc/slurm.conf
DBD_CONF=$BASE/etc/slurmdbd.conf
DATADIR=$BASE/mysql
RUN=$BASE/run
LOGDIR=$BASE/log
DB_PID=$RUN/mariadbd.pid
DB_SOCKET=$RUN/mariadbd.sock
DBD_PID=$RUN/slurmdbd.pid
DB_PASS_FILE=$BASE/etc/slurmdbd.dbpass

log() { echo "[slurmdbd.sh] $*" >&2; }
die() { log "ERROR: $*"; exit 1; }
# shared helpers: alive, stop_daemon, logtail, apt_install (uses log and die above)
# shellcheck source=lib/daemons.sh
. "$(dirname "$(readlink -f "${BASH_SOURCE[0]}")")/lib/daemons.sh"
[ "$(id -u)" = 0 ] || die "must run as root"

install_packages() {
  command -v slurmdbd >/dev/null && [ -x /usr/sbin/mariadbd ] && command -v mariadb-install-db >/dev/null && return 0
  log "installing mariadb-server slurmdbd"
  apt_install mariadb-server slurmdbd
}

sql() { mariadb --socket="$DB_SOCKET" -u root --batch --skip-column-names "$@"; }

start_db() {
  install -d -m 0755 "$BASE" "$BASE/etc" "$RUN" "$LOGDIR"
  chown mysql:mysql "$RUN"   # mariadbd writes its pid file and socket here
  if [ ! -d "$DATADIR/mysql" ]; then
    log "initialising the private MariaDB in $DATADIR"
    install -d -m 0750 -o mysql -g mysql "$DATADIR"
    mariadb-install-db --user=mysql --datadir="$DATADIR" --auth-root-authentication-method=socket \
      --skip-test-db > "$LOGDIR/mariadb-install.log" 2>&1 || { logtail "$LOGDIR/mariadb-install.log"; die "mariadb-install-db failed"; }
  fi
  if ! alive "$DB_PID" mariadbd >/dev/null; then
    log "starting mariadbd (127.0.0.1:$DB_PORT)"
    runuser -u mysql -- /usr/sbin/mariadbd --no-defaults --datadir="$DATADIR" --socket="$DB_SOCKET" \
      --pid-file="$DB_PID" --port="$DB_PORT" --bind-address=127.0.0.1 --skip-name-resolve \
      --innodb-buffer-pool-size=128M --innodb-lock-wait-timeout=900 --log-error="$LOGDIR/mariadbd.log" \
      </dev/null >/dev/null 2>&1 &
    disown
  fi
  local end=$((SECONDS + WAIT_S))
  until sql -e 'SELECT 1' >/dev/null 2>&1; do
    [ $SECONDS -lt $end ] || { logtail "$LOGDIR/mariadbd.log"; die "mariadbd does not answer"; }
    sleep 0.3
  done
  if [ ! -s "$DB_PASS_FILE" ]; then
    (umask 077; head -c 18 /dev/urandom | base64 | tr -dc 'A-Za-z0-9' > "$DB_PASS_FILE")
  fi
  local pass; pass=$(cat "$DB_PASS_FILE")
  sql -e "CREATE USER IF NOT EXISTS '$DB_USER'@'127.0.0.1' IDENTIFIED BY '$pass';
          ALTER USER '$DB_USER'@'127.0.0.1' IDENTIFIED BY '$pass';
          GRANT ALL ON \`$DB_NAME\`.* TO '$DB_USER'@'127.0.0.1';"
}

render_dbd_conf() {
  cat <<EOF
# Written by jupyterhub-hpc scripts/slurmdbd.sh — accounting of the multi-node test cluster. Do not edit.
AuthType=auth/munge
DbdHost=localhost
DbdPort=$DBD_PORT
SlurmUser=root
StorageType=accounting_storage/mysql
StorageHost=127.0.0.1
StoragePort=$DB_PORT
StorageUser=$DB_USER
StoragePass=$(cat "$DB_PASS_FILE")
StorageLoc=$DB_NAME
LogFile=$LOGDIR/slurmdbd.log
PidFile=$DBD_PID
EOF
}

start_dbd() {
  local new changed=0
  new=$(render_dbd_conf)
  if [ ! -f "$DBD_CONF" ] || [ "$(cat "$DBD_CONF")" != "$new" ]; then
    (umask 077; printf '%s\n' "$new" > "$DBD_CONF")
    log "wrote $DBD_CONF"
    changed=1
  fi
  chmod 0600 "$DBD_CONF"
  [ $changed = 1 ] && stop_daemon "$DBD_PID" slurmdbd
  if ! alive "$DBD_PID" slurmdbd >/dev/null; then
    log "starting slurmdbd (port $DBD_PORT)"
    # slurmdbd reads slurmdbd.conf from the directory of SLURM_CONF (exported above)
    rm -f "$DBD_PID"
    slurmdbd || { logtail "$LOGDIR/slurmdbd.log"; die "slurmdbd failed to start"; }
  fi
  local end=$((SECONDS + WAIT_S))
  until sacctmgr --immediate --noheader --parsable2 list cluster format=Cluster >/dev/null 2>&1; do
    if [ $SECONDS -ge $end ] || died "$DBD_PID" slurmdbd; then
      logtail "$LOGDIR/slurmdbd.log"; die "slurmdbd does not answer (sacctmgr list cluster)"
    fi
    sleep 0.3
  done
}

# ensure KIND NAME [ARGS...]: `sacctmgr add` unless it exists
has() { [ -n "$(sacctmgr --noheader --parsable2 list "$@" 2>/dev/null)" ]; }

ensure_associations() {
  has cluster "$CLUSTER" format=Cluster || sacctmgr --immediate add cluster "$CLUSTER" >/dev/null
  local q
  for q in normal long debug; do has qos "$q" format=Name || sacctmgr --immediate add qos "$q" >/dev/null; done
  sacctmgr --immediate modify qos long set MaxWall=04:00:00 >/dev/null 2>&1 || true
  local a
  for a in physics chemistry; do
    has account "$a" format=Account || sacctmgr --immediate add account "$a" cluster="$CLUSTER" \
      description="$a" organization=tests >/dev/null
  done
  # user ACCOUNT DEFAULT_QOS QOS_LIST
  user() {
    has association user="$1" account="$2" cluster="$CLUSTER" format=User \
      || sacctmgr --immediate add user "$1" account="$2" cluster="$CLUSTER" >/dev/null
    # "Nothing modified" (already so) exits non-zero: the tests check the result
    sacctmgr --immediate modify user where name="$1" account="$2" cluster="$CLUSTER" \
      set qos="$4" defaultqos="$3" >/dev/null 2>&1 || true
  }
  user hpcuser3 physics normal normal,long
  user hpcuser3 chemistry normal normal,long
  user hpcuser4 physics normal normal
  sacctmgr --immediate modify user hpcuser3 set defaultaccount=physics >/dev/null 2>&1 || true
  sacctmgr --immediate modify user hpcuser4 set defaultaccount=physics >/dev/null 2>&1 || true
}

do_start() {
  local t0=$SECONDS
  install_packages
  id hpcuser3 >/dev/null 2>&1 && id hpcuser4 >/dev/null 2>&1 || "$(dirname "$0")/test-users.sh"
  start_db
  start_dbd
  ensure_associations
  log "slurmdbd is up in $((SECONDS - t0)) s (cluster $CLUSTER, port $DBD_PORT)"
}

do_stop() {
  stop_daemon "$DBD_PID" slurmdbd
  stop_daemon "$DB_PID" mariadbd
}

do_status() {
  local rc=0
  alive "$DB_PID" mariadbd >/dev/null && sql -e 'SELECT 1' >/dev/null 2>&1 \
    && echo "mariadbd: running" || { echo "mariadbd: down"; rc=3; }
  sacctmgr --noheader --parsable2 list cluster format=Cluster >/dev/null 2>&1 \
    && echo "slurmdbd: running" || { echo "slurmdbd: down"; rc=3; }
  return $rc
}

case "${1:-start}" in
  start) do_start ;;
  stop) do_stop ;;
  status) do_status ;;
  -h|--help|help) sed -n '2,24p' "$0" ;;
  *) echo "usage: $0 [start|stop|status]" >&2; exit 2 ;;
esac
