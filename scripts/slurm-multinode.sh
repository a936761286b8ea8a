#!/usr/bin/env bash
# slurm-multinode.sh — a SECOND, private Slurm 22.05 cluster ("multi") with four fake nodes on this one
# machine, for the multi-node end-to-end tests. No systemd; run as root. Idempotent.
#
#   scripts/slurm-multinode.sh [start]  write the config, start slurmctld and one `slurmd -N NODE` per node,
#                                       wait until the controller answers and every node has registered and
#                                       is usable. Returns at once when all is up and the config is
#                                       unchanged; restarts the daemons (jobs kept) when it changed.
#   scripts/slurm-multinode.sh stop     cancel the cluster's jobs, stop the slurmd's and slurmctld (by pid).
#   scripts/slurm-multinode.sh status   daemons and nodes; exit 0 only when everything is up.
#
# It never touches the single-node Slurm of scripts/slurm.sh (/etc/slurm, ports 6817/6818): everything lives
# under $SLURM_MULTI_DIR (default /var/lib/jupyterhub-hpc-slurm-multi): etc/slurm.conf, state, spool, logs,
# pid files and the fake GPU devices. It shares the running munged (started here if it is down).
# Clients select this cluster with SLURM_CONF:
#   sudo -u USER -- env SLURM_CONF=/var/lib/jupyterhub-hpc-slurm-multi/etc/slurm.conf sbatch ...
#   (the spawner: c.HPCSpawner.scheduler_environment = {"SLURM_CONF": ".../etc/slurm.conf"})
#
# Accounting: slurmdbd with a private MariaDB (scripts/slurmdbd.sh, port PORT_BASE+2, database on +3),
# AccountingStorageEnforce=associations,limits,qos; accounts physics/chemistry, QoS normal/long/debug and the
# associations of hpcuser3 and hpcuser4 are created there.
# Layout: nodes cpu1..cpu3 and gpu1 (2 CPUs, 2000 MB each; slurmd ports PORT_BASE+84..+87); partitions
# `debug` (default, cpu[1-3]), `short` (cpu[1-3], MaxTime=00:01:00, so a walltime kill is quick), `gpu`
# (gpu1 with Gres=gpu:tesla:2: two clones of /dev/null, so slurmd sets CUDA_VISIBLE_DEVICES).
# The fake node names are what squeue reports as the job's host: they are added to /etc/hosts
# (127.0.0.1 cpu1 cpu2 cpu3 gpu1) so that the hub can reach a server on "gpu1".
#
# Environment knobs:
#   SLURM_MULTI_DIR        base directory (default /var/lib/jupyterhub-hpc-slurm-multi)
#   SLURM_MULTI_PORT_BASE  slurmctld port (default 7817); SlurmdPort is +1, the nodes +84..+87
#   SLURM_WAIT_S           how long to wait for the daemons (default 60)
set -euo pipefail

BASE=${SLURM_MULTI_DIR:-/var/lib/jupyterhub-hpc-slurm-multi}
PORT_BASE=${SLURM_MULTI_PORT_BASE:-7817}
WAIT_S=${SLURM_WAIT_S:-60}
CONF=$BASE/etc/slurm.conf
GRES=$BASE/etc/gres.conf
RUN=$BASE/run
LOGDIR=$BASE/log
CTLD_PID=$RUN/slurmctld.pid
NODES="cpu1 cpu2 cpu3 gpu1"
HOSTS_MARK="# jupyterhub-hpc slurm-multinode fake nodes"
HOST=$(hostname)
export SLURM_CONF=$CONF

log() { echo "[slurm-multinode.sh] $*" >&2; }
die() { log "ERROR: $*"; exit 1; }
# shared helpers: alive, stop_daemon, logtail, apt_install, start_munge (uses log and die above)
# shellcheck source=lib/daemons.sh
. "$(dirname "$(readlink -f "${BASH_SOURCE[0]}")")/lib/daemons.sh"

[ "$(id -u)" = 0 ] || die "must run as root"

slurmd_pid() { echo "$RUN/slurmd-$1.pid"; }

# ---------------------------------------------------------------- install, munge
install_packages() {
  local missing=() c
  for c in slurmctld slurmd sbatch scontrol munged munge; do
    command -v "$c" >/dev/null 2>&1 || missing+=("$c")
  done
  [ ${#missing[@]} = 0 ] && return 0
  log "installing slurm-wlm munge (missing: ${missing[*]})"
  apt_install slurm-wlm munge
}

# ---------------------------------------------------------------- config
render_conf() {
  cat <<EOF
# Written by jupyterhub-hpc scripts/slurm-multinode.sh — private multi-node test cluster. Do not edit.
ClusterName=multi
SlurmctldHost=$HOST
AuthType=auth/munge
SlurmUser=root
SlurmctldPort=$PORT_BASE
SlurmdPort=$((PORT_BASE + 1))
MpiDefault=none
ProctrackType=proctrack/linuxproc
TaskPlugin=task/none
SchedulerType=sched/backfill
SchedulerParameters=bf_interval=1
SelectType=select/cons_tres
SelectTypeParameters=CR_Core_Memory
SlurmdParameters=config_overrides
DefMemPerCPU=100
EnforcePartLimits=ALL
MinJobAge=300
KillWait=5
ReturnToService=2
AccountingStorageType=accounting_storage/slurmdbd
AccountingStorageHost=localhost
AccountingStoragePort=$((PORT_BASE + 2))
AccountingStorageEnforce=associations,limits,qos
JobAcctGatherType=jobacct_gather/none
JobCompType=jobcomp/none
StateSaveLocation=$BASE/state
SlurmdSpoolDir=$BASE/spool/%n
SlurmctldLogFile=$LOGDIR/slurmctld.log
SlurmdLogFile=$LOGDIR/slurmd-%n.log
SlurmctldPidFile=$CTLD_PID
SlurmdPidFile=$RUN/slurmd-%n.pid
GresTypes=gpu
NodeName=cpu[1-3] NodeHostname=$HOST Port=[$((PORT_BASE + 84))-$((PORT_BASE + 86))] CPUs=2 RealMemory=2000 State=UNKNOWN
NodeName=gpu1 NodeHostname=$HOST Port=$((PORT_BASE + 87)) CPUs=2 RealMemory=2000 Gres=gpu:tesla:2 State=UNKNOWN
PartitionName=debug Nodes=cpu[1-3] Default=YES MaxTime=INFINITE State=UP
PartitionName=short Nodes=cpu[1-3] MaxTime=00:01:00 DefaultTime=00:01:00 State=UP
PartitionName=gpu Nodes=gpu1 MaxTime=04:00:00 State=UP
EOF
}

# write_file PATH TEXT: returns 0 if it changed, 1 if it was already up to date
write_file() {
  if [ -f "$1" ] && [ "$(cat "$1")" = "$2" ]; then return 1; fi
  printf '%s\n' "$2" > "$1.new"
  chmod 0644 "$1.new"
  mv "$1.new" "$1"
  log "wrote $1"
  return 0
}

make_dirs() {
  install -d -m 0755 "$BASE" "$BASE/etc" "$RUN" "$LOGDIR" "$BASE/dev"
  install -d -m 0700 "$BASE/state"
  local n; for n in $NODES; do install -d -m 0755 "$BASE/spool/$n"; done
  # gres/gpu needs character devices (plain files are refused and no CUDA_VISIBLE_DEVICES is set)
  local g; for g in 0 1; do
    [ -c "$BASE/dev/fakegpu$g" ] || { rm -f "$BASE/dev/fakegpu$g"; mknod -m 666 "$BASE/dev/fakegpu$g" c 1 3; }
  done
}

# The fake node names are what squeue reports as BatchHost: the hub connects to them.
ensure_hosts() {
  local n missing=0
  for n in $NODES; do
    [ "$(getent ahostsv4 "$n" 2>/dev/null | awk 'NR==1{print $1}')" = 127.0.0.1 ] || missing=1
  done
  [ $missing = 0 ] && return 0
  grep -qF "$HOSTS_MARK" /etc/hosts && die "/etc/hosts has '$HOSTS_MARK' but $NODES do not all resolve"
  log "adding '127.0.0.1 $NODES' to /etc/hosts"
  printf '127.0.0.1 %s %s\n' "$NODES" "$HOSTS_MARK" >> /etc/hosts
}

# ---------------------------------------------------------------- daemons
ctld_up() { scontrol ping 2>/dev/null | grep -q 'is UP'; }

start_ctld() {
  if ! alive "$CTLD_PID" slurmctld "$CONF" >/dev/null; then
    log "starting slurmctld (port $PORT_BASE)"
    rm -f "$CTLD_PID"
    slurmctld -f "$CONF" || { logtail "$LOGDIR/slurmctld.log"; die "slurmctld failed to start"; }
  fi
  local end=$((SECONDS + WAIT_S))
  until ctld_up; do
    if [ $SECONDS -ge $end ] || died "$CTLD_PID" slurmctld "$CONF"; then
      scontrol ping >&2 || true
      logtail "$LOGDIR/slurmctld.log"
      die "slurmctld is not answering (scontrol ping)"
    fi
    sleep 0.2
  done
}

# epoch seconds of a node's SlurmdStartTime (0 if unknown)
slurmd_start_epoch() {
  local t
  t=$(scontrol show node "$1" 2>/dev/null | grep -o 'SlurmdStartTime=[^ ]*' | cut -d= -f2)
  case "$t" in ''|None|Unknown) echo 0 ;; *) date -d "$t" +%s 2>/dev/null || echo 0 ;; esac
}

node_state() { sinfo --noheader --Node --nodes="$1" --format=%t 2>/dev/null | head -n1; }

start_nodes() {
  local n started="" since
  since=$(date +%s)
  for n in $NODES; do
    if ! alive "$(slurmd_pid "$n")" slurmd "$CONF" >/dev/null; then
      log "starting slurmd -N $n"
      slurmd -f "$CONF" -N "$n" || { logtail "$LOGDIR/slurmd-$n.log"; die "slurmd $n failed to start"; }
      started="$started $n"
    fi
  done
  # Wait until every node is usable; a node whose slurmd was just started must also have registered
  # (a slurmctld restored from its state file shows it idle before that).
  local end=$((SECONDS + WAIT_S)) st ready
  while :; do
    ready=1
    for n in $NODES; do
      st=$(node_state "$n")
      case "$st" in
        idle|mix|alloc|comp)
          if [[ " $started " == *" $n "* ]] && [ "$(slurmd_start_epoch "$n")" -lt $((since - 1)) ]; then
            ready=0
          fi ;;
        down|drain|drng|fail|inval|down\*|drain\*|drng\*|fail\*|inval\*)
          ready=0; scontrol update nodename="$n" state=resume >/dev/null 2>&1 || true ;;
        *) ready=0 ;;
      esac
      alive "$(slurmd_pid "$n")" slurmd "$CONF" >/dev/null || {
        logtail "$LOGDIR/slurmd-$n.log"; die "slurmd $n is not running"; }
    done
    [ $ready = 1 ] && return 0
    if [ $SECONDS -ge $end ]; then
      sinfo -N -l >&2 || true
      for n in $NODES; do logtail "$LOGDIR/slurmd-$n.log"; done
      logtail "$LOGDIR/slurmctld.log"
      die "nodes are not ready"
    fi
    sleep 0.3
  done
}

stop_nodes() {
  local n
  for n in $NODES; do stop_daemon "$(slurmd_pid "$n")" slurmd "$CONF" & done
  wait
}

# ---------------------------------------------------------------- commands
do_start() {
  local t0=$SECONDS changed=0
  install_packages
  make_dirs
  ensure_hosts
  write_file "$CONF" "$(render_conf)" && changed=1
  write_file "$GRES" "NodeName=gpu1 Name=gpu Type=tesla File=$BASE/dev/fakegpu[0-1]" && changed=1
  start_munge
  "$(dirname "$(readlink -f "$0")")/slurmdbd.sh" start   # accounting: before slurmctld (it enforces associations)
  if [ $changed = 1 ] && { alive "$CTLD_PID" slurmctld "$CONF" >/dev/null || [ -n "$(running_nodes)" ]; }; then
    log "config changed: restarting slurmctld and the slurmd's"
    stop_nodes
    stop_daemon "$CTLD_PID" slurmctld "$CONF"
  fi
  start_ctld
  start_nodes
  log "multi-node Slurm is up in $((SECONDS - t0)) s: export SLURM_CONF=$CONF"
}

running_nodes() {
  local n; for n in $NODES; do alive "$(slurmd_pid "$n")" slurmd "$CONF" >/dev/null && echo "$n"; done; return 0
}

do_stop() {
  if alive "$CTLD_PID" slurmctld "$CONF" >/dev/null && ctld_up; then
    local jobs
    jobs=$(squeue --noheader --format=%i 2>/dev/null | tr '\n' ' ')
    if [ -n "${jobs// /}" ]; then
      log "cancelling jobs $jobs"
      # shellcheck disable=SC2086
      scancel $jobs 2>/dev/null || true
      sleep 1
    fi
  fi
  stop_nodes
  stop_daemon "$CTLD_PID" slurmctld "$CONF"
  "$(dirname "$(readlink -f "$0")")/slurmdbd.sh" stop
}

do_status() {
  local rc=0 p n
  if p=$(alive "$CTLD_PID" slurmctld "$CONF"); then echo "slurmctld: running (pid $p)"; else echo "slurmctld: down"; rc=3; fi
  for n in $NODES; do
    if p=$(alive "$(slurmd_pid "$n")" slurmd "$CONF"); then echo "slurmd $n: running (pid $p)"; else echo "slurmd $n: down"; rc=3; fi
  done
  if ctld_up; then sinfo --Node --long 2>&1 || true; else echo "scontrol ping: not UP"; rc=3; fi
  echo "SLURM_CONF=$CONF"
  return $rc
}

case "${1:-start}" in
  start) do_start ;;
  stop) do_stop ;;
  status) do_status ;;
  -h|--help|help) sed -n '2,32p' "$0" ;;
  *) echo "usage: $0 [start|stop|status]" >&2; exit 2 ;;
esac
