"""Spawner classes with profiles: for batch jobs, and JupyterHub's ``LocalProcessSpawner``.

``c.JupyterHub.spawner_class = "slurm-profiles"`` (or ``"hpc-profiles"``,
``"localprocess-profiles"``) and set ``profile_list``. A profile may name its own
``backend`` and ``cluster``: they are traits of :class:`HPCSpawner`, set for that
start, and the spawner records them with the job, so polling and stopping after a
hub restart go to the right scheduler (no wrapped child spawner).
"""

from __future__ import annotations

from typing import Any

from jupyterhub.spawner import LocalProcessSpawner
from traitlets import default

from ..local_spawner import LocalHPCSpawner
from ..request import JobRequest
from ..spawner import HPCSpawner
from .mixin import ProfilesMixin

__all__ = [
    "ProfilesHPCSpawner",
    "ProfilesLocalHPCSpawner",
    "ProfilesLocalProcessSpawner",
    "ProfilesSlurmSpawner",
]


class ProfilesHPCSpawner(ProfilesMixin, HPCSpawner):
    """:class:`HPCSpawner` whose job request comes from the chosen profile.

    Without ``profile_list`` it behaves exactly like :class:`HPCSpawner`.
    """

    def profile_base_job(self) -> dict[str, Any]:
        """Every job-request field that is also a trait of this spawner, as configured."""
        base: dict[str, Any] = {}
        for name in JobRequest.model_fields:
            if self.has_trait(name):
                value = self._base_trait(name)
                base[name] = None if value == "" else value
        return base

    def job_request(self) -> JobRequest:
        """The request validated for this start (the profile's), else HPCSpawner's own."""
        if self.profile_resolution is not None and self.profile_resolution.request is not None:
            return self.profile_resolution.request
        return super().job_request()


class ProfilesSlurmSpawner(ProfilesHPCSpawner):
    """Slurm jobs with profiles (``c.JupyterHub.spawner_class = "slurm-profiles"``)."""

    @default("backend")
    def _default_backend(self) -> str:
        return "slurm"


class ProfilesLocalHPCSpawner(ProfilesHPCSpawner, LocalHPCSpawner):
    """Local batch jobs with profiles (``c.JupyterHub.spawner_class = "local-hpc-profiles"``),
    the demo's spawner."""


class ProfilesLocalProcessSpawner(ProfilesMixin, LocalProcessSpawner):
    """JupyterHub's ``LocalProcessSpawner`` with profiles (overrides of its traits only)."""
