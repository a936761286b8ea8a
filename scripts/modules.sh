#!/usr/bin/env bash
# modules.sh — the module systems of the tests: Debian 12's Lmod (installed) and Environment Modules
# 5.2 (Tmod, unpacked beside it: the two Debian packages conflict), and a small module tree for each.
#
#   scripts/modules.sh [install]  install lmod (apt), neutralise its login hook, unpack Tmod, write
#                                 the test trees. Idempotent; quick when everything is there.
#   scripts/modules.sh paths      print the facts the tests read, as KEY=VALUE lines.
#
# Debian's lmod adds /etc/profile.d/lmod.sh, which would put Lmod into every login shell on this
# machine (the job users' shells in all the other tests included). It is diverted away
# (dpkg-divert: it stays away through package upgrades); code that wants Lmod sources its init
# explicitly, as the project's module loader does.
#
# The trees (the same modules in Lua for Lmod and in Tcl for Tmod), under $MODULES_BASE:
#   gcc/11, gcc/12 (the marked default)   put a fake `gcc` on PATH, set CC
#   python/3.11 (family "python")         sets HPC_TEST_PYTHON, puts python3.11 on PATH
#   hpctool/1.0                           puts the tool `hpctool` on PATH, sets HPC_TOOL_HOME
#   execmod/1.0                           sets HPC_EXECUTED only through execute{} (Lmod) / puts (Tmod)
#   broken/1.0                            fails to load with its own message
#   secret/.1.0                           hidden (never offered)
# Knob: MODULES_BASE (default /opt/jupyterhub-hpc/modules).
set -euo pipefail
export DEBIAN_FRONTEND=noninteractive
BASE=${MODULES_BASE:-/opt/jupyterhub-hpc/modules}
LMOD_TREE=$BASE/lmod
TMOD_TREE=$BASE/tmod
SOFT=$BASE/soft
TMOD_ROOT=$BASE/tmod-5.2
LMOD_INIT=/usr/share/lmod/lmod/init/bash
LMOD_LIBEXEC=/usr/share/lmod/lmod/libexec

log() { echo "[modules.sh] $*" >&2; }
die() { log "ERROR: $*"; exit 1; }

paths() {
  cat <<EOF
LMOD_INIT=$LMOD_INIT
LMOD_CMD=$LMOD_LIBEXEC/lmod
LMOD_SPIDER=$LMOD_LIBEXEC/spider
LMOD_MODULEPATH=$LMOD_TREE
TMOD_MODULECMD=$TMOD_ROOT/usr/lib/x86_64-linux-gnu/modulecmd.tcl
TMOD_MODULEPATH=$TMOD_TREE
MODULES_SOFT=$SOFT
EOF
}

install_lmod() {
  if ! dpkg-query -W -f='${Status}' lmod 2>/dev/null | grep -q 'ok installed'; then
    log "apt-get install lmod"
    apt-get install -y -qq lmod >/dev/null 2>&1 || { apt-get update -qq && apt-get install -y -qq lmod >/dev/null; }
  fi
  [ -r "$LMOD_INIT" ] && [ -x "$LMOD_LIBEXEC/lmod" ] || die "lmod installed but $LMOD_INIT or $LMOD_LIBEXEC/lmod missing"
  local hook
  for hook in /etc/profile.d/lmod.sh /etc/profile.d/lmod.csh; do
    if [ -e "$hook" ] && ! dpkg-divert --list "$hook" | grep -q .; then
      log "diverting $hook (Lmod stays out of every login shell)"
      dpkg-divert --quiet --local --rename --divert "$hook.jupyterhub-hpc-disabled" --add "$hook"
    fi
  done
}

install_tmod() {
  [ -r "$TMOD_ROOT/usr/lib/x86_64-linux-gnu/modulecmd.tcl" ] && return 0
  command -v tclsh >/dev/null || apt-get install -y -qq tcl >/dev/null
  local tmp
  tmp=$(mktemp -d)
  log "unpacking environment-modules 5.2 into $TMOD_ROOT (not installed: it conflicts with lmod)"
  (cd "$tmp" && chmod 0777 . && apt-get download environment-modules >/dev/null 2>&1) \
    || { apt-get update -qq && (cd "$tmp" && apt-get download environment-modules >/dev/null 2>&1); }
  rm -rf "$TMOD_ROOT"
  mkdir -p "$TMOD_ROOT"
  dpkg-deb -x "$tmp"/environment-modules_*.deb "$TMOD_ROOT"
  rm -rf "$tmp"
}

write_tool() {  # write_tool PATH TEXT: a tiny program that prints TEXT and its arguments
  mkdir -p "$(dirname "$1")"
  printf '#!/bin/sh\necho %s "$@"\n' "$2" > "$1"
  chmod 0755 "$1"
}

write_trees() {
  rm -rf "$LMOD_TREE" "$TMOD_TREE" "$SOFT"
  mkdir -p "$LMOD_TREE"/{gcc,python,hpctool,execmod,broken,secret} "$TMOD_TREE"/{gcc,python,hpctool,execmod,broken,secret}
  write_tool "$SOFT/gcc-11/bin/gcc" "hpc-test-gcc-11"
  write_tool "$SOFT/gcc-12/bin/gcc" "hpc-test-gcc-12"
  write_tool "$SOFT/hpctool-1.0/bin/hpctool" "hpctool-1.0-ran"
  mkdir -p "$SOFT/python-3.11/bin"
  ln -sf /usr/bin/python3 "$SOFT/python-3.11/bin/python3.11"

  # -- Lmod (Lua) --
  cat > "$LMOD_TREE/gcc/11.lua" <<EOF
whatis("Description: GNU compilers 11 (test)")
prepend_path("PATH", "$SOFT/gcc-11/bin")
setenv("CC", "gcc-11")
EOF
  cat > "$LMOD_TREE/gcc/12.lua" <<EOF
help([[GCC 12 (a test module)]])
whatis("Description: GNU compilers 12 (test)")
prepend_path("PATH", "$SOFT/gcc-12/bin")
setenv("CC", "gcc")
EOF
  ln -sf 12.lua "$LMOD_TREE/gcc/default"
  cat > "$LMOD_TREE/python/3.11.lua" <<EOF
whatis("Description: Python 3.11 (test)")
family("python")
prepend_path("PATH", "$SOFT/python-3.11/bin")
setenv("HPC_TEST_PYTHON", "3.11")
EOF
  cat > "$LMOD_TREE/hpctool/1.0.lua" <<EOF
whatis("Description: a tool on PATH and a variable (test)")
prepend_path("PATH", "$SOFT/hpctool-1.0/bin")
setenv("HPC_TOOL_HOME", "$SOFT/hpctool-1.0")
EOF
  cat > "$LMOD_TREE/execmod/1.0.lua" <<'EOF'
whatis("Description: sets HPC_EXECUTED through execute{} only (test)")
execute{cmd="export HPC_EXECUTED=yes", modeA={"load"}}
EOF
  cat > "$LMOD_TREE/broken/1.0.lua" <<'EOF'
whatis("Description: always fails to load (test)")
LmodError("broken/1.0 cannot be loaded: its licence server is down (test)")
EOF
  cat > "$LMOD_TREE/secret/.1.0.lua" <<'EOF'
whatis("Description: hidden (test)")
setenv("HPC_SECRET", "1")
EOF

  # -- Tmod (Tcl) --
  cat > "$TMOD_TREE/gcc/11" <<EOF
#%Module1.0
module-whatis "GNU compilers 11 (test)"
prepend-path PATH $SOFT/gcc-11/bin
setenv CC gcc-11
EOF
  cat > "$TMOD_TREE/gcc/12" <<EOF
#%Module1.0
module-whatis "GNU compilers 12 (test)"
prepend-path PATH $SOFT/gcc-12/bin
setenv CC gcc
EOF
  printf '#%%Module1.0\nset ModulesVersion 12\n' > "$TMOD_TREE/gcc/.version"
  cat > "$TMOD_TREE/python/3.11" <<EOF
#%Module1.0
module-whatis "Python 3.11 (test)"
family python
prepend-path PATH $SOFT/python-3.11/bin
setenv HPC_TEST_PYTHON 3.11
EOF
  cat > "$TMOD_TREE/hpctool/1.0" <<EOF
#%Module1.0
module-whatis "a tool on PATH and a variable (test)"
prepend-path PATH $SOFT/hpctool-1.0/bin
setenv HPC_TOOL_HOME $SOFT/hpctool-1.0
EOF
  cat > "$TMOD_TREE/execmod/1.0" <<'EOF'
#%Module1.0
module-whatis "sets HPC_EXECUTED through shell code only (test)"
if {[module-info mode load]} { puts stdout "export HPC_EXECUTED=yes;" }
EOF
  cat > "$TMOD_TREE/broken/1.0" <<'EOF'
#%Module1.0
module-whatis "always fails to load (test)"
error "broken/1.0 cannot be loaded: its licence server is down (test)"
EOF
  cat > "$TMOD_TREE/secret/.1.0" <<'EOF'
#%Module1.0
setenv HPC_SECRET 1
EOF
  chmod -R a+rX "$BASE"
}

cmd=${1:-install}
case "$cmd" in
  install)
    [ "$(id -u)" = 0 ] || die "install must run as root"
    install_lmod
    install_tmod
    write_trees
    log "ready: $(paths | tr '\n' ' ')"
    ;;
  paths) paths ;;
  *) die "usage: $0 [install|paths]" ;;
esac
