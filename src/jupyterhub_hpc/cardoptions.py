"""The spawner options of the job card and of the Jupyter server extension (issue 14).

:class:`JobCardOptions` is mixed into every spawner of this package: the walltime
warning thresholds the JupyterLab extension reads from the card, the autosave time,
the announcements service the server may reach, and the scopes of the server's own
API token (JupyterHub's defaults plus what the server extension needs).
"""

from __future__ import annotations

from typing import Any

from sqlalchemy.orm import object_session
from traitlets import Integer, List, TraitError, Unicode, default, validate
from traitlets.config import Configurable

__all__ = ["DEFAULT_SERVER_SCOPES", "JobCardOptions", "announcements_environment", "hpc_server_token_scopes"]

#: the variable the server extension (:mod:`jupyterhub_hpc.lab`) reads the service's URL from
ANNOUNCEMENTS_URL_ENV = "JUPYTERHUB_HPC_ANNOUNCEMENTS_URL"

#: the scopes of JupyterHub's built-in ``server`` role (its default for server tokens), used
#: when the hub's database cannot be asked for the role as the admin may have changed it
DEFAULT_SERVER_SCOPES = ("users:activity!user", "access:servers!server")


def _server_role_scopes(spawner: Any) -> list[str]:
    """The scopes of the hub's ``server`` role now (``c.JupyterHub.load_roles`` may change it),
    as JupyterHub itself uses them when ``server_token_scopes`` is empty."""
    orm_spawner = getattr(spawner, "orm_spawner", None)
    session = object_session(orm_spawner) if orm_spawner is not None else None
    if session is not None:
        from jupyterhub import orm

        role = orm.Role.find(session, "server")
        if role is not None:
            return list(role.scopes)
    return list(DEFAULT_SERVER_SCOPES)


def hpc_server_token_scopes(spawner: Any) -> list[str]:
    """``Spawner.server_token_scopes`` of this package's spawners: the ``server`` role's scopes,
    ``servers!server`` (JupyterHub fills in ``=<user>/<name>``: the server may ask the hub to stop
    itself) and ``access:services!service=<announcements_service>`` when one is set. JupyterHub
    then grants the subset the user holds."""
    scopes = _server_role_scopes(spawner)
    extra = ["servers!server"]
    service = str(getattr(spawner, "announcements_service", "") or "")
    if service:
        extra.append(f"access:services!service={service}")
    return scopes + [s for s in extra if s not in scopes]


def announcements_environment(spawner: Any) -> dict[str, str]:
    """``JUPYTERHUB_HPC_ANNOUNCEMENTS_URL`` for the server: the announcements service's own URL
    (as the hub reaches it, e.g. ``http://127.0.0.1:10101/services/hpc-announcements/``), when
    ``announcements_service`` names a service of the hub that has a URL; else nothing."""
    name = str(getattr(spawner, "announcements_service", "") or "")
    orm_spawner = getattr(spawner, "orm_spawner", None)
    session = object_session(orm_spawner) if name and orm_spawner is not None else None
    if session is None:
        return {}
    from jupyterhub import orm

    service = orm.Service.find(session, name)
    server = service.server if service is not None else None
    if server is None or not server.port:
        return {}
    host = server.ip or "127.0.0.1"
    return {ANNOUNCEMENTS_URL_ENV: f"{server.proto}://{host}:{server.port}{server.base_url}"}


class JobCardOptions(Configurable):
    """Walltime warnings, autosave and the server token's scopes (see the module docstring)."""

    walltime_warnings = List(
        Integer(),
        default_value=[900, 300],
        help="""
        When JupyterLab warns that the job's time is running out, in seconds before the
        scheduler's end time of the job: one notification per threshold, with the actions
        "Save all" and "Stop server now". The default warns 15 and 5 minutes before the
        end. Set per profile like any option (``"walltime_warnings": [1800, 600]`` in a
        profile's overrides); an empty list means no warnings. The thresholds reach the Lab
        through the job card (``walltime.warn_seconds``).
        """,
    ).tag(config=True)

    @validate("walltime_warnings")
    def _valid_warnings(self, proposal: Any) -> list[int]:
        values = [int(v) for v in proposal["value"]]
        if any(v <= 0 for v in values):
            raise TraitError(f"walltime_warnings must be positive seconds, not {values}")
        return sorted(set(values), reverse=True)

    walltime_autosave = Integer(
        120,
        help="""
        Seconds before the scheduler's end time of the job at which JupyterLab saves every
        open document (JupyterLab's "Save all"), so that the work is on disk when the job
        is killed at its time limit. 0 turns autosaving off. Shown in the job card as
        ``walltime.autosave_seconds`` (null when off).
        """,
    ).tag(config=True)

    @validate("walltime_autosave")
    def _valid_autosave(self, proposal: Any) -> int:
        value = int(proposal["value"])
        if value < 0:
            raise TraitError(f"walltime_autosave must be 0 (off) or positive seconds, not {value}")
        return value

    announcements_service = Unicode(
        "hpc-announcements",
        help="""
        The name of the hub-managed announcements service (``python -m
        jupyterhub_hpc.announcements``) the user's server may call with its own API token
        (``access:services!service=<name>`` is added to the token's scopes; users must hold
        that scope, e.g. through a role, for JupyterHub to grant it). Empty: no service, and
        the scope is not requested.
        """,
    ).tag(config=True)

    @default("server_token_scopes")
    def _default_server_token_scopes(self) -> Any:
        # JupyterHub calls it at each spawn with the spawner; an admin's own setting wins
        return hpc_server_token_scopes
