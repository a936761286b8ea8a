#!/usr/bin/env bash
# slurm24.sh — a THIRD, private Slurm cluster ("hpc24") running Debian 13's Slurm 24.11 from a Debian 13
# (trixie) root on this Debian 12 machine, for the live end-to-end suite on a Slurm sites run
# (JUPYTERHUB_HPC_TEST_SLURM=24.11 pytest tests/e2e/test_slurm_e2e.py). No systemd; run as root. Idempotent.
#
#   scripts/slurm24.sh [start]   build the root if it is missing or incomplete (debootstrap --variant=minbase
#                                trixie from deb.debian.org, then slurm-wlm munge python3 python3-venv inside;
#                                about 1.5 min), the job venv inside it, the host-side client wrappers; mount
#                                /proc /dev /home into it, start its munged, slurmctld and two `slurmd -N`,
#                                wait until the controller answers and both nodes are usable. Returns at once
#                                when all is up and nothing changed.
#   scripts/slurm24.sh stop      cancel the cluster's jobs, stop its slurmd's, slurmctld and munged (by pid
#                                file, each checked to be a process of that name chrooted into the root),
#                                unmount. The root itself stays (delete it to rebuild: `rm -rf $SLURM24_ROOT`).
#   scripts/slurm24.sh status    daemons and nodes; exit 0 only when everything is up.
#   scripts/slurm24.sh stop-ctld / start-ctld   only its slurmctld (a scheduler outage; jobs keep running)
#   scripts/slurm24.sh env       print the settings a hub uses for this cluster (shell assignments)
#
# Nothing here can be mistaken for the 22.05 cluster of scripts/slurm.sh (or that of slurm-multinode.sh):
# ClusterName=hpc24, ports $SLURM24_PORT_BASE (slurmctld, default 8817), +1 (SlurmdPort) and +2, +3 (nodes
# s24n1, s24n2), job ids from 2400001 (the jobs' output files never meet the other clusters'), its own
# munged (its own key, socket $ROOT/run/munge/munge.socket.2) and its own config, state, spool, log and pid
# files, all inside the root. Its daemons run chrooted; they are told apart from the host's ones by
# /proc/PID/root.
#
# The one slurm.conf ($ROOT/etc/slurm/slurm.conf) is valid inside the root (where the daemons read it at
# /etc/slurm/slurm.conf) and on the host (clients: SLURM_CONF=$ROOT/etc/slurm/slurm.conf): it names every
# path with the $ROOT prefix (PluginDir, AuthInfo socket, state...), and inside the root $ROOT is a symbolic
# link to / .
#
# The hub's commands: $SLURM24_BIN/{sbatch,squeue,scancel,sacct,sinfo,scontrol,sacctmgr} are wrappers that
# run the root's programs on the host through the root's dynamic loader and libraries (no chroot, no
# privilege). Without SLURM_CONF they read the host's /etc/slurm/slurm.conf and fail (the 22.05 plugins are
# refused): a hub selects this cluster with exactly its own settings
#   c.HPCSpawner.scheduler_commands = {"sbatch": "$SLURM24_BIN/sbatch", ...}
#   c.HPCSpawner.scheduler_environment = {"SLURM_CONF": "$ROOT/etc/slurm/slurm.conf"}
#   c.HPCSpawner.path_prepend = ["/opt/jupyterhub-hpc/venv-slurm24/bin"]   # the job's venv, inside the root
# (tests/e2e/slurm24_hub.py; scripts/test-sudoers.sh generates the sudo rules from it).
# Jobs run inside the root: its Python 3, and a venv at /opt/jupyterhub-hpc/venv-slurm24 (inside) with
# JupyterHub $SLURM24_JUPYTERHUB and this checkout's package, reinstalled when the checkout's source changed.
#
# The host's accounts with ids 1000-65533 (the test users of scripts/test-users.sh, the hub account) are
# copied into the root at each start: start it after test-users.sh (as `make services` does).
#
# Environment knobs:
#   SLURM24_ROOT       the root (default /opt/jupyterhub-hpc/slurm24-root)
#   SLURM24_BIN        the host-side wrappers (default /opt/jupyterhub-hpc/slurm24-bin)
#   SLURM24_PORT_BASE  slurmctld port (default 8817); SlurmdPort +1, the nodes +2, +3
#   SLURM24_MIRROR     Debian mirror (default http://deb.debian.org/debian)
#   SLURM24_JUPYTERHUB pip requirement of the job venv's JupyterHub (default: the major version of
#                      $VENV's (default /opt/jupyterhub-hpc/venv), else "jupyterhub>=5.3")
#   SLURM_WAIT_S       how long to wait for the daemons (default 60)
set -euo pipefail
unset SLURM_CONF

ROOT=${SLURM24_ROOT:-/opt/jupyterhub-hpc/slurm24-root}
BIN=${SLURM24_BIN:-/opt/jupyterhub-hpc/slurm24-bin}
PORT_BASE=${SLURM24_PORT_BASE:-8817}
MIRROR=${SLURM24_MIRROR:-http://deb.debian.org/debian}
WAIT_S=${SLURM_WAIT_S:-60}
SRC=$(readlink -f "$(dirname "$(readlink -f "${BASH_SOURCE[0]}")")/..")
JOB_VENV=/opt/jupyterhub-hpc/venv-slurm24          # inside the root
CONF=$ROOT/etc/slurm/slurm.conf
RUN=$ROOT/run/slurm
LOGDIR=$ROOT/var/log/slurm
CTLD_PID=$RUN/slurmctld.pid
MUNGE_PID_IN=/run/munge/munged.pid                 # inside the root
MUNGE_SOCKET=$ROOT/run/munge/munge.socket.2
NODES="s24n1 s24n2"
HOSTS_MARK="# jupyterhub-hpc slurm24 nodes"
HOST=$(hostname)
ROOT_PACKAGES="slurm-wlm munge python3 python3-venv ca-certificates"
COMPLETE=$ROOT/.jupyterhub-hpc-root-complete
CLIENTS="sbatch squeue scancel sacct sinfo scontrol sacctmgr srun"

log() { echo "[slurm24.sh] $*" >&2; }
die() { log "ERROR: $*"; exit 1; }
# shared helpers: logtail, stop_daemon, apt_install (use log and die above)
# shellcheck source=lib/daemons.sh
. "$(dirname "$(readlink -f "${BASH_SOURCE[0]}")")/lib/daemons.sh"

[ "$(id -u)" = 0 ] || die "must run as root"

# in_root CMD...: CMD chrooted into the root, with a clean environment
in_root() {
  chroot "$ROOT" /usr/bin/env -i PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin \
    HOME=/root LANG=C.UTF-8 "$@"
}

# root_alive PIDFILE COMM -> prints the pid and succeeds if that process runs, is named COMM and is
# chrooted into $ROOT (the host's munged/slurmctld/slurmd have the same names)
root_alive() {
  local p
  [ -r "$1" ] || return 1
  p=$(tr -dc 0-9 < "$1" 2>/dev/null) || return 1
  [ -n "$p" ] && [ "$(cat "/proc/$p/comm" 2>/dev/null)" = "$2" ] || return 1
  [ "$(readlink "/proc/$p/root" 2>/dev/null)" = "$ROOT" ] || return 1
  echo "$p"
}

# root_stop PIDFILE COMM: SIGTERM (SIGKILL after 30 s) the root's daemon, if it runs; removes PIDFILE
root_stop() { ALIVE=root_alive stop_daemon "$1" "$2"; }

# the clients through the host-side wrappers, against this cluster only
s24() { local c=$1; shift; SLURM_CONF=$CONF "$BIN/$c" "$@"; }

# ---------------------------------------------------------------- the root
is_mounted() { awk -v m="$1" '$2 == m {found=1} END {exit !found}' /proc/mounts; }

mount_binds() {
  local d
  for d in proc dev home; do
    install -d "$ROOT/$d"
    is_mounted "$ROOT/$d" && continue
    case $d in
      proc) mount -t proc proc "$ROOT/proc" 2>/dev/null || mount --bind /proc "$ROOT/proc" ;;
      *) mount --bind "/$d" "$ROOT/$d" ;;
    esac
  done
}

umount_binds() {
  local r=$1 d
  for d in home dev proc; do
    is_mounted "$r/$d" && { umount "$r/$d" 2>/dev/null || umount -l "$r/$d"; }
  done
  return 0
}

build_root() {
  [ -f "$COMPLETE" ] && [ "$(cat "$COMPLETE")" = "$ROOT_PACKAGES" ] && return 0
  local t0=$SECONDS new=$ROOT.new
  command -v debootstrap >/dev/null 2>&1 || { log "installing debootstrap"; apt_install debootstrap; }
  [ -d "$ROOT" ] && ! [ -f "$COMPLETE" ] && {
    log "$ROOT is incomplete: rebuilding"
    stop_all; umount_binds "$ROOT"; rm -rf "$ROOT"
  }
  if [ ! -d "$ROOT" ]; then
    umount_binds "$new"; rm -rf "$new"
    install -d -m 0755 "$(dirname "$ROOT")"
    log "debootstrap --variant=minbase trixie $new ($MIRROR)"
    debootstrap --variant=minbase --keyring=/usr/share/keyrings/debian-archive-keyring.gpg \
      trixie "$new" "$MIRROR" > "$(dirname "$ROOT")/slurm24-debootstrap.log" 2>&1 \
      || { tail -n 20 "$(dirname "$ROOT")/slurm24-debootstrap.log" >&2; die "debootstrap failed"; }
    mv "$new" "$ROOT"
  fi
  # no init system, and no daemon may start from a package's postinst
  printf '#!/bin/sh\nexit 101\n' > "$ROOT/usr/sbin/policy-rc.d"; chmod 0755 "$ROOT/usr/sbin/policy-rc.d"
  cp -L /etc/resolv.conf "$ROOT/etc/resolv.conf"
  mount_binds
  log "apt-get install $ROOT_PACKAGES (in the root)"
  # shellcheck disable=SC2086
  in_root env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends $ROOT_PACKAGES \
    > "$(dirname "$ROOT")/slurm24-apt.log" 2>&1 \
    || { tail -n 20 "$(dirname "$ROOT")/slurm24-apt.log" >&2; die "apt-get install in the root failed"; }
  in_root apt-get clean
  # the root's own system accounts, kept apart from the test users copied in at each start
  cp "$ROOT/etc/passwd" "$ROOT/etc/passwd.root"; cp "$ROOT/etc/group" "$ROOT/etc/group.root"
  printf '%s\n' "$ROOT_PACKAGES" > "$COMPLETE"
  log "root built in $((SECONDS - t0)) s: $(in_root dpkg-query -W -f='${Version}' slurm-wlm)"
}

# the host's users and groups (ids 1000-65533: the test users, the hub account) in the root, so that slurmd
# there runs a job as the same uid the host's sbatch submitted it as
sync_accounts() {
  local f
  for f in passwd group; do
    { cat "$ROOT/etc/$f.root"; awk -F: '$3 >= 1000 && $3 < 65534' "/etc/$f"; } > "$ROOT/etc/$f.new"
    if cmp -s "$ROOT/etc/$f.new" "$ROOT/etc/$f"; then rm -f "$ROOT/etc/$f.new"; else
      chmod 0644 "$ROOT/etc/$f.new"; mv "$ROOT/etc/$f.new" "$ROOT/etc/$f"; fi
  done
  cp /etc/hosts "$ROOT/etc/hosts"
}

# $ROOT inside the root is / : every $ROOT/... path of the config means the same file on both sides
link_root_path() {
  install -d "$ROOT$(dirname "$ROOT")"
  [ "$(readlink "$ROOT$ROOT" 2>/dev/null)" = / ] || { rm -rf "${ROOT:?}$ROOT"; ln -s / "$ROOT$ROOT"; }
}

write_wrappers() {
  local c lib=$ROOT/usr/lib/x86_64-linux-gnu
  install -d -m 0755 "$BIN"
  for c in $CLIENTS; do
    write_file "$BIN/$c" "#!/bin/sh
# Written by jupyterhub-hpc scripts/slurm24.sh: Slurm 24.11's $c from $ROOT, run on the host through that
# root's dynamic loader and libraries. Needs SLURM_CONF=$CONF (without it: the host's 22.05 config, refused).
exec $ROOT/lib64/ld-linux-x86-64.so.2 --library-path $lib/slurm-wlm:$lib --argv0 $c $ROOT/usr/bin/$c \"\$@\"" 0755 || true
  done
}

jupyterhub_requirement() {
  if [ -n "${SLURM24_JUPYTERHUB:-}" ]; then echo "$SLURM24_JUPYTERHUB"; return; fi
  local v
  v=$("${VENV:-/opt/jupyterhub-hpc/venv}/bin/python" -c 'import jupyterhub; print(jupyterhub.__version__.split(".")[0])' \
    2>/dev/null || true)
  if [ -n "$v" ]; then echo "jupyterhub>=$v,<$((v + 1))"; else echo "jupyterhub>=5.3"; fi
}

# what the wheel is built from (pyproject.toml's packages, package data and data files): the server
# extension's config (jupyter-config/) and the prebuilt JupyterLab extension (make labextension)
WHEEL_INPUTS="pyproject.toml README.md src jupyter-config labextension/dist labextension/install.json"

# the job's venv: the root's python3, JupyterHub (singleuser) + JupyterLab, and this checkout's package
# (copied in and installed when its source differs from the one installed last)
build_job_venv() {
  local venv=$ROOT$JOB_VENV req stamp want
  req=$(jupyterhub_requirement)
  want=$( { echo "$req"; cd "$SRC" && find $WHEEL_INPUTS -type f ! -name '*.pyc' \
    ! -path '*egg-info*' -print0 | sort -z | xargs -0 sha256sum; } | sha256sum | cut -d' ' -f1)
  stamp=$venv/.jupyterhub-hpc-source
  [ -x "$venv/bin/jupyterhub-hpc-singleuser" ] && [ "$(cat "$stamp" 2>/dev/null)" = "$want" ] && return 0
  local t0=$SECONDS tmp=$ROOT/tmp/jupyterhub-hpc-src
  # the host's local certificate authorities (a site's, or a proxy's) are the root's too, for pip
  if compgen -G '/usr/local/share/ca-certificates/*' >/dev/null; then
    cp -r /usr/local/share/ca-certificates/. "$ROOT/usr/local/share/ca-certificates/"
    in_root update-ca-certificates >/dev/null 2>&1 || die "update-ca-certificates failed in the root"
  fi
  [ -x "$venv/bin/python" ] || { log "creating the job venv $JOB_VENV (in the root)"; in_root python3 -m venv "$JOB_VENV"; }
  rm -rf "$tmp"; install -d "$tmp"
  # shellcheck disable=SC2086
  (cd "$SRC" && tar -c --exclude='*.pyc' --exclude='__pycache__' --exclude='*.egg-info' $WHEEL_INPUTS) \
    | tar -x -C "$tmp"
  log "pip install '$req' jupyterlab and $SRC into the job venv"
  in_root "$JOB_VENV/bin/python" -m pip install --quiet --disable-pip-version-check --no-cache-dir \
    "$req" "jupyterlab>=4" \
    || die "pip install of JupyterHub into the job venv failed"
  in_root "$JOB_VENV/bin/python" -m pip install --quiet --disable-pip-version-check --no-cache-dir \
    --force-reinstall --no-deps /tmp/jupyterhub-hpc-src \
    || die "pip install of the package into the job venv failed"
  in_root "$JOB_VENV/bin/python" -m pip install --quiet --disable-pip-version-check --no-cache-dir \
    /tmp/jupyterhub-hpc-src || die "pip install of the package's dependencies into the job venv failed"
  rm -rf "$tmp"
  chmod -R a+rX "$venv"
  echo "$want" > "$stamp"
  log "job venv ready in $((SECONDS - t0)) s ($(in_root "$JOB_VENV/bin/python" -c \
    'import jupyterhub, sys; print("Python", sys.version.split()[0], "JupyterHub", jupyterhub.__version__)'))"
}

# ---------------------------------------------------------------- config
# write_file PATH TEXT [MODE]: returns 0 if it changed, 1 if it was already up to date
write_file() {
  if [ -f "$1" ] && [ "$(cat "$1")" = "$2" ]; then return 1; fi
  printf '%s\n' "$2" > "$1.new"
  chmod "${3:-0644}" "$1.new"
  mv "$1.new" "$1"
  log "wrote $1"
  return 0
}

render_conf() {
  cat <<EOF
# Written by jupyterhub-hpc scripts/slurm24.sh — the private Slurm 24.11 test cluster (Debian 13 root).
# Do not edit. Every path is under $ROOT, which is / inside the root (a symbolic link there).
ClusterName=hpc24
SlurmctldHost=$HOST
AuthType=auth/munge
AuthInfo=socket=$MUNGE_SOCKET
CredType=cred/munge
PluginDir=$ROOT/usr/lib/x86_64-linux-gnu/slurm-wlm
SlurmUser=root
SlurmctldPort=$PORT_BASE
SlurmdPort=$((PORT_BASE + 1))
FirstJobId=2400001
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
StateSaveLocation=$ROOT/var/spool/slurmctld
SlurmdSpoolDir=$ROOT/var/spool/slurmd/%n
SlurmctldLogFile=$LOGDIR/slurmctld.log
SlurmdLogFile=$LOGDIR/slurmd-%n.log
SlurmctldPidFile=$CTLD_PID
SlurmdPidFile=$RUN/slurmd-%n.pid
NodeName=s24n1 NodeHostname=$HOST NodeAddr=127.0.0.1 Port=$((PORT_BASE + 2)) CPUs=4 RealMemory=4000 State=UNKNOWN
NodeName=s24n2 NodeHostname=$HOST NodeAddr=127.0.0.1 Port=$((PORT_BASE + 3)) CPUs=4 RealMemory=4000 State=UNKNOWN
PartitionName=debug Nodes=s24n[1-2] Default=YES MaxTime=INFINITE State=UP
PartitionName=short Nodes=s24n[1-2] MaxTime=00:05:00 State=UP
EOF
}

make_dirs() {
  install -d -m 0755 "$ROOT/etc/slurm" "$RUN" "$LOGDIR"
  install -d -m 0700 "$ROOT/var/spool/slurmctld"
  local n; for n in $NODES; do install -d -m 0755 "$ROOT/var/spool/slurmd/$n"; done
  chmod 1777 "$ROOT/tmp"
}

# the node names are what squeue reports as BatchHost: the hub connects to them
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
munge_pid() { echo "$ROOT$MUNGE_PID_IN"; }

start_root_munge() {
  if ! root_alive "$(munge_pid)" munged >/dev/null; then
    in_root sh -c 'install -d -m 0700 -o munge -g munge /etc/munge /var/log/munge
      install -d -m 0711 -o munge -g munge /var/lib/munge
      install -d -m 0755 -o munge -g munge /run/munge
      [ -s /etc/munge/munge.key ] || mungekey --create --keyfile=/etc/munge/munge.key --force
      chown munge:munge /etc/munge/munge.key; chmod 0400 /etc/munge/munge.key
      rm -f /run/munge/munge.socket.2 /run/munge/munge.socket.2.lock /run/munge/munged.pid'
    log "starting munged (in the root: its own key and socket $MUNGE_SOCKET)"
    in_root runuser -u munge -- /usr/sbin/munged --pid-file="$MUNGE_PID_IN" \
      || { logtail "$ROOT/var/log/munge/munged.log"; die "munged failed to start"; }
  fi
  local i
  for i in $(seq 1 50); do
    in_root sh -c 'munge -n | unmunge' >/dev/null 2>&1 && return 0
    sleep 0.1
  done
  logtail "$ROOT/var/log/munge/munged.log"
  die "munge -n | unmunge fails in the root"
}

ctld_up() { s24 scontrol ping 2>/dev/null | grep -q 'is UP'; }

start_ctld() {
  if ! root_alive "$CTLD_PID" slurmctld >/dev/null; then
    make_dirs
    log "starting slurmctld (in the root, port $PORT_BASE)"
    in_root /usr/sbin/slurmctld || { logtail "$LOGDIR/slurmctld.log"; die "slurmctld failed to start"; }
  fi
  local end=$((SECONDS + WAIT_S))
  until ctld_up; do
    if [ $SECONDS -ge $end ] || { [ $SECONDS -ge $((end - WAIT_S + 10)) ] && ! root_alive "$CTLD_PID" slurmctld >/dev/null; }; then
      s24 scontrol ping >&2 || true
      logtail "$LOGDIR/slurmctld.log"
      die "slurmctld is not answering (scontrol ping)"
    fi
    sleep 0.2
  done
}

slurmd_pid() { echo "$RUN/slurmd-$1.pid"; }

slurmd_start_epoch() {
  local t
  t=$(s24 scontrol show node "$1" 2>/dev/null | grep -o 'SlurmdStartTime=[^ ]*' | cut -d= -f2)
  case "$t" in ''|None|Unknown) echo 0 ;; *) date -d "$t" +%s 2>/dev/null || echo 0 ;; esac
}

node_state() { s24 sinfo --noheader --Node --nodes="$1" --format=%t 2>/dev/null | head -n1; }

start_nodes() {
  local n started="" since
  since=$(date +%s)
  for n in $NODES; do
    if ! root_alive "$(slurmd_pid "$n")" slurmd >/dev/null; then
      log "starting slurmd -N $n (in the root)"
      in_root /usr/sbin/slurmd -N "$n" || { logtail "$LOGDIR/slurmd-$n.log"; die "slurmd $n failed to start"; }
      started="$started $n"
    fi
  done
  local end=$((SECONDS + WAIT_S)) st ready
  while :; do
    ready=1
    for n in $NODES; do
      st=$(node_state "$n")
      case "$st" in
        idle|mix|mixed|alloc|comp)
          if [[ " $started " == *" $n "* ]] && [ "$(slurmd_start_epoch "$n")" -lt $((since - 1)) ]; then
            ready=0
          fi ;;
        down|drain|drng|fail|inval|down\*|drain\*|drng\*|fail\*|inval\*)
          ready=0; s24 scontrol update nodename="$n" state=resume >/dev/null 2>&1 || true ;;
        *) ready=0 ;;
      esac
      # (a slurmd writes its pid file a moment after it has forked into the background)
      root_alive "$(slurmd_pid "$n")" slurmd >/dev/null || [ $SECONDS -lt $((end - WAIT_S + 10)) ] || {
        logtail "$LOGDIR/slurmd-$n.log"; die "slurmd $n is not running"; }
    done
    [ $ready = 1 ] && return 0
    if [ $SECONDS -ge $end ]; then
      s24 sinfo -N -l >&2 || true
      for n in $NODES; do logtail "$LOGDIR/slurmd-$n.log"; done
      logtail "$LOGDIR/slurmctld.log"
      die "nodes are not ready"
    fi
    sleep 0.3
  done
}

stop_nodes() {
  local n
  for n in $NODES; do root_stop "$(slurmd_pid "$n")" slurmd & done
  wait
}

running_daemons() {
  local n
  root_alive "$CTLD_PID" slurmctld >/dev/null && echo slurmctld
  for n in $NODES; do root_alive "$(slurmd_pid "$n")" slurmd >/dev/null && echo "slurmd-$n"; done
  return 0
}

stop_all() {
  if [ -x "$BIN/squeue" ] && root_alive "$CTLD_PID" slurmctld >/dev/null && ctld_up; then
    local jobs
    jobs=$(s24 squeue --noheader --format=%i 2>/dev/null | tr '\n' ' ')
    if [ -n "${jobs// /}" ]; then
      log "cancelling jobs $jobs"
      # shellcheck disable=SC2086
      s24 scancel $jobs 2>/dev/null || true
      sleep 1
    fi
  fi
  stop_nodes
  root_stop "$CTLD_PID" slurmctld
  root_stop "$(munge_pid)" munged
}

# ---------------------------------------------------------------- commands
do_start() {
  local t0=$SECONDS changed=0
  build_root
  mount_binds
  link_root_path
  ensure_hosts
  sync_accounts
  write_wrappers
  make_dirs
  write_file "$CONF" "$(render_conf)" && changed=1
  write_file "$ROOT/etc/slurm/cgroup.conf" "# Written by jupyterhub-hpc scripts/slurm24.sh: no usable cgroup mount here
CgroupPlugin=disabled" && changed=1
  build_job_venv
  start_root_munge
  if [ $changed = 1 ] && [ -n "$(running_daemons)" ]; then
    log "config changed: restarting slurmctld and the slurmd's"
    stop_nodes
    root_stop "$CTLD_PID" slurmctld
  fi
  start_ctld
  start_nodes
  log "Slurm $(s24 sinfo --version | cut -d' ' -f2) (hpc24) is up in $((SECONDS - t0)) s: SLURM_CONF=$CONF $BIN/squeue"
}

do_stop() {
  [ -d "$ROOT" ] || return 0
  stop_all
  umount_binds "$ROOT"
}

do_status() {
  local rc=0 p n
  if p=$(root_alive "$(munge_pid)" munged); then echo "munged (root): running (pid $p)"; else echo "munged (root): down"; rc=3; fi
  if p=$(root_alive "$CTLD_PID" slurmctld); then echo "slurmctld: running (pid $p)"; else echo "slurmctld: down"; rc=3; fi
  for n in $NODES; do
    if p=$(root_alive "$(slurmd_pid "$n")" slurmd); then echo "slurmd $n: running (pid $p)"; else echo "slurmd $n: down"; rc=3; fi
  done
  if [ -x "$BIN/scontrol" ] && ctld_up; then s24 sinfo --Node --long 2>&1 || true; else echo "scontrol ping: not UP"; rc=3; fi
  echo "SLURM_CONF=$CONF"
  return $rc
}

do_env() {
  echo "SLURM24_ROOT=$ROOT"
  echo "SLURM24_BIN=$BIN"
  echo "SLURM_CONF=$CONF"
  echo "SLURM24_JOB_VENV=$JOB_VENV"
}

case "${1:-start}" in
  start) do_start ;;
  stop) do_stop ;;
  status) do_status ;;
  stop-ctld) root_stop "$CTLD_PID" slurmctld ;;
  start-ctld) start_root_munge; start_ctld; log "slurmctld is up" ;;
  env) do_env ;;
  -h|--help|help) sed -n '2,51p' "$0" ;;
  *) echo "usage: $0 [start|stop|status|stop-ctld|start-ctld|env]" >&2; exit 2 ;;
esac
