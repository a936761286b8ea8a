#!/usr/bin/env bash
# containers.sh — what the container tests (issue 17) need, built here, never pulled. Idempotent; as root.
#
#   containers.sh setup   the test image, the project group and file, rootless podman for the test users
#   containers.sh env     print the facts the tests read (KEY=VALUE lines)
#
# The image: `debootstrap --variant=minbase --include=python3 bookworm` from Debian's own archive
# (~1 min, cached in $IMAGES; rebuilt only when missing), plus what makes it docker-stacks-like: a
# user jovyan 1000:100 with /home/jovyan, and /usr/local/bin/rootid, a setuid-root copy of `id`
# (what `audit --image` must list, and what must not regain root inside the container), and the
# mount points of the site environment and the project directory (Charliecloud binds only onto
# paths the read-only image has). It is a
# directory (Charliecloud runs it as is) and, for podman, imported into each test user's own
# rootless storage as localhost/jupyterhub-hpc-deb12 (overlay storage: a run takes <1 s, not 7-9 s
# with vfs).
#
# The project group: $PROJECT_GROUP (hpcuser2 a member) owns $PROJECT_FILE, mode 0640 root:group,
# which a server in a container must read through its supplementary group.
#
# The start hooks: $HOOK_DIR (root's, 0755) holds what the init runs as the user before the server;
# their lines must show in the spawn progress.
#
# This machine's cgroups are hybrid (v1 plus a cgroup2 mount holding hugetlb), which crun refuses:
# crun is needed (runc drops supplementary groups), so hugetlb gets its own v1 hierarchy when crun
# cannot start a container otherwise.
set -euo pipefail

IMAGES=${JUPYTERHUB_HPC_IMAGES:-/var/cache/jupyterhub-hpc/images}
IMAGE=$IMAGES/deb12
PODMAN_REF=localhost/jupyterhub-hpc-deb12
PROJECT_GROUP=proj-astro
PROJECT_DIR=/srv/jupyterhub-hpc-project
PROJECT_FILE=$PROJECT_DIR/data.txt
HOOK_DIR=/srv/jupyterhub-hpc-hooks
PODMAN_USERS=${PODMAN_USERS:-"hpcuser2"}

log() { echo "[containers.sh] $*" >&2; }

# Charliecloud binds only onto paths the (read-only) image has: the site environment, the project
# and the start hooks
# (SITE_ENV: the venv the tests run from, /opt/jupyterhub-hpc/venv by default)
SITE_ENV=${SITE_ENV:-/opt/jupyterhub-hpc/venv}
MOUNT_POINTS="${SITE_ENV#/} srv/jupyterhub-hpc-project srv/jupyterhub-hpc-hooks"

build_image() {
  if [ -x "$IMAGE/usr/bin/python3" ] && [ -f "$IMAGE/.jupyterhub-hpc-image" ]; then
    for m in $MOUNT_POINTS; do mkdir -p "$IMAGE/$m"; done
    return 0
  fi
  log "building $IMAGE with debootstrap (Debian 12 minbase + python3)"
  local t0=$SECONDS tmp="$IMAGE.tmp"
  rm -rf "$tmp"
  mkdir -p "$IMAGES"
  # the mirror apt itself uses (the one place this machine may download Debian from)
  local mirror
  mirror=$(awk '/^URIs:/ {print $2; exit}' /etc/apt/sources.list.d/*.sources 2>/dev/null || true)
  [ -n "$mirror" ] || mirror=$(awk '$1 == "deb" {print $2; exit}' /etc/apt/sources.list 2>/dev/null || true)
  debootstrap --variant=minbase --include=python3 bookworm "$tmp" "${mirror:-http://deb.debian.org/debian}" >/dev/null
  chroot "$tmp" useradd -u 1000 -g 100 -m -s /bin/bash jovyan
  install -m 4755 -o root -g root "$tmp/usr/bin/id" "$tmp/usr/local/bin/rootid"
  for m in $MOUNT_POINTS; do mkdir -p "$tmp/$m"; done
  rm -rf "$tmp/var/cache/apt/archives/"*.deb "$tmp/var/lib/apt/lists/"*
  touch "$tmp/.jupyterhub-hpc-image"
  rm -rf "$IMAGE"
  mv "$tmp" "$IMAGE"
  chmod 0755 "$IMAGES" "$IMAGE"
  log "image built in $((SECONDS - t0)) s"
}

project_group() {
  getent group "$PROJECT_GROUP" >/dev/null || groupadd "$PROJECT_GROUP"
  id -nG hpcuser2 | tr ' ' '\n' | grep -qx "$PROJECT_GROUP" || usermod -a -G "$PROJECT_GROUP" hpcuser2
  install -d -m 0755 "$PROJECT_DIR"
  echo "project data of $PROJECT_GROUP" > "$PROJECT_FILE"
  chown root:"$PROJECT_GROUP" "$PROJECT_FILE"
  chmod 0640 "$PROJECT_FILE"
}

crun_works() { # as $1: can crun start the image?
  runuser -u "$1" -- env XDG_RUNTIME_DIR="$2" podman --runtime=crun run --rm --pull=never "$PODMAN_REF" /bin/true \
    >/dev/null 2>&1
}

podman_user() {
  local user=$1 home run
  home=$(getent passwd "$user" | cut -d: -f6)
  install -d -o "$user" -g "$(id -gn "$user")" -m 0700 "$home/.config" "$home/.config/containers"
  cat > "$home/.config/containers/storage.conf" <<EOF
[storage]
driver = "overlay"
EOF
  cat > "$home/.config/containers/containers.conf" <<EOF
[engine]
cgroup_manager = "cgroupfs"
events_logger = "file"
runtime = "crun"
EOF
  chown "$user:" "$home/.config/containers/storage.conf" "$home/.config/containers/containers.conf"
  run=$(mktemp -d /tmp/containers-setup-XXXXXX)
  chown "$user:" "$run"
  chmod 0700 "$run"
  if ! runuser -u "$user" -- env XDG_RUNTIME_DIR="$run" podman image exists "$PODMAN_REF"; then
    log "importing $IMAGE into $user's podman storage as $PODMAN_REF"
    tar -C "$IMAGE" -c . | runuser -u "$user" -- env XDG_RUNTIME_DIR="$run" podman import -q - "$PODMAN_REF" >/dev/null
  fi
  if ! crun_works "$user" "$run" && [ ! -d /sys/fs/cgroup/hugetlb ]; then
    log "crun refuses the hybrid cgroups: hugetlb to its own v1 hierarchy"
    mkdir -p /sys/fs/cgroup/hugetlb && mount -t cgroup -o hugetlb cgroup /sys/fs/cgroup/hugetlb || true
  fi
  crun_works "$user" "$run" || log "WARNING: crun still cannot start a container as $user"
  # podman's pause process of this setup, not a test's
  runuser -u "$user" -- env XDG_RUNTIME_DIR="$run" podman system migrate >/dev/null 2>&1 || true
  pkill -u "$user" -f 'catatonit -P' 2>/dev/null || true
  rm -rf "$run"
}

start_hooks() {
  install -d -m 0755 "$HOOK_DIR"
  cat > "$HOOK_DIR/10-hello" <<'HOOK'
#!/bin/sh
echo "hello $USER (uid $(id -u)), home $HOME"
HOOK
  cat > "$HOOK_DIR/20-project" <<'HOOK'
#!/bin/sh
echo "project: $(cat /srv/jupyterhub-hpc-project/data.txt)"
HOOK
  chown root:root "$HOOK_DIR"/*
  chmod 0755 "$HOOK_DIR"/*
}

case "${1:-}" in
  setup)
    build_image
    project_group
    start_hooks
    for u in $PODMAN_USERS; do podman_user "$u"; done
    ;;
  env)
    echo "IMAGE=$IMAGE"
    echo "PODMAN_REF=$PODMAN_REF"
    echo "PROJECT_GROUP=$PROJECT_GROUP"
    echo "PROJECT_FILE=$PROJECT_FILE"
    echo "HOOK_DIR=$HOOK_DIR"
    ;;
  *)
    echo "usage: $0 setup|env" >&2
    exit 2
    ;;
esac
