# daemons.sh — shell helpers shared by scripts/slurm.sh, scripts/slurm-multinode.sh and
# scripts/slurmdbd.sh: daemons recognised by pid file, log tails, apt, munge. Sourced, never run.
# The sourcing script defines `log MESSAGE` and `die MESSAGE` first.

MUNGE_PID=/run/munge/munged.pid
apt_updated=0

# alive PIDFILE COMM [CMDLINE_PART] -> prints the pid and succeeds if that process runs: its name
# is COMM and, if given, its command line contains CMDLINE_PART (two clusters' daemons share names).
alive() {
  local p
  [ -r "$1" ] || return 1
  p=$(tr -dc 0-9 < "$1" 2>/dev/null) || return 1
  [ -n "$p" ] && [ "$(cat "/proc/$p/comm" 2>/dev/null)" = "$2" ] || return 1
  if [ -n "${3:-}" ]; then
    [[ "$(tr '\0' ' ' < "/proc/$p/cmdline" 2>/dev/null)" == *"$3"* ]] || return 1
  fi
  echo "$p"
}

# died PIDFILE COMM [ARG]: the daemon started after PIDFILE was removed has written it, and that
# process is not alive (a daemon forks before it writes its pid file: until then, no verdict; a
# stale file from the previous run would say "dead" at once)
died() {
  [ -s "$1" ] && ! alive "$@" >/dev/null
}

# stop_daemon PIDFILE COMM [CMDLINE_PART]: SIGTERM, wait up to 30 s, then SIGKILL; removes PIDFILE.
# The process is recognised by `alive`, or by the function named in ALIVE (e.g. one that also checks
# the process's root directory: `ALIVE=root_alive stop_daemon ...`).
stop_daemon() {
  local p i
  p=$("${ALIVE:-alive}" "$@") || { rm -f "$1"; return 0; }
  log "stopping $2 (pid $p)"
  kill "$p" 2>/dev/null || true
  for i in $(seq 1 300); do
    [ -d "/proc/$p" ] || { rm -f "$1"; return 0; }
    sleep 0.1
  done
  log "$2 (pid $p) ignored SIGTERM; killing"
  kill -9 "$p" 2>/dev/null || true
  for i in $(seq 1 50); do [ -d "/proc/$p" ] || break; sleep 0.1; done
  rm -f "$1"
}

# logtail FILE...: the end of each readable log, on stderr (for error messages)
logtail() {
  local f
  for f in "$@"; do [ -r "$f" ] && { echo "--- tail $f" >&2; tail -n 20 "$f" >&2; }; done
  return 0
}

# apt_install PACKAGE...: quietly, without recommends; `apt-get update` first when there are no
# package lists, or once more when the install fails with old lists
apt_install() {
  export DEBIAN_FRONTEND=noninteractive
  if ! compgen -G '/var/lib/apt/lists/*_Packages*' >/dev/null; then
    apt-get update -qq; apt_updated=1
  fi
  if ! apt-get install -y -qq --no-install-recommends "$@" >/dev/null; then
    [ $apt_updated = 1 ] && die "apt-get install $* failed"
    apt-get update -qq; apt_updated=1
    apt-get install -y -qq --no-install-recommends "$@" >/dev/null || die "apt-get install $* failed"
  fi
}

# start_munge: the machine's one munged (both clusters use it), with a key, started if it is down;
# returns once a credential round-trips
start_munge() {
  if ! alive "$MUNGE_PID" munged >/dev/null; then
    install -d -m 0700 -o munge -g munge /etc/munge
    install -d -m 0711 -o munge -g munge /var/lib/munge
    install -d -m 0700 -o munge -g munge /var/log/munge
    install -d -m 0755 -o munge -g munge /run/munge
    if [ ! -s /etc/munge/munge.key ]; then
      log "creating /etc/munge/munge.key"
      if command -v mungekey >/dev/null 2>&1; then
        mungekey --create --keyfile=/etc/munge/munge.key --force
      else
        dd if=/dev/urandom of=/etc/munge/munge.key bs=1024 count=1 status=none
      fi
    fi
    chown munge:munge /etc/munge/munge.key
    chmod 0400 /etc/munge/munge.key
    rm -f /run/munge/munge.socket.2 /run/munge/munge.socket.2.lock "$MUNGE_PID"
    log "starting munged"
    runuser -u munge -- /usr/sbin/munged --pid-file="$MUNGE_PID" \
      || { logtail /var/log/munge/munged.log; die "munged failed to start"; }
  fi
  local i
  for i in $(seq 1 50); do
    munge -n 2>/dev/null | unmunge >/dev/null 2>&1 && return 0
    sleep 0.1
  done
  logtail /var/log/munge/munged.log
  die "munge -n | unmunge fails"
}
