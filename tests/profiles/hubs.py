"""A real JupyterHub configured with profiles (tests/hub.py plus the profile endpoints), and helpers
to talk to it as a user (token, browser-like session) and to read what Slurm was asked for."""

from __future__ import annotations

import json
import subprocess
import time
from pathlib import Path
from typing import Any

import jupyterhub
import requests

from hub import Hub, wait_for

#: appended to tests/hub.py's config: what docs/profiles.md tells an admin to add
PROFILES_CONFIG = r"""
from jupyterhub_hpc.profiles import check_profiles
from jupyterhub_hpc.profiles.handlers import all_handlers

c.JupyterHub.extra_handlers = all_handlers
check_profiles(c)
"""

#: hub settings for quick tests (tests/e2e uses the same)
FAST = {"memory": "400M", "status_interval": 3.0, "command_timeout": 20.0, "poll_interval": 3}


def options_body(options: dict[str, Any]) -> dict[str, Any]:
    """A server-start body: ``{"user_options": ...}`` from JupyterHub 6 on, the options themselves before."""
    return {"user_options": options} if jupyterhub.version_info >= (6,) else options


def make_hub(root: Path, spawner_class: str, config: dict[str, dict[str, Any]], **spawner: Any) -> Hub:
    hub = Hub(root, spawner=spawner, spawner_class=spawner_class, config=config)
    path = root / "jupyterhub_config.py"
    path.write_text(path.read_text() + PROFILES_CONFIG)
    return hub


def reconfigure(hub: Hub, config: dict[str, dict[str, Any]]) -> None:
    """New configuration for the next start (the hub must be stopped)."""
    hub.settings["config"] = config
    (hub.root / "settings.json").write_text(json.dumps(hub.settings))


def token_for(hub: Hub, user: str, scopes: list[str] | None = None) -> str:
    hub.ensure_user(user)
    r = hub.api("POST", f"/users/{user}/tokens", json={"scopes": scopes or [f"read:servers!user={user}"]})
    r.raise_for_status()
    return str(r.json()["token"])


def as_user(hub: Hub, method: str, path: str, token: str, **kwargs: Any) -> requests.Response:
    return hub.api(method, path, headers={"Authorization": f"token {token}"}, **kwargs)


def login(hub: Hub, user: str) -> requests.Session:
    """A browser-like session (cookies, XSRF) logged in through the login form."""
    session = requests.Session()
    page = session.get(f"{hub.url}/hub/login", timeout=30)
    xsrf = session.cookies.get("_xsrf") or ""
    r = session.post(
        f"{hub.url}/hub/login",
        data={"username": user, "password": hub.password, "_xsrf": xsrf},
        timeout=30,
        allow_redirects=False,
    )
    assert r.status_code == 302, (page.status_code, r.status_code, r.text[:300])
    return session


def job_id(hub: Hub, user: str) -> str:
    return str(hub.user_model(user)["servers"][""]["state"]["job_id"])


def scontrol(job: str) -> dict[str, str]:
    """``scontrol show job`` as {key: value}."""
    out = subprocess.run(["scontrol", "show", "job", job], capture_output=True, text=True, check=True).stdout
    fields: dict[str, str] = {}
    for token in out.split():
        key, sep, value = token.partition("=")
        if sep and key not in fields:
            fields[key] = value
    return fields


def wait_ready(hub: Hub, user: str, timeout: float = 150) -> dict[str, Any]:
    def ready() -> dict[str, Any] | None:
        server = hub.user_model(user)["servers"].get("")
        if server is None:
            raise AssertionError(f"{user}'s server is gone:\n{hub.log_tail(40)}")
        return server if server.get("ready") else None

    return dict(wait_for(ready, timeout, interval=0.5, message=f"{user} not ready:\n{hub.log_tail(40)}"))


def stop_all(hub: Hub, users: list[str]) -> list[str]:
    """Stop every server of ``users`` (best effort); the Slurm job ids they had."""
    jobs = []
    if hub.proc is None or hub.proc.poll() is not None:
        return jobs
    for user in users:
        try:
            server = hub.user_model(user)["servers"].get("")
        except Exception:
            continue
        if server:
            job = (server.get("state") or {}).get("job_id")
            if job:
                jobs.append(str(job))
            hub.api("DELETE", f"/users/{user}/server")
    deadline = time.monotonic() + 60
    for user in users:
        while time.monotonic() < deadline:
            try:
                if not hub.user_model(user)["servers"]:
                    break
            except Exception:
                break
            time.sleep(0.3)
    return jobs


def cancel(jobs: list[str]) -> None:
    if jobs:
        subprocess.run(["scancel", *jobs], check=False)
