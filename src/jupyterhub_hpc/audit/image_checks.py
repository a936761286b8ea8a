"""The checks of ``jupyterhub-hpc audit --image``: what in an image lets a process regain
privileges or leak across users. Pure functions: a list of :class:`~.image_read.Entry` in,
findings out, one finding per path (the most specific check wins: a setuid ``su`` is reported
as ``image.su``, not also as ``image.setuid-root``)."""

from __future__ import annotations

import fnmatch
import posixpath
import re
import stat
from collections.abc import Iterable, Sequence

from .findings import Finding
from .image_read import Entry

__all__ = ["ROOT_USERS", "check_image", "is_root_user", "singleuser_paths", "sudoers_grants"]

#: the values of a config's ``User`` that mean uid 0
ROOT_USERS = ("", "0", "root", "0:0", "root:root", "0:root", "root:0")
#: world-writable directories that are meant to be, when sticky (and what is below them)
SHARED_TMP = ("/tmp", "/var/tmp", "/dev/shm", "/run/lock")
#: where an image's ``jupyterhub-singleuser`` would be
SINGLEUSER_DIRS = (
    "/usr/local/bin",
    "/usr/bin",
    "/bin",
    "/opt/conda/bin",
    "/opt/*/bin",
    "/srv/*/bin",
    "/usr/local/*/bin",
)
_BIN_DIRS = ("/bin", "/sbin", "/usr/bin", "/usr/sbin", "/usr/local/bin", "/usr/local/sbin")
#: alias definitions and includes are not rules
_NOT_RULES = ("Defaults", "User_Alias", "Runas_Alias", "Host_Alias", "Cmnd_Alias", "@include", "#include")


def is_root_user(user: str, passwd: str = "") -> bool:
    """Whether a config's ``User`` (``name``, ``uid``, ``name:group``, ``uid:gid``) runs as uid 0,
    a name looked up in the image's ``/etc/passwd``."""
    if user.strip() in ROOT_USERS:
        return True
    name = user.split(":", 1)[0].strip()
    if name.isdigit():
        return int(name) == 0
    for line in passwd.splitlines():
        fields = line.split(":")
        if len(fields) > 2 and fields[0] == name:
            return fields[2].strip() == "0"
    return False


def sudoers_grants(text: str) -> list[str]:
    """The rule lines of a sudoers file that grant something to a user or group other than root
    (comments, ``Defaults`` and aliases skipped, continuation lines joined). Simple on purpose:
    any such rule in an image is worth a look."""
    lines: list[str] = []
    pending = ""
    for raw in text.splitlines():
        line = pending + raw
        if line.endswith("\\"):
            pending = line[:-1] + " "
            continue
        pending = ""
        stripped = line.strip()
        if not stripped or (stripped.startswith("#") and not stripped.startswith("#include")):
            continue
        if stripped.startswith(_NOT_RULES):
            continue
        users = re.sub(r"\s*,\s*", ",", stripped).split()[0]  # "alice, bob host = ...": the user list
        if all(name in ("root", "#0") for name in users.split(",")):
            continue
        lines.append(" ".join(stripped.split()))
    return lines


def singleuser_paths(entries: Iterable[Entry]) -> list[str]:
    """Where the image has a ``jupyterhub-singleuser`` (a file or a link) in the usual places."""
    found = []
    for entry in entries:
        parent, base = posixpath.split(entry.path)
        if base != "jupyterhub-singleuser" or not (stat.S_ISREG(entry.mode) or stat.S_ISLNK(entry.mode)):
            continue
        if any(_dir_matches(parent, pattern) for pattern in SINGLEUSER_DIRS):
            found.append(entry.path)
    return sorted(found)


def _dir_matches(path: str, pattern: str) -> bool:
    """``fnmatch`` component by component: ``/opt/*/bin`` matches ``/opt/env/bin``, not ``/opt/a/b/bin``."""
    parts, wanted = path.split("/"), pattern.split("/")
    return len(parts) == len(wanted) and all(
        fnmatch.fnmatchcase(p, w) for p, w in zip(parts, wanted, strict=True)
    )


def _in_bin(path: str, name: str) -> bool:
    parent, base = posixpath.split(path)
    return base == name and parent in _BIN_DIRS


def _setuid(entry: Entry) -> Finding | None:
    if not stat.S_ISREG(entry.mode) or not entry.mode & (stat.S_ISUID | stat.S_ISGID):
        return None
    bits = f"{stat.S_IMODE(entry.mode):04o}"
    if entry.mode & stat.S_ISUID and entry.uid == 0 and entry.mode & 0o111:
        return Finding(
            "image.setuid-root",
            "high",
            f"setuid-root executable (mode {bits}): runs as root for whoever starts it, where the "
            "runtime allows setuid (podman without no-new-privileges, a root-owned sandbox)",
            f"remove it or clear the bit in the image (RUN chmod u-s {entry.path}); run containers "
            "with no-new-privileges",
            entry.path,
        )
    which = "setuid" if entry.mode & stat.S_ISUID else "setgid"
    owner = f"uid {entry.uid}" if entry.mode & stat.S_ISUID else f"gid {entry.gid}"
    return Finding(
        "image.setuid",
        "medium",
        f"{which} file (mode {bits}, {owner}): runs with that identity for whoever starts it",
        f"clear the bit unless the image needs it (RUN chmod ug-s {entry.path})",
        entry.path,
    )


def _sudo(entries: Sequence[Entry], setuid: dict[str, Finding]) -> list[Finding]:
    binaries = [e.path for e in entries if _in_bin(e.path, "sudo") and e.path in setuid]
    if not binaries:
        return []
    grants = []
    for entry in entries:
        if entry.content is None or not (
            entry.path == "/etc/sudoers" or posixpath.dirname(entry.path) == "/etc/sudoers.d"
        ):
            continue
        name = posixpath.basename(entry.path)
        if entry.path != "/etc/sudoers" and (name.endswith("~") or "." in name):
            continue  # sudo skips the files of sudoers.d whose names end in ~ or contain a dot
        grants += [f"{entry.path}: {rule}" for rule in sudoers_grants(entry.text())]
    if not grants:
        return []
    nopasswd = any("NOPASSWD" in rule for rule in grants)
    return [
        Finding(
            "image.sudo",
            "high" if nopasswd else "medium",
            "setuid sudo with rules for users other than root"
            + (" (NOPASSWD: root without a password)" if nopasswd else " (with a password)")
            + ": "
            + "; ".join(grants),
            "remove sudo from the image (or its rules); a container user who needs root needs a "
            "different image, not sudo",
            path,
        )
        for path in binaries
    ]


def _su(path: str) -> Finding:
    return Finding(
        "image.su",
        "high",
        "setuid-root su: anyone who knows (or finds unset) a password of the image's accounts is root",
        f"remove su or clear its setuid bit (RUN chmod u-s {path}); lock the image's passwords",
        path,
    )


def _default_user(user: str | None, passwd: str) -> Finding:
    if user is None:
        return Finding(
            "image.default-user",
            "info",
            "no default user recorded: the runtime runs it as the caller",
            "nothing to do for Charliecloud or Apptainer; for podman, run with --userns=keep-id",
            "User",
        )
    if is_root_user(user, passwd):
        return Finding(
            "image.default-user",
            "high",
            f"the image's default user is root (User {user!r}): started as is, its processes run as uid 0",
            "USER 1000 in the image's Containerfile; run it with --userns=keep-id (and the init) so "
            "the server runs as the real user",
            "User",
        )
    return Finding(
        "image.default-user", "info", f"the image's default user is {user!r}", "nothing to do", "User"
    )


def _world_writable(entry: Entry) -> Finding | None:
    perm = stat.S_IMODE(entry.mode)
    if not perm & stat.S_IWOTH:
        return None
    if stat.S_ISDIR(entry.mode):
        sticky = bool(perm & stat.S_ISVTX)
        shared = any(entry.path == d or entry.path.startswith(d + "/") for d in SHARED_TMP)
        if shared and sticky:
            return None
        return Finding(
            "image.world-writable-dir",
            "medium",
            f"world-writable directory (mode {perm:04o}"
            + (", no sticky bit: anyone may delete or replace others' files" if not sticky else "")
            + "): another user of the same image, or the same user in another job, can plant files here",
            f"RUN chmod o-w {entry.path} (or 1777 for a temporary directory)",
            entry.path,
        )
    if stat.S_ISREG(entry.mode):
        return Finding(
            "image.world-writable-file",
            "medium",
            f"world-writable file (mode {perm:04o}): anyone who runs the image with write access "
            "can change it",
            f"RUN chmod o-w {entry.path}",
            entry.path,
        )
    return None  # links are always 0777, devices are the runtime's


def _system_files(entry: Entry) -> Finding | None:
    perm = stat.S_IMODE(entry.mode)
    if entry.path in ("/etc/passwd", "/etc/group") and perm & (stat.S_IWGRP | stat.S_IWOTH):
        return Finding(
            "image.passwd-writable",
            "high",
            f"{entry.path} is {'world' if perm & stat.S_IWOTH else 'group'}-writable (mode {perm:04o}): "
            "a user can add a uid-0 account or join any group (start.sh-style images do this to "
            "name an arbitrary uid)",
            f"RUN chmod 0644 {entry.path}; give the uid a name with nss_wrapper (jupyterhub-hpc-init) "
            "instead of a writable /etc/passwd",
            entry.path,
        )
    if entry.path in ("/etc/shadow", "/etc/gshadow") and perm & stat.S_IROTH:
        return Finding(
            "image.shadow-readable",
            "high",
            f"{entry.path} is world-readable (mode {perm:04o}): the image's password hashes can be read",
            f"RUN chmod 0640 {entry.path} (owner root, group shadow)",
            entry.path,
        )
    return None


def _singleuser(entries: Sequence[Entry]) -> Finding:
    found = singleuser_paths(entries)
    if found:
        return Finding(
            "image.singleuser", "info", f"jupyterhub-singleuser found at {', '.join(found)}", "nothing to do"
        )
    return Finding(
        "image.singleuser",
        "low",
        "no jupyterhub-singleuser in the image: the site's environment must be bind-mounted "
        "read-only (see docs/containers.md)",
        "install jupyterhub in the image, or bind-mount the site's environment read-only",
    )


def check_image(entries: Sequence[Entry], *, user: str | None) -> list[Finding]:
    """Every check on an image's entries. ``user`` is the config's ``User``, None when the format
    records no config (a directory, a flat tar, SquashFS)."""
    passwd = next((e.text() for e in entries if e.path == "/etc/passwd"), "")
    setuid = {e.path: f for e in entries if (f := _setuid(e)) is not None}
    specific: dict[str, Finding] = {}
    for finding in _sudo(entries, setuid):
        specific[finding.subject] = finding
    for path, finding in setuid.items():
        if _in_bin(path, "su") and finding.check == "image.setuid-root":
            specific.setdefault(path, _su(path))
    for entry in entries:
        system = _system_files(entry)
        if system is not None:
            specific.setdefault(entry.path, system)
    findings = [_default_user(user, passwd)]
    for entry in entries:
        if entry.path in specific:
            findings.append(specific[entry.path])
            continue
        generic = setuid.get(entry.path) or _world_writable(entry)
        if generic is not None:
            findings.append(generic)
    findings.append(_singleuser(entries))
    return findings
