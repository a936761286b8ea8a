"""The hub's side of the service: what goes into ``jupyterhub_config.py``.

    from jupyterhub_hpc.announcements import announcements_service
    ann = announcements_service(writer_groups=["hpc-staff"])
    c.JupyterHub.services.extend(ann["services"])
    c.JupyterHub.custom_scopes.update(ann["custom_scopes"])
    c.JupyterHub.load_roles.extend(ann["load_roles"])
    c.JupyterHub.template_vars.update(ann["template_vars"])

(docs/lab.md, "Announcements", shows the same as plain dictionaries.)"""

from __future__ import annotations

import html
import sys
from collections.abc import Sequence
from typing import Any

from .auth import WRITE_SCOPE

__all__ = ["SERVICE_NAME", "announcements_service", "hub_snippet"]

SERVICE_NAME = "hpc-announcements"


def hub_snippet(base_url: str = "/", name: str = SERVICE_NAME) -> str:
    """The HTML that JupyterHub's home and spawn pages show in their ``announcement`` slot: a frame of
    the service's ``embed`` page (which gets the user's hub login through the service's OAuth, as
    any page of the service does) and the script that sizes it to its content."""
    prefix = html.escape(f"{base_url.rstrip('/')}/services/{name}/", quote=True)
    return (
        f'<iframe id="hpc-announcements" class="hpc-announcements" src="{prefix}embed" '
        f'title="Announcements" hidden style="width:100%;border:0;height:0"></iframe>'
        f'<script src="{prefix}static/hub.js"></script>'
    )


def announcements_service(
    *,
    port: int = 10101,
    base_url: str = "/",
    name: str = SERVICE_NAME,
    writer_groups: Sequence[str] = (),
    writer_users: Sequence[str] = (),
    args: Sequence[str] = (),
    cwd: str | None = None,
    python: str = sys.executable,
    existing_announcements: dict[str, str] | None = None,
) -> dict[str, Any]:
    """The hub configuration for a hub-managed announcements service.

    ``services``: the service (``python -m jupyterhub_hpc.announcements`` on ``127.0.0.1:port``,
    OAuth without a confirmation page, asking for the write scope so that a writer's browser
    login carries it). ``custom_scopes``: ``custom:announcements:write``. ``load_roles``: the
    service's own role (``read:users:groups`` for audiences by group, ``read:servers`` for the
    hub cards of users' servers), the ``user`` role extended with access to the service, and a
    writers role for ``writer_groups``/``writer_users``. ``template_vars``: the home and spawn
    pages' announcement slot (``existing_announcements``, e.g. a static ``announcement_home``,
    are kept in front of it). ``args`` are passed to the service (``--AnnouncementsApp.db_url=...``);
    ``cwd`` is its directory (the default SQLite database goes there)."""
    service: dict[str, Any] = {
        "name": name,
        "url": f"http://127.0.0.1:{port}",
        "command": [python, "-m", "jupyterhub_hpc.announcements", *args],
        "oauth_no_confirm": True,
        "oauth_client_allowed_scopes": [WRITE_SCOPE],
    }
    if cwd:
        service["cwd"] = cwd
    access = f"access:services!service={name}"
    roles: list[dict[str, Any]] = [
        {
            "name": f"{name}-service",
            "description": "The announcements service: reads users' groups and their servers' job cards",
            "services": [name],
            "scopes": ["read:users:groups", "read:servers"],
        },
        {"name": "user", "scopes": ["self", access]},
    ]
    if writer_groups or writer_users:
        roles.append(
            {
                "name": f"{name}-writers",
                "description": "May create, edit and delete announcements",
                "scopes": [WRITE_SCOPE, access],
                "groups": list(writer_groups),
                "users": list(writer_users),
            }
        )
    existing = existing_announcements or {}
    snippet = hub_snippet(base_url, name)
    template_vars = {
        key: existing.get(key, "") + snippet for key in ("announcement_home", "announcement_spawn")
    }
    return {
        "services": [service],
        "custom_scopes": {
            WRITE_SCOPE: {
                "description": "Create, edit and delete announcements of the hpc-announcements service."
            }
        },
        "load_roles": roles,
        "template_vars": template_vars,
    }
