"""The announcements service (``hpc-announcements``): announcements targeted by group, user,
profile, cluster and partition, written by holders of ``custom:announcements:write``, read through
a REST API, on the hub's home and spawn pages, and in JupyterLab (through the server extension).

Run by the hub: ``python -m jupyterhub_hpc.announcements``; configure the hub with
``announcements_service()``."""

from __future__ import annotations

from .config import SERVICE_NAME, announcements_service, hub_snippet

__all__ = ["SERVICE_NAME", "announcements_service", "hub_snippet"]
