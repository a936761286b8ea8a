"""The Jupyter server extension of jupyterhub-hpc: the job card and its actions inside the user's server.

Enabled by ``etc/jupyter/jupyter_server_config.d/jupyterhub_hpc.json`` (shipped in the wheel's data
files). Routes under the server's base URL (:mod:`jupyterhub_hpc.lab.handlers`):
``jupyterhub-hpc/card``, ``jupyterhub-hpc/stop``, ``jupyterhub-hpc/announcements`` and
``jupyterhub-hpc/announcements/<id>/dismiss``, and ``jupyterhub-hpc/activity`` with the use
reports to the hub (:mod:`jupyterhub_hpc.lab.activity`), ``jupyterhub-hpc/modules`` with the
per-kernel module sets and the kernel presets (:mod:`jupyterhub_hpc.lab.modules`),
``jupyterhub-hpc/kernels`` with the server's kernel jobs (:mod:`jupyterhub_hpc.lab.kernels`). At start it
takes back the kernel jobs a previous server process left running (:mod:`jupyterhub_hpc.kernels.adopt`).
Nothing happens at import time.
"""

from __future__ import annotations

from typing import Any

__all__ = ["_jupyter_server_extension_points", "_load_jupyter_server_extension"]


def _jupyter_server_extension_points() -> list[dict[str, str]]:
    return [{"module": "jupyterhub_hpc.lab"}]


def _load_jupyter_server_extension(serverapp: Any) -> None:
    from .activity import setup_activity
    from .handlers import setup_handlers
    from .kernels import setup_kernel_routes
    from .modules import setup_modules

    state = setup_handlers(serverapp.web_app, serverapp.log)
    setup_activity(serverapp, state.client)
    setup_modules(serverapp, state)
    backend = serverapp.config.get("HPCProvisioner", {}).get("backend", "slurm")
    setup_kernel_routes(serverapp.web_app, state, backend=str(backend))
    setup_kernel_jobs(serverapp)


def setup_kernel_jobs(serverapp: Any) -> None:
    """Keep the sessions across a server restart and take back the kernel jobs the previous
    server process left running (:mod:`jupyterhub_hpc.kernels.adopt`)."""
    from ..kernels.adopt import adopt_kernel_jobs, persist_sessions

    if not hasattr(serverapp.kernel_manager, "_kernels"):
        serverapp.log.info(
            "jupyterhub-hpc: kernel jobs are not taken back by %s", type(serverapp.kernel_manager)
        )
        return
    persist_sessions(serverapp.session_manager, serverapp.kernel_manager)
    loop = serverapp.io_loop
    if loop.asyncio_loop.is_running():
        loop.add_callback(adopt_kernel_jobs, serverapp.kernel_manager)
    else:
        # before the first request: a session whose kernel is not back yet would be dropped
        loop.run_sync(lambda: adopt_kernel_jobs(serverapp.kernel_manager), timeout=120)
