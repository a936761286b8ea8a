"""What :func:`~.validate.resolve` works with: the target of a profile, the caller's context
(the user, the admin's base values, the limits and module catalogues the caller fetched) and
the resolution it returns. :mod:`.validate` re-exports all three."""

from __future__ import annotations

import hashlib
import json
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from ..backends.reservations import WalltimeCap
from ..modules import ServerModules
from ..request import JobRequest, RequestError
from .limits import ClusterLimits
from .model import Profile
from .modulespec import ModuleSource

__all__ = ["Context", "Resolution", "Target"]


@dataclass(frozen=True)
class Target:
    """The scheduler a profile submits to: backend, cluster, and how its commands are run."""

    backend: str | None
    cluster: str = ""
    commands: Mapping[str, str] = field(default_factory=dict)
    environment: Mapping[str, str] = field(default_factory=dict)

    @property
    def key(self) -> str:
        """``backend/cluster``, plus a digest when commands or environment differ from the admin's."""
        base = f"{self.backend or ''}/{self.cluster}"
        if not self.commands and not self.environment:
            return base
        extra = json.dumps([sorted(self.commands.items()), sorted(self.environment.items())])
        return f"{base}+{hashlib.sha256(extra.encode()).hexdigest()[:8]}"


@dataclass(frozen=True)
class Context:
    """Everything :func:`resolve` needs besides the options: who asks, and the site's state."""

    user: str
    groups: frozenset[str] = frozenset()
    #: the admin's job request fields before any profile (empty for non-batch spawners)
    base_job: Mapping[str, Any] = field(default_factory=dict)
    base_backend: str | None = None
    base_cluster: str = ""
    #: limits by :attr:`Target.key`, fetched by the caller
    limits: Mapping[str, ClusterLimits] = field(default_factory=dict)
    #: by :attr:`Target.key`, then partition: the longest walltime ending before its next
    #: maintenance (:mod:`jupyterhub_hpc.maintenance`), and what a longer request gets
    walltime_caps: Mapping[str, Mapping[str, WalltimeCap]] = field(default_factory=dict)
    maintenance_policy: str = "off"  # clip | refuse | off (``maintenance_walltime``)
    maintenance_time_min: bool = False
    #: the form's maintenance notes: {"target", "partition", "text"}
    maintenance_notes: tuple[Mapping[str, str], ...] = ()
    #: by profile slug: the module system and catalogue of that profile's cluster (the
    #: profiles with a ``modules`` option and a module system), fetched by the caller
    modules: Mapping[str, ModuleSource] = field(default_factory=dict)

    def limits_for(self, target: Target) -> ClusterLimits | None:
        return None if target.backend is None else self.limits.get(target.key)


@dataclass
class Resolution:
    """A validated request: the normalised options, the overrides to apply, the job fields."""

    profile: Profile
    user_options: dict[str, Any]
    overrides: list[tuple[str, Any]]
    #: the job request's fields (memory in MiB, walltime in seconds); empty for non-batch spawners
    job: dict[str, Any]
    backend: str | None
    cluster: str
    notices: list[str] = field(default_factory=list)
    request: JobRequest | None = None
    #: ``--time-min`` (seconds) to submit with (``maintenance_time_min``), else None
    time_min: int | None = None
    #: the modules the job loads before its server starts (a ``modules`` option), else None
    server_modules: ServerModules | None = None

    def job_request(self) -> JobRequest:
        if self.request is None:
            raise RequestError("profile", "this profile makes no job request")
        return self.request
