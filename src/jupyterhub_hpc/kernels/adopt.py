"""A restarted Jupyter server takes back the kernel jobs its previous process left running.

Once a kernel job is ready, the provisioner leaves an attach record beside the connection file
(in ``HPCProvisioner.kernel_directory``, shared with the compute nodes),
``kernel-<id>.hpc-attach.json`` (0600): the kernel's name, its working directory and the
provisioner info (job id, generation, connection). Shutting the kernel down removes it.

When the server starts again after its process died (a crash, ``kill -9``, the node of a server
job failing), the server extension calls :func:`adopt_kernel_jobs`. For every record whose job
the scheduler still runs, it builds a kernel manager from the record (the same kernel id, the
same connection, :meth:`~.provisioner.HPCProvisioner.load_provisioner_info`) and adds it to the
server's kernel map, so that ``/api/kernels`` lists it and a client reconnects to the kernel with
its state. A record of a job that ended is removed. A server that is *stopped* shuts its kernels
down first (jupyter_server's own shutdown), and their jobs end with it.

The server's sessions (notebook <-> kernel) are kept in a private SQLite file in the same
directory (:func:`persist_sessions`; the server's runtime directory may be private to its node),
so that a notebook finds its kernel again. jupyter_server drops any session whose kernel is gone.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

from .files import ATTACH_SUFFIX, read_json

__all__ = ["adopt_kernel_jobs", "persist_sessions"]

SESSIONS_FILE = "jupyterhub-hpc-sessions.db"


def persist_sessions(session_manager: Any, kernel_manager: Any) -> None:
    """Keep the server's sessions in a 0600 SQLite file in the kernel directory unless the admin
    chose a file already (``SessionManager.database_filepath``); before its first use (it
    connects lazily)."""
    from .provisioner import HPCProvisioner

    if session_manager.database_filepath != ":memory:":
        return
    directory = HPCProvisioner(parent=kernel_manager).kernel_directory
    path = os.path.join(directory, SESSIONS_FILE)
    os.makedirs(directory, mode=0o700, exist_ok=True)
    os.close(os.open(path, os.O_WRONLY | os.O_CREAT, 0o600))
    session_manager.database_filepath = path


async def adopt_kernel_jobs(kernel_manager: Any) -> list[str]:
    """Add the still-running kernel jobs of the attach records in the kernel directory (the
    server's ``HPCProvisioner.kernel_directory``) to the server's ``kernel_manager``; the kernel
    ids taken back."""
    from jupyter_client.provisioning.factory import KernelProvisionerFactory
    from jupyter_server._tz import utcnow

    from .provisioner import HPCProvisioner

    directory = HPCProvisioner(parent=kernel_manager).kernel_directory
    adopted: list[str] = []
    for record_path in sorted(Path(directory).glob(f"kernel-*{ATTACH_SUFFIX}")):
        record = read_json(record_path)
        info = record.get("provisioner") if record else None
        if not isinstance(info, dict) or not isinstance(info.get("kernel_id"), str):
            record_path.unlink(missing_ok=True)
            continue
        kernel_id: str = info["kernel_id"]
        if kernel_id in kernel_manager:
            continue
        assert record is not None
        try:
            km = kernel_manager.kernel_manager_factory(
                connection_file=str(info.get("connection_file", "")),
                parent=kernel_manager,
                log=kernel_manager.log,
                kernel_name=str(record.get("kernel_name", "")),
            )
            km.kernel_id = kernel_id
            provisioner = KernelProvisionerFactory.instance(
                parent=kernel_manager.parent
            ).create_provisioner_instance(kernel_id, km.kernel_spec, parent=km)
        except Exception as exc:  # the kernelspec was removed, or is no longer a batch one
            kernel_manager.log.warning("kernel job of %s not taken back: %s", kernel_id, exc)
            continue
        if not isinstance(provisioner, HPCProvisioner):
            continue
        km.provisioner = provisioner
        await provisioner.load_provisioner_info(info)
        if provisioner._job_ended() or await provisioner.poll() is not None:
            kernel_manager.log.info(
                "kernel %s: its job %s ended; not taken back", kernel_id, provisioner.job_id
            )
            provisioner.job_id = ""
            record_path.unlink(missing_ok=True)
            continue
        provisioner._cwd = str(record.get("cwd") or "")
        km.load_connection_info(provisioner.connection_info)
        km._launch_args = {"cwd": provisioner._cwd} if provisioner._cwd else {}
        if not km.ready.done():
            km.ready.set_result(None)
        km._connect_control_socket()
        km.start_restarter()
        kernel_manager._kernels[kernel_id] = km
        kernel_manager._kernel_connections[kernel_id] = 0
        km.execution_state = "idle"
        km.reason = ""
        km.last_activity = utcnow()
        kernel_manager._kernel_ports[kernel_id] = km.ports
        kernel_manager.start_watching_activity(kernel_id)
        kernel_manager.add_restart_callback(
            kernel_id, lambda kid=kernel_id: kernel_manager._handle_kernel_died(kid), "dead"
        )
        kernel_manager.log.info("kernel %s: took back its job %s", kernel_id, provisioner.job_id)
        adopted.append(kernel_id)
    return adopted
