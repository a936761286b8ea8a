"""Pure planning for ``jupyterhub-hpc-init``: does the user need names, which home, which files.

Nothing here reads the system: the caller passes what NSS inside the container said, the image's
``/etc/passwd`` and ``/etc/group`` text and a predicate for "this directory exists". The init
(:mod:`jupyterhub_hpc.containers.init`) does the reading, writing and re-executing.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from enum import Enum

from jupyterhub_hpc.identity import UserIdentity

__all__ = [
    "NSS_WRAPPER_PATHS",
    "NameAction",
    "NameDecision",
    "NssEntry",
    "choose_home",
    "decide_names",
    "find_nss_wrapper",
    "group_text",
    "passwd_entry",
    "passwd_text",
]

#: where Debian/Ubuntu, Fedora/RHEL and others install libnss_wrapper
NSS_WRAPPER_PATHS = (
    "/usr/lib/x86_64-linux-gnu/libnss_wrapper.so",
    "/usr/lib/aarch64-linux-gnu/libnss_wrapper.so",
    "/usr/lib64/libnss_wrapper.so",
    "/usr/lib/libnss_wrapper.so",
)


@dataclass(frozen=True)
class NssEntry:
    """What NSS inside the container says of a uid: the part of ``struct passwd`` the init uses."""

    name: str
    uid: int
    gid: int
    home: str


class NameAction(Enum):
    #: the uid already carries the real name (Apptainer, Charliecloud, podman keep-id): leave it
    KEEP = "keep"
    #: write passwd/group files for nss_wrapper and re-exec with it preloaded
    WRITE = "write"


@dataclass(frozen=True)
class NameDecision:
    action: NameAction
    #: for the "[init] starting as ...; names: <how>" line
    reason: str


def decide_names(identity: UserIdentity, found: NssEntry | None, image_user: str | None) -> NameDecision:
    """What to do about names, given what NSS inside says of ``identity.uid`` (None: unknown)."""
    if found is not None and found.name == identity.username:
        return NameDecision(NameAction.KEEP, "names from the runtime")
    if found is None:
        return NameDecision(NameAction.WRITE, f"the image does not know uid {identity.uid}")
    if image_user is not None and found.name == image_user:
        return NameDecision(
            NameAction.WRITE,
            f"the image's user {image_user!r} (uid {found.uid}) renamed {identity.username!r}",
        )
    return NameDecision(
        NameAction.WRITE, f"uid {identity.uid} is {found.name!r} in the image, not {identity.username!r}"
    )


def choose_home(
    identity: UserIdentity, image_home: str | None, env_home: str | None, exists: Callable[[str], bool]
) -> str | None:
    """The home inside: the identity's if it exists there, else the image user's, else the one the
    runtime set in ``$HOME`` (it may have mounted the home elsewhere); None when none exists."""
    for candidate in (identity.home, image_home, env_home):
        if candidate and candidate.startswith("/") and exists(candidate):
            return candidate
    return None


def _fields(line: str, count: int) -> list[str] | None:
    if not line or line.startswith("#"):
        return None
    fields = line.split(":")
    return fields if len(fields) == count and fields[0] and fields[2].isdigit() else None


def passwd_entry(passwd: str, *, name: str | None = None, uid: int | None = None) -> NssEntry | None:
    """The first entry of a passwd file's text with this name or uid, as NSS would give it."""
    for line in passwd.splitlines():
        fields = _fields(line, 7)
        if fields is None or not fields[3].isdigit():
            continue
        if (name is not None and fields[0] == name) or (uid is not None and int(fields[2]) == uid):
            return NssEntry(fields[0], int(fields[2]), int(fields[3]), fields[5])
    return None


def passwd_text(image_passwd: str, identity: UserIdentity, home: str | None = None) -> str:
    """The image's passwd without any line of this uid or name (and without malformed lines, which
    nss_wrapper would choke on), then the identity's line with ``home``."""
    kept = [
        line
        for line in image_passwd.splitlines()
        if (fields := _fields(line, 7)) is not None
        and int(fields[2]) != identity.uid
        and fields[0] != identity.username
    ]
    return "\n".join([*kept, identity.passwd_line(home)]) + "\n"


def group_text(image_group: str, identity: UserIdentity) -> str:
    """The image's group file without the groups whose gid or name the identity uses, then the
    identity's groups (the user a member of each supplementary one)."""
    gids = set(identity.all_gids)
    names = {identity.group.name, *(g.name for g in identity.groups)}
    kept = [
        line
        for line in image_group.splitlines()
        if (fields := _fields(line, 4)) is not None and int(fields[2]) not in gids and fields[0] not in names
    ]
    return "\n".join([*kept, *identity.group_lines()]) + "\n"


def find_nss_wrapper(
    exists: Callable[[str], bool], override: str | None = None, paths: Sequence[str] = NSS_WRAPPER_PATHS
) -> str | None:
    """The libnss_wrapper to preload: the site's ``$JUPYTERHUB_HPC_NSS_WRAPPER`` first, then the
    usual places; None when there is none."""
    candidates: Iterable[str] = (override, *paths) if override else paths
    return next((p for p in candidates if p and exists(p)), None)
