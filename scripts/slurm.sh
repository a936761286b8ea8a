#!/usr/bin/env bash
# slurm.sh — install and run a single-node Slurm (Debian 12: Slurm 22.05) without systemd, as root.
#
#   scripts/slurm.sh [start]    install if needed, write /etc/slurm/slurm.conf, start munged,
#                               slurmctld and slurmd, wait until the controller answers and the
#                               node is idle. Idempotent: returns at once when all is up and the
#                               config is unchanged; restarts the Slurm daemons if it changed.
#   scripts/slurm.sh stop       stop slurmd, slurmctld and munged (by pid). Jobs are not cancelled.
#   scripts/slurm.sh status     show the daemons and the node; exit 0 only if everything is up.
#   scripts/slurm.sh stop-ctld  stop only slurmctld (simulates a scheduler outage); jobs keep running.
#   scripts/slurm.sh start-ctld start slurmctld again and wait until `scontrol ping` says UP.
#
# The config lives in the default place, so plain `sudo -u USER sbatch ...` works without SLURM_CONF.
# Package postinst scripts never start daemons here (policy-rc.d exits 101, and there is no init
# system), so this script starts and supervises them itself, found by pidfile + /proc/PID/comm.
#
# Environment knobs:
#   SLURM_NODE_CPUS   CPUs declared for the node (default max(8, nproc)); more than the machine has
#                     is fine (SlurmdParameters=config_overrides) and lets several 1-CPU jobs share it.
#   SLURM_NODE_MEM_MB RealMemory in MB (default min(MemTotal - 1024, 8000), at least 1000).
#   SLURM_WAIT_S      how long to wait for the daemons (default 60).
set -euo pipefail
unset SLURM_CONF

CONF=/etc/slurm/slurm.conf
RUN=/run/slurm
CTLD_STATE=/var/spool/slurmctld
SLURMD_SPOOL=/var/spool/slurmd
LOGDIR=/var/log/slurm
CTLD_PID=$RUN/slurmctld.pid
SLURMD_PID=$RUN/slurmd.pid
WAIT_S=${SLURM_WAIT_S:-60}
HOST=$(hostname)

log() { echo "[slurm.sh] $*" >&2; }
die() { log "ERROR: $*"; exit 1; }
# shared helpers: alive, stop_daemon, logtail, apt_install, start_munge (uses log and die above)
# shellcheck source=lib/daemons.sh
. "$(dirname "$(readlink -f "${BASH_SOURCE[0]}")")/lib/daemons.sh"

[ "$(id -u)" = 0 ] || die "must run as root"

# ---------------------------------------------------------------- install
install_packages() {
  local missing=() c
  for c in slurmctld slurmd sbatch scontrol munged munge unmunge sudo; do
    command -v "$c" >/dev/null 2>&1 || missing+=("$c")
  done
  [ ${#missing[@]} = 0 ] && return 0
  log "installing slurm-wlm munge sudo (missing: ${missing[*]})"
  apt_install slurm-wlm munge sudo
}

# ---------------------------------------------------------------- config
node_cpus() {
  local n; n=$(nproc)
  echo "${SLURM_NODE_CPUS:-$(( n > 8 ? n : 8 ))}"
}

node_mem() {
  local total m
  total=$(awk '/^MemTotal:/{print int($2/1024)}' /proc/meminfo)
  m=$(( total - 1024 )); [ $m -gt 8000 ] && m=8000; [ $m -lt 1000 ] && m=1000
  echo "${SLURM_NODE_MEM_MB:-$m}"
}

render_conf() {
  cat <<EOF
# Written by jupyterhub-hpc scripts/slurm.sh — single-node test cluster. Do not edit by hand.
ClusterName=hpctest
SlurmctldHost=$HOST
AuthType=auth/munge
SlurmUser=root
SlurmctldPort=6817
SlurmdPort=6818
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
AccountingStorageType=accounting_storage/none
JobAcctGatherType=jobacct_gather/none
JobCompType=jobcomp/none
StateSaveLocation=$CTLD_STATE
SlurmdSpoolDir=$SLURMD_SPOOL
SlurmctldLogFile=$LOGDIR/slurmctld.log
SlurmdLogFile=$LOGDIR/slurmd.log
SlurmctldPidFile=$CTLD_PID
SlurmdPidFile=$SLURMD_PID
GresTypes=gpu,nvme
NodeName=$HOST CPUs=$(node_cpus) RealMemory=$(node_mem) Gres=gpu:tesla:2,nvme:100 State=UNKNOWN
PartitionName=debug Nodes=$HOST Default=YES MaxTime=INFINITE State=UP
PartitionName=short Nodes=$HOST MaxTime=00:05:00 State=UP
PartitionName=gpu Nodes=$HOST MaxTime=04:00:00 State=UP
EOF
}

# Two fake GPUs: gres/gpu needs character devices (clones of /dev/null do), else slurmd
# drops them and sets no CUDA_VISIBLE_DEVICES. And a generic resource that is only a count
# (100 units of "nvme", as sites count local scratch), for jobs asking for --gres beyond GPUs.
FAKE_GPU_DIR=/var/lib/jupyterhub-hpc-slurm
write_gres() {
  install -d -m 0755 "$FAKE_GPU_DIR"
  local g; for g in 0 1; do
    [ -c "$FAKE_GPU_DIR/fakegpu$g" ] || { rm -f "$FAKE_GPU_DIR/fakegpu$g"; mknod -m 666 "$FAKE_GPU_DIR/fakegpu$g" c 1 3; }
  done
  local want
  want="NodeName=$HOST Name=gpu Type=tesla File=$FAKE_GPU_DIR/fakegpu[0-1]
NodeName=$HOST Name=nvme Count=100"
  if [ "$(cat /etc/slurm/gres.conf 2>/dev/null)" != "$want" ]; then
    printf '%s\n' "$want" > /etc/slurm/gres.conf
    chmod 0644 /etc/slurm/gres.conf
    log "wrote /etc/slurm/gres.conf"
    return 0
  fi
  return 1
}

# write_conf: returns 0 if the file changed, 1 if it was already up to date.
write_conf() {
  install -d -m 0755 /etc/slurm
  local new; new=$(render_conf)
  if [ -f "$CONF" ] && [ "$(cat "$CONF")" = "$new" ]; then return 1; fi
  printf '%s\n' "$new" > "$CONF.new"
  chmod 0644 "$CONF.new"
  mv "$CONF.new" "$CONF"
  log "wrote $CONF"
  return 0
}

make_dirs() {
  install -d -m 0755 "$RUN" "$LOGDIR" "$SLURMD_SPOOL"
  install -d -m 0700 "$CTLD_STATE"
}

ensure_hostname_resolves() {
  getent hosts "$HOST" >/dev/null 2>&1 && return 0
  log "adding '127.0.0.1 $HOST' to /etc/hosts (hostname did not resolve)"
  echo "127.0.0.1 $HOST" >> /etc/hosts
}

# ---------------------------------------------------------------- slurmctld / slurmd
ctld_up() { scontrol ping 2>/dev/null | grep -q 'is UP'; }

start_ctld() {
  if ! alive "$CTLD_PID" slurmctld >/dev/null; then
    make_dirs
    log "starting slurmctld"
    rm -f "$CTLD_PID"
    slurmctld || { logtail "$LOGDIR/slurmctld.log"; die "slurmctld failed to start"; }
  fi
  local end=$((SECONDS + WAIT_S))
  until ctld_up; do
    if [ $SECONDS -ge $end ] || died "$CTLD_PID" slurmctld; then
      scontrol ping >&2 || true
      logtail "$LOGDIR/slurmctld.log"
      die "slurmctld is not answering (scontrol ping)"
    fi
    sleep 0.2
  done
}

node_state() { sinfo --noheader --nodes="$HOST" --Node --format=%t 2>/dev/null | head -n1; }

# slurmd_start_epoch: the node's SlurmdStartTime as epoch seconds (0 if unknown).
slurmd_start_epoch() {
  local t
  t=$(scontrol show node "$HOST" 2>/dev/null | grep -o 'SlurmdStartTime=[^ ]*' | cut -d= -f2)
  case "$t" in ''|None|Unknown) echo 0 ;; *) date -d "$t" +%s 2>/dev/null || echo 0 ;; esac
}

start_slurmd() {
  local since started=0
  since=$(date +%s)
  if ! alive "$SLURMD_PID" slurmd >/dev/null; then
    make_dirs
    log "starting slurmd"
    rm -f "$SLURMD_PID"
    slurmd || { logtail "$LOGDIR/slurmd.log"; die "slurmd failed to start"; }
    started=1
  fi
  # Wait until the node is usable. If slurmd was just started, also wait until it has registered
  # (a slurmctld restored from its state file may show the node idle before that).
  local end=$((SECONDS + WAIT_S)) st
  while :; do
    st=$(node_state)
    case "$st" in
      idle|mix|alloc|comp)
        if [ $started = 0 ] || [ "$(slurmd_start_epoch)" -ge $((since - 1)) ]; then return 0; fi ;;
      down|drain|drng|fail|inval|down\*|drain\*|drng\*|fail\*)
        scontrol update nodename="$HOST" state=resume >/dev/null 2>&1 || true ;;
    esac
    if [ $SECONDS -ge $end ] || died "$SLURMD_PID" slurmd; then
      sinfo -N -l >&2 || true
      scontrol show node "$HOST" >&2 || true
      logtail "$LOGDIR/slurmd.log" "$LOGDIR/slurmctld.log"
      die "node $HOST is not ready (state '${st:-?}')"
    fi
    sleep 0.3
  done
}

# ---------------------------------------------------------------- commands
do_start() {
  local t0=$SECONDS changed=0
  install_packages
  ensure_hostname_resolves
  write_conf && changed=1
  write_gres && changed=1
  start_munge
  if [ $changed = 1 ]; then
    if alive "$CTLD_PID" slurmctld >/dev/null || alive "$SLURMD_PID" slurmd >/dev/null; then
      log "config changed: restarting slurmctld and slurmd"
      stop_daemon "$SLURMD_PID" slurmd
      stop_daemon "$CTLD_PID" slurmctld
    fi
  fi
  start_ctld
  start_slurmd
  log "Slurm is up ($(node_state)) in $((SECONDS - t0)) s"
}

do_stop() {
  stop_daemon "$SLURMD_PID" slurmd
  stop_daemon "$CTLD_PID" slurmctld
  stop_daemon "$MUNGE_PID" munged
}

do_status() {
  local rc=0 d f p
  for d in munged:$MUNGE_PID slurmctld:$CTLD_PID slurmd:$SLURMD_PID; do
    f=${d#*:}; d=${d%%:*}
    if p=$(alive "$f" "$d"); then echo "$d: running (pid $p)"; else echo "$d: down"; rc=3; fi
  done
  if ctld_up; then scontrol ping; sinfo --Node --long 2>&1 || true; else echo "scontrol ping: not UP"; rc=3; fi
  return $rc
}

do_stop_ctld() {
  stop_daemon "$CTLD_PID" slurmctld
}

do_start_ctld() {
  start_munge
  start_ctld
  log "slurmctld is up"
}

case "${1:-start}" in
  start) do_start ;;
  stop) do_stop ;;
  status) do_status ;;
  stop-ctld) do_stop_ctld ;;
  start-ctld) do_start_ctld ;;
  -h|--help|help) sed -n '2,21p' "$0" ;;
  *) echo "usage: $0 [start|stop|status|stop-ctld|start-ctld]" >&2; exit 2 ;;
esac
