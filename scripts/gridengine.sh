#!/usr/bin/env bash
# gridengine.sh — a single-node Son of Grid Engine 8.1.9 (Debian 12 gridengine-* packages) run without
# systemd, as root, for the end-to-end tests.
#
#   scripts/gridengine.sh [start]  install if needed, initialise the cell, start sge_qmaster, configure
#                                  (hosts, PE "smp", queues all.q and short.q, a 1 s scheduler), start
#                                  sge_execd, wait until all.q@HOST takes jobs. Idempotent: a second run
#                                  only checks the daemons and the configuration.
#   scripts/gridengine.sh stop     delete all jobs, stop sge_execd and sge_qmaster (by pid).
#   scripts/gridengine.sh status   daemons and queues; exit 0 only when both daemons run.
#
# gridengine-client conflicts with slurm-wlm-torque (both ship /usr/bin/qsub); the Slurm packages used by
# scripts/slurm.sh do not. Clients need no environment: Debian's /usr/bin wrappers read
# /etc/default/gridengine. Ports: 6444 (qmaster), 6445 (execd).
# Knobs: SGE_SLOTS (slots per queue, default max(4, nproc)), SGE_WAIT_S (default 60).
set -euo pipefail

export SGE_ROOT=/var/lib/gridengine SGE_CELL=default DEBIAN_FRONTEND=noninteractive
COMMON=$SGE_ROOT/$SGE_CELL/common
SPOOL=/var/spool/gridengine
QMASTER_PID=$SPOOL/qmaster/qmaster.pid
HOST=$(hostname)
SLOTS=${SGE_SLOTS:-$(( $(nproc) > 4 ? $(nproc) : 4 ))}
WAIT_S=${SGE_WAIT_S:-60}

log() { echo "[gridengine.sh] $*" >&2; }
die() { log "ERROR: $*"; exit 1; }
[ "$(id -u)" = 0 ] || die "must run as root"

# alive PIDFILE COMM: print the pid if that process runs
alive() {
  local p
  [ -n "$1" ] && [ -r "$1" ] || return 1
  p=$(tr -dc 0-9 < "$1") || return 1
  [ -n "$p" ] && [ "$(cat "/proc/$p/comm" 2>/dev/null)" = "$2" ] || return 1
  echo "$p"
}
# the execd spools under the name it resolved for itself ("localhost" here, not the host name)
execd_pidfile() { compgen -G "$SPOOL/execd/*/execd.pid" | head -n1 || true; }

stop_pid() {
  local p=$1 i
  kill "$p" 2>/dev/null || return 0
  for i in $(seq 1 150); do [ -d "/proc/$p" ] || return 0; sleep 0.2; done
  kill -9 "$p" 2>/dev/null || true
}

until_ok() { # until_ok SECONDS command...
  local end=$((SECONDS + $1)); shift
  until "$@" >/dev/null 2>&1; do [ $SECONDS -lt $end ] || return 1; sleep 0.2; done
}

quiet() { local out; out=$("$@" 2>&1) || { echo "$out" >&2; return 1; }; }

install_packages() {
  local p need=0
  for p in gridengine-master gridengine-exec gridengine-client sudo; do
    dpkg-query -W -f='${db:Status-Abbrev}' "$p" 2>/dev/null | grep -q '^ii' || need=1
  done
  [ $need = 0 ] && return 0
  log "installing gridengine-master gridengine-exec gridengine-client"
  printf '%s\n' \
    "gridengine-common shared/gridengineconfig boolean true" \
    "gridengine-common shared/gridenginecell string $SGE_CELL" \
    "gridengine-common shared/gridenginemaster string $HOST" | debconf-set-selections
  compgen -G '/var/lib/apt/lists/*_Packages*' >/dev/null || apt-get update -qq
  apt-get install -y -qq --no-install-recommends gridengine-master gridengine-exec gridengine-client sudo \
    >/dev/null || { apt-get update -qq; apt-get install -y -qq --no-install-recommends \
    gridengine-master gridengine-exec gridengine-client sudo >/dev/null; }
}

init_cell() {
  [ -s "$COMMON/bootstrap" ] && [ -s "$SPOOL/spooldb/sge" ] && [ "$(cat "$COMMON/.jupyterhub-hpc-host" 2>/dev/null)" = "$HOST" ] \
    && return 0
  do_stop >/dev/null 2>&1 || true
  log "initialising cell $SGE_CELL for $HOST"
  rm -rf "$SPOOL/spooldb" "$SPOOL/qmaster" "$SPOOL/execd" "$COMMON"
  install -d -o sgeadmin -g sgeadmin -m 0755 "$SPOOL" "$SPOOL/spooldb" "$SPOOL/qmaster" \
    "$SPOOL/qmaster/job_scripts" "$SPOOL/execd" "$SGE_ROOT/$SGE_CELL" "$COMMON"
  install -m 0644 -o sgeadmin -g sgeadmin /usr/share/gridengine/default-bootstrap "$COMMON/bootstrap"
  runuser -u sgeadmin -- /usr/share/gridengine/scripts/init_cluster "$SGE_ROOT" "$SGE_CELL" "$SPOOL/spooldb" \
    sgeadmin >/dev/null
  echo "$HOST" > "$COMMON/act_qmaster"
  chown sgeadmin:sgeadmin "$COMMON/act_qmaster"
  echo "$HOST" > "$COMMON/.jupyterhub-hpc-host"
}

# Grid Engine refuses a client whose address resolves back to another name (vm -> 127.0.0.1 ->
# localhost): map that name to the host name. Read by the daemons at start.
host_aliases() {
  local ip rev want=""
  ip=$(getent ahostsv4 "$HOST" | awk 'NR==1{print $1}')
  rev=$(getent hosts "$ip" | awk 'NR==1{print $2}')
  [ -n "$rev" ] && [ "$rev" != "$HOST" ] && want="$HOST $rev"
  [ "$(cat "$COMMON/host_aliases" 2>/dev/null)" = "$want" ] && return 0
  if [ -n "$want" ]; then
    echo "$want" > "$COMMON/host_aliases"; chown sgeadmin:sgeadmin "$COMMON/host_aliases"
  else
    rm -f "$COMMON/host_aliases"
  fi
  log "host aliases changed: restarting the daemons"
  do_stop >/dev/null 2>&1 || true
}

queue_conf() { # queue_conf NAME SEQ H_RT
  cat <<EOF
qname $1
hostlist @allhosts
seq_no $2
load_thresholds NONE
suspend_thresholds NONE
nsuspend 1
suspend_interval 00:05:00
priority 0
min_cpu_interval 00:05:00
processors UNDEFINED
qtype BATCH INTERACTIVE
ckpt_list NONE
pe_list smp
rerun FALSE
slots $SLOTS
tmpdir /tmp
shell /bin/bash
prolog NONE
epilog NONE
shell_start_mode unix_behavior
starter_method NONE
suspend_method NONE
resume_method NONE
terminate_method NONE
notify 00:00:60
owner_list NONE
user_lists NONE
xuser_lists NONE
subordinate_list NONE
complex_values NONE
projects NONE
xprojects NONE
calendar NONE
initial_state default
s_rt INFINITY
h_rt $3
s_cpu INFINITY
h_cpu INFINITY
s_fsize INFINITY
h_fsize INFINITY
s_data INFINITY
h_data INFINITY
s_stack INFINITY
h_stack INFINITY
s_core INFINITY
h_core INFINITY
s_rss INFINITY
h_rss INFINITY
s_vmem INFINITY
h_vmem INFINITY
EOF
}

configure() {
  local tmp; tmp=$(mktemp -d)
  qconf -sh 2>/dev/null | grep -qx "$HOST" || quiet qconf -ah "$HOST"
  qconf -ss 2>/dev/null | grep -qx "$HOST" || quiet qconf -as "$HOST"
  if ! qconf -se "$HOST" >/dev/null 2>&1; then
    printf 'hostname %s\nload_scaling NONE\ncomplex_values NONE\nuser_lists NONE\nxuser_lists NONE\nprojects NONE\nxprojects NONE\nusage_scaling NONE\nreport_variables NONE\n' \
      "$HOST" > "$tmp/exec"
    quiet qconf -Ae "$tmp/exec"
  fi
  printf 'group_name @allhosts\nhostlist %s\n' "$HOST" > "$tmp/hgrp"
  if qconf -shgrp @allhosts >/dev/null 2>&1; then quiet qconf -Mhgrp "$tmp/hgrp"; else quiet qconf -Ahgrp "$tmp/hgrp"; fi
  # a parallel environment for multi-core requests (qsub -pe smp N), all slots on one host
  printf '%s\n' "pe_name smp" "slots 9999" "user_lists NONE" "xuser_lists NONE" "start_proc_args NONE" \
    "stop_proc_args NONE" 'allocation_rule $pe_slots' "control_slaves FALSE" "job_is_first_task TRUE" \
    "urgency_slots min" "accounting_summary FALSE" "qsort_args NONE" > "$tmp/pe"
  if qconf -sp smp >/dev/null 2>&1; then quiet qconf -Mp "$tmp/pe"; else quiet qconf -Ap "$tmp/pe"; fi
  # all.q: no limit (first by seq_no); short.q: h_rt 1 minute, used only with -q short.q or when all.q is full
  local name
  for name in all.q short.q; do
    if [ $name = all.q ]; then queue_conf all.q 0 INFINITY > "$tmp/q"; else queue_conf short.q 10 00:01:00 > "$tmp/q"; fi
    if qconf -sq $name >/dev/null 2>&1; then quiet qconf -Mq "$tmp/q"; else quiet qconf -Aq "$tmp/q"; fi
  done
  # schedule every second and right after a submit or a job end (the default waits up to 15 s)
  qconf -ssconf > "$tmp/sched"
  sed -i -e 's/^schedule_interval .*/schedule_interval 0:0:1/' -e 's/^flush_submit_sec .*/flush_submit_sec 1/' \
    -e 's/^flush_finish_sec .*/flush_finish_sec 1/' -e 's/^queue_sort_method .*/queue_sort_method seqno/' "$tmp/sched"
  qconf -Msconf "$tmp/sched" >/dev/null 2>&1 || true # "no changes" exits 1
  rm -rf "$tmp"
}

queue_ready() {
  qstat -f -q "all.q@$HOST" 2>/dev/null | awk -v q="all.q@$HOST" '$1==q && $4!="-NA-" && NF==5 {ok=1} END{exit !ok}'
}

do_start() {
  local t0=$SECONDS
  install_packages
  init_cell
  host_aliases
  install -d -o sgeadmin -g sgeadmin /var/run/gridengine
  if ! alive "$QMASTER_PID" sge_qmaster >/dev/null; then
    log "starting sge_qmaster"
    /usr/sbin/sge_qmaster
  fi
  until_ok "$WAIT_S" qconf -sss || { tail -n 20 "$SPOOL/qmaster/messages" >&2; die "sge_qmaster does not answer"; }
  configure
  if ! alive "$(execd_pidfile)" sge_execd >/dev/null; then
    log "starting sge_execd"
    /usr/sbin/sge_execd
  fi
  until_ok "$WAIT_S" queue_ready || { qstat -f >&2 || true; die "all.q@$HOST does not take jobs"; }
  qmod -c "*@$HOST" >/dev/null 2>&1 || true # clear an error state left by an earlier run
  log "Grid Engine is up in $((SECONDS - t0)) s"
}

do_stop() {
  local p
  if alive "$QMASTER_PID" sge_qmaster >/dev/null; then
    qdel -f -u '*' >/dev/null 2>&1 || true
    sleep 1
  fi
  if p=$(alive "$(execd_pidfile)" sge_execd); then log "stopping sge_execd (pid $p)"; stop_pid "$p"; fi
  if p=$(alive "$QMASTER_PID" sge_qmaster); then log "stopping sge_qmaster (pid $p)"; stop_pid "$p"; fi
  for p in $(pgrep -x sge_shepherd || true); do
    [ "$(readlink "/proc/$p/exe" 2>/dev/null)" = /usr/lib/gridengine/sge_shepherd ] && kill -9 "$p" 2>/dev/null || true
  done
  return 0
}

do_status() {
  local rc=0 p
  if p=$(alive "$QMASTER_PID" sge_qmaster); then echo "sge_qmaster: running (pid $p)"; else echo "sge_qmaster: down"; rc=3; fi
  if p=$(alive "$(execd_pidfile)" sge_execd); then echo "sge_execd: running (pid $p)"; else echo "sge_execd: down"; rc=3; fi
  [ $rc = 0 ] && qstat -f
  return $rc
}

case "${1:-start}" in
  start) do_start ;;
  stop) do_stop ;;
  status) do_status ;;
  -h|--help|help) sed -n '2,16p' "$0" ;;
  *) echo "usage: $0 [start|stop|status]" >&2; exit 2 ;;
esac
