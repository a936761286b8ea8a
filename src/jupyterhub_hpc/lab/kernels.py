"""The kernel jobs of this server (issue 16) for JupyterLab: ``GET <base_url>jupyterhub-hpc/kernels``.

The answer is ``{"kernels": [...]}``, one :meth:`~jupyterhub_hpc.kernels.provisioner.HPCProvisioner.describe`
for each kernel job of this server process (:data:`~jupyterhub_hpc.kernels.provisioner.KERNEL_JOBS`):
``kernel_id``, ``job_id``, ``backend``, ``state`` (``PENDING``, ``RUNNING``, ...), ``reason`` in plain
words, ``expected_start`` and ``end_time`` (ISO), ``node``, ``generation`` and ``ended`` (why the job
ended or its start failed, with the tail of its output; ``''`` while all is well).

It reads the provisioners' cached status only (the server's one batched status query per interval,
:class:`~jupyterhub_hpc.watcher.QueueWatcher`): polling this route never queries the scheduler.
A kernel job is listed from its submit on, also while jupyter_server has not added the starting
kernel to its kernel list yet. The Lab polls it only while a batch kernel is starting (docs/kernels.md).
Authenticated as every Jupyter Server API handler.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping
from typing import Any

from jupyter_server.utils import url_path_join
from tornado import web

from .handlers import _HubRoute
from .hub import HubReply

__all__ = ["describe_kernel_jobs", "setup_kernel_routes"]

log = logging.getLogger(__name__)


def describe_kernel_jobs(jobs: Mapping[str, Any] | None = None) -> list[dict[str, Any]]:
    """``describe()`` of every kernel job in ``jobs`` (default: this process's ``KERNEL_JOBS``), in
    submit order; a provisioner that cannot describe itself is left out (and logged)."""
    if jobs is None:
        from ..kernels.provisioner import KERNEL_JOBS

        jobs = KERNEL_JOBS
    described = []
    for kernel_id, provisioner in list(jobs.items()):
        try:
            described.append(dict(provisioner.describe()))
        except Exception as exc:  # one broken entry must not hide the others
            log.warning("jupyterhub-hpc: kernel %s not described: %s", kernel_id, exc)
    return described


class KernelJobsRoute(_HubRoute):
    @web.authenticated
    async def get(self) -> None:
        self._answer(HubReply(200, {"kernels": describe_kernel_jobs()}))


def setup_kernel_routes(web_app: Any, state: Any) -> None:
    """Add ``jupyterhub-hpc/kernels`` to the server's tornado application."""
    base = url_path_join(web_app.settings["base_url"], "jupyterhub-hpc")
    web_app.add_handlers(".*$", [(url_path_join(base, "kernels"), KernelJobsRoute, {"state": state})])
