"""In the user's Jupyter server: a kernel that is running code counts as activity.

Jupyter Server counts a kernel's messages as activity, not its work: a cell that trains a
model for an hour without printing leaves the server's ``last_activity`` (which
jupyterhub-singleuser reports to the hub, and which the hub's idle policy reads,
:mod:`jupyterhub_hpc.idle`) at the cell's start, and the server would be stopped as idle
in the middle of the computation. This Jupyter Server extension marks the server active
every ``interval`` seconds while any kernel is busy, through the hook Jupyter Server
offers for it (a web-app setting whose name ends in ``_last_activity`` is counted by
``ServerApp.last_activity()``).

Enabled by ``jpserver_extensions`` (``{"jupyterhub_hpc.busykernels": true}``); another
extension of this package may call :func:`watch_busy_kernels` from its own loader instead.
"""

from __future__ import annotations

from datetime import datetime, timezone
from typing import Any

from tornado.ioloop import PeriodicCallback
from traitlets import Float
from traitlets.config import Configurable

__all__ = ["SETTING", "BusyKernels", "any_kernel_busy", "watch_busy_kernels"]

#: the web-app setting this extension keeps (its name ends in ``_last_activity``)
SETTING = "jupyterhub_hpc_busy_kernels_last_activity"


class BusyKernels(Configurable):
    """How often a busy kernel is counted as activity."""

    interval = Float(
        60.0,
        min=0.1,
        help="""
        Seconds between the checks of the kernels' execution state; while any kernel is
        busy, each check counts as activity of the server (reported to JupyterHub with the
        server's other activity every JUPYTERHUB_ACTIVITY_INTERVAL seconds). Keep it well
        below the hub's idle_timeout.
        """,
    ).tag(config=True)


def any_kernel_busy(kernel_manager: Any) -> bool:
    """Whether a kernel of ``kernel_manager`` (Jupyter Server's) is running code now."""
    return any(k.get("execution_state") == "busy" for k in kernel_manager.list_kernels())


def _mark(serverapp: Any) -> None:
    if any_kernel_busy(serverapp.kernel_manager):
        serverapp.web_app.settings[SETTING] = datetime.now(timezone.utc)


def watch_busy_kernels(serverapp: Any) -> PeriodicCallback:
    """Start the periodic check in ``serverapp`` (a Jupyter ``ServerApp``); return it."""
    interval = BusyKernels(parent=serverapp).interval
    callback = PeriodicCallback(lambda: _mark(serverapp), interval * 1000)
    callback.start()
    return callback


def _jupyter_server_extension_points() -> list[dict[str, str]]:
    return [{"module": "jupyterhub_hpc.busykernels"}]


def _load_jupyter_server_extension(serverapp: Any) -> None:
    watch_busy_kernels(serverapp)
    serverapp.log.info("jupyterhub_hpc.busykernels: a busy kernel counts as activity")
