"""One user identity for every backend (issue 17): who a server runs as, inside and outside a container.

A :class:`UserIdentity` is the user's name, uid, primary group, supplementary groups (with their
names), home and shell. The hub resolves it once per start: from NSS on the hub host
(:func:`identity_from_nss`, the default), from the authenticator's ``auth_state``
(:func:`identity_from_auth_state`, e.g. LDAP attributes), or from an admin's callable. Every
backend then uses the same value: the job runs as that uid, a container runtime is told to keep
exactly these ids and groups, the init inside the container names them
(:mod:`jupyterhub_hpc.containers.init`), and a Kubernetes pod gets them as its security context.

Nothing here ever names uid 0: an identity of root is refused when it is made. Every name and
path is checked before it can reach a passwd line, an argv or a manifest (no ``:``, newline or
NUL, names in the portable POSIX form), so an identity from a network payload cannot inject a
second passwd entry.

The identity travels to the job as JSON in :data:`IDENTITY_ENV` (:meth:`UserIdentity.to_env`,
:meth:`UserIdentity.from_env`): no secret is in it.
"""

from __future__ import annotations

import grp
import inspect
import json
import os
import pwd
import re
from collections.abc import Mapping
from typing import Any

from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    ValidationError,
    ValidationInfo,
    field_validator,
    model_validator,
)

__all__ = [
    "IDENTITY_ENV",
    "Group",
    "IdentityError",
    "UserIdentity",
    "identity_from_auth_state",
    "identity_from_nss",
    "resolve_identity",
]

#: the job's environment variable holding the identity (JSON)
IDENTITY_ENV = "JUPYTERHUB_HPC_IDENTITY"
#: a portable user or group name (POSIX, plus the ``.`` and upper case sites use), at most 64 characters
NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_.-]{0,63}")
#: the highest id a 32-bit uid_t may hold, minus the "no id" value (-1)
MAX_ID = 2**32 - 2


class IdentityError(ValueError):
    """An identity that cannot be used: ``field`` names what is wrong."""

    def __init__(self, field: str, reason: str) -> None:
        super().__init__(f"{field}: {reason}")
        self.field = field
        self.reason = reason


def _check_name(value: str, what: str) -> str:
    if not NAME.fullmatch(value):
        raise ValueError(f"{value!r} is not a valid {what} name (letters, digits, '_', '.', '-')")
    return value


def _check_path(value: str, what: str) -> str:
    if not value.startswith("/") or any(c in value for c in ":\n\r\0"):
        raise ValueError(f"{value!r} is not an absolute {what} path without ':' or newlines")
    return value


class Group(BaseModel):
    """A group the user is in: its name and gid."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    name: str
    gid: int = Field(ge=1, le=MAX_ID)

    @field_validator("name")
    @classmethod
    def _name(cls, value: str) -> str:
        return _check_name(value, "group")

    def line(self, members: tuple[str, ...] = ()) -> str:
        """This group as a line of ``/etc/group`` (``name:x:gid:members``)."""
        return f"{self.name}:x:{self.gid}:{','.join(members)}"


class UserIdentity(BaseModel):
    """Who a server runs as. ``groups`` are the supplementary groups (the primary one is
    ``group``, not repeated there), in the order NSS gave them."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    username: str
    uid: int = Field(ge=1, le=MAX_ID)
    group: Group
    groups: tuple[Group, ...] = ()
    home: str
    shell: str = "/bin/bash"
    gecos: str = ""

    @field_validator("username")
    @classmethod
    def _username(cls, value: str) -> str:
        return _check_name(value, "user")

    @field_validator("home", "shell")
    @classmethod
    def _paths(cls, value: str, info: ValidationInfo) -> str:
        return _check_path(value, str(info.field_name))

    @field_validator("gecos")
    @classmethod
    def _gecos(cls, value: str) -> str:
        if any(c in value for c in ":\n\r\0") or len(value) > 256:
            raise ValueError("the full name may not hold ':' or newlines (256 characters at most)")
        return value

    @model_validator(mode="after")
    def _distinct_groups(self) -> UserIdentity:
        seen = {self.group.gid}
        for group in self.groups:
            if group.gid in seen:
                raise ValueError(f"gid {group.gid} ({group.name}) is listed twice")
            seen.add(group.gid)
        return self

    # -- what runtimes and the init need ---------------------------------------------------------
    @property
    def gid(self) -> int:
        return self.group.gid

    @property
    def all_gids(self) -> tuple[int, ...]:
        """The primary gid, then the supplementary ones."""
        return (self.group.gid, *(g.gid for g in self.groups))

    def passwd_line(self, home: str | None = None) -> str:
        """This user as a line of ``/etc/passwd``; ``home`` overrides the home (an image's own)."""
        return f"{self.username}:x:{self.uid}:{self.gid}:{self.gecos}:{home or self.home}:{self.shell}"

    def group_lines(self) -> list[str]:
        """The primary group and each supplementary group as lines of ``/etc/group`` (the user a
        member of each supplementary one)."""
        return [self.group.line(), *(g.line((self.username,)) for g in self.groups)]

    def describe(self) -> str:
        """For the spawn progress: ``alice (uid 2001, gid 2001 alice), groups proj-astro (3001)``."""
        text = f"{self.username} (uid {self.uid}, gid {self.gid} {self.group.name})"
        if self.groups:
            text += ", groups " + ", ".join(f"{g.name} ({g.gid})" for g in self.groups)
        return text

    # -- transport -------------------------------------------------------------------------------
    def to_env(self) -> str:
        return json.dumps(self.model_dump(mode="json"), separators=(",", ":"), sort_keys=True)

    @classmethod
    def from_env(cls, text: str) -> UserIdentity:
        """The identity of :data:`IDENTITY_ENV`; :class:`IdentityError` when it is not one."""
        try:
            return cls.model_validate_json(text)
        except ValidationError as exc:
            raise _identity_error(exc) from None

    @classmethod
    def make(cls, **fields: Any) -> UserIdentity:
        """Validated from plain fields; :class:`IdentityError` (naming the field) when invalid."""
        try:
            return cls.model_validate(fields)
        except ValidationError as exc:
            raise _identity_error(exc) from None


def _identity_error(exc: ValidationError) -> IdentityError:
    first = exc.errors()[0]
    field = ".".join(str(p) for p in first["loc"]) or "identity"
    message = str(first["msg"]).removeprefix("Value error, ")
    if first["type"] == "greater_than_equal" and (field == "uid" or field.endswith("gid")):
        message = f"{message} (uid and gid 0 are never used)"
    return IdentityError(field, message)


def identity_from_nss(username: str) -> UserIdentity:
    """The identity NSS gives on this host (``getpwnam``, ``getgrouplist``): what a job started by
    the scheduler as ``username`` gets. :class:`IdentityError` for an unknown user or root."""
    try:
        entry = pwd.getpwnam(username)
    except KeyError:
        raise IdentityError("username", f"no such user {username!r} on this host") from None
    primary = _group(entry.pw_gid)
    groups: list[dict[str, Any]] = []
    for gid in dict.fromkeys(os.getgrouplist(entry.pw_name, entry.pw_gid)):
        if gid != entry.pw_gid:
            groups.append(_group(gid))
    return UserIdentity.make(
        username=entry.pw_name,
        uid=entry.pw_uid,
        group=primary,
        groups=groups,
        home=entry.pw_dir,
        shell=entry.pw_shell or "/bin/sh",
        gecos=entry.pw_gecos.split(",")[0],
    )


def _group(gid: int) -> dict[str, Any]:
    try:
        return {"name": grp.getgrgid(gid).gr_name, "gid": gid}
    except KeyError:
        raise IdentityError("groups", f"gid {gid} has no name on this host") from None


def identity_from_auth_state(username: str, auth_state: Mapping[str, Any] | None) -> UserIdentity | None:
    """The identity an authenticator stored in ``auth_state`` under ``"identity"`` (``uid``,
    ``gid``, ``group``, ``groups``: ``[{"name", "gid"}]``, ``home``, ``shell``), e.g. from LDAP's
    ``uidNumber``/``gidNumber``; None when it stored none. The name is the hub's user name."""
    found = (auth_state or {}).get("identity")
    if found is None:
        return None
    if not isinstance(found, Mapping):
        raise IdentityError("auth_state.identity", "must be a mapping")
    fields = dict(found)
    primary = fields.pop("group", None)
    if "gid" in fields:
        primary = {"name": primary if isinstance(primary, str) else username, "gid": fields.pop("gid")}
    return UserIdentity.make(username=username, group=primary, **fields)


async def resolve_identity(source: Any, spawner: Any) -> UserIdentity:
    """The identity of ``spawner``'s user from ``source``: ``"nss"`` (:func:`identity_from_nss`),
    ``"auth_state"`` (:func:`identity_from_auth_state` on the user's stored ``auth_state``) or a
    callable ``f(spawner)`` (may be async) returning a :class:`UserIdentity` or its fields as a dict.
    The batch spawners (``ContainerOptions.identity_source``) and the KubeSpawner hook
    (:mod:`jupyterhub_hpc.containers.kube`) both resolve through here; :class:`IdentityError` when it
    cannot be resolved."""
    user: Any = getattr(spawner, "user", None)
    name = str(getattr(user, "name", ""))
    if callable(source):
        found = source(spawner)
        if inspect.isawaitable(found):
            found = await found
        return found if isinstance(found, UserIdentity) else UserIdentity.make(**dict(found))
    if source == "auth_state":
        state = await user.get_auth_state() if user is not None else None
        found_state = identity_from_auth_state(name, state)
        if found_state is None:
            raise IdentityError("auth_state.identity", "the authenticator stored no identity for this user")
        return found_state
    if source == "nss":
        return identity_from_nss(name)
    raise IdentityError("identity_source", f"{source!r} is not 'nss', 'auth_state' or a callable")
