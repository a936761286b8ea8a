"""The server's software modules, loaded by the launcher before the server starts.

The hub puts the cluster's module system (``JUPYTERHUB_HPC_MODULE_SYSTEM``) and the server's
validated modules (``JUPYTERHUB_HPC_MODULES``) into the job's environment. The launcher loads
them with the site's real module command (:func:`jupyterhub_hpc.modules.load_environment`: a
child bash, names as arguments), and the server starts in the environment that load left, so
every kernel and terminal of the server has them. A failed load ends the job at once with one
line naming the modules and the tool's own message, which the hub shows in the spawn's progress.

:mod:`jupyterhub_hpc.modules` (pydantic) is imported only when a job has modules: the launcher
itself imports nothing beyond the standard library.
"""

from __future__ import annotations

from collections.abc import Mapping

__all__ = ["MODULE_SYSTEM_ENV", "SERVER_MODULES_ENV", "load_server_modules"]

#: the names :mod:`jupyterhub_hpc.modules` gives them (a unit test checks they are the same)
MODULE_SYSTEM_ENV = "JUPYTERHUB_HPC_MODULE_SYSTEM"
SERVER_MODULES_ENV = "JUPYTERHUB_HPC_MODULES"
PREFIX = "jupyterhub-hpc-singleuser"


def load_server_modules(env: Mapping[str, str]) -> dict[str, str]:
    """``env`` after loading the job's modules (``env`` itself when it has none); a failed
    load raises ``SystemExit`` with one line: ``loading modules X failed: <the tool's message>``."""
    if not env.get(SERVER_MODULES_ENV) or not env.get(MODULE_SYSTEM_ENV):
        return dict(env)
    from ..modules import ModuleLoadError, ModuleSystem, ServerModules, load_environment

    try:
        system = ModuleSystem.from_env(env[MODULE_SYSTEM_ENV])
        chosen = ServerModules.from_env(env[SERVER_MODULES_ENV])
    except ValueError as exc:
        raise SystemExit(
            f"{PREFIX}: the job's module settings are invalid: {' '.join(str(exc).split())}"
        ) from None
    names = chosen.to_load()
    if not names and not chosen.purge:
        return dict(env)
    shown = " ".join(names) or "(none)"
    try:
        loaded = load_environment(system, names, purge=chosen.purge, env=env)
    except ModuleLoadError as exc:
        message = " ".join(str(exc).split())
        raise SystemExit(f"{PREFIX}: loading modules {shown} failed: {message}") from None
    print(f"{PREFIX}: loaded modules {shown}" + (" after a purge" if chosen.purge else ""), flush=True)
    return loaded
