"""A real JupyterHub (with configurable-http-proxy) as a subprocess, for end-to-end tests.

The process itself (started, waited for, stopped) is ``jupyterhub_hpc.hubprocess``'s, as the
demo's and the benchmarks' hubs are."""

from __future__ import annotations

import json
import os
import pwd
import secrets
import subprocess
import sys
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import requests

from jupyterhub_hpc.hubprocess import API_PATH, HubProcess, free_port, hub_environment, log_tail

VENV_BIN = Path(sys.executable).parent

CONFIG = r'''
import json, os
from jupyterhub_hpc.handlers import api_handlers

settings = json.load(open(os.environ["HPC_TEST_SETTINGS"]))
c.JupyterHub.bind_url = settings["bind_url"]
c.JupyterHub.hub_ip = "127.0.0.1"
c.JupyterHub.hub_port = settings["hub_port"]
c.ConfigurableHTTPProxy.api_url = settings["proxy_api_url"]
c.ConfigurableHTTPProxy.auth_token = settings["proxy_token"]
c.JupyterHub.db_url = "sqlite:///" + settings["db"]
c.JupyterHub.cookie_secret_file = settings["cookie_secret"]
c.JupyterHub.pid_file = settings["pid_file"]
c.JupyterHub.authenticator_class = "dummy"
c.DummyAuthenticator.password = settings["password"]
c.Authenticator.allow_all = True
# the test's own service (its token is admin_token) and role; the services and roles a test adds
# (config JupyterHub.services / load_roles) come after them
c.JupyterHub.services = [{"name": "test", "api_token": settings["admin_token"]}]
c.JupyterHub.load_roles = [{
    "name": "test-admin", "services": ["test"],
    "scopes": ["admin:users", "admin:servers", "admin:server_state", "tokens",
               "access:servers", "read:hub", "list:users", "read:metrics"],
}]
added = settings.get("config", {}).get("JupyterHub", {})
c.JupyterHub.services += [s for s in added.pop("services", []) if s["name"] != "test"]
c.JupyterHub.load_roles += [r for r in added.pop("load_roles", []) if r["name"] != "test-admin"]
c.JupyterHub.cleanup_servers = False
c.JupyterHub.spawner_class = settings.get("spawner_class", "slurm")
c.JupyterHub.extra_handlers = api_handlers
c.JupyterHub.log_level = "DEBUG"
c.Spawner.default_url = "/lab"
for key, value in settings.get("spawner", {}).items():
    setattr(c.HPCSpawner, key, value)
for section, values in settings.get("config", {}).items():
    for key, value in values.items():
        setattr(getattr(c, section), key, value)
if settings.get("config", {}).get("JupyterHub", {}).get("internal_ssl"):
    c.ConfigurableHTTPProxy.api_url = settings["proxy_api_url"].replace("http:", "https:", 1)

def per_user(spawner):
    """Test-only knobs per user (a held start, a failing prologue), read at each spawn."""
    path = settings["per_user"]
    if os.path.exists(path):
        extra = json.load(open(path)).get(spawner.user.name, {})
        for key, value in extra.items():
            setattr(spawner, key, value)

c.Spawner.pre_spawn_hook = per_user
'''


__all__ = ["CONFIG", "VENV_BIN", "Hub", "free_port", "iter_lines", "wait_for"]


class Hub:
    """One hub directory; ``start()``/``stop()``/``kill()`` may be called repeatedly.

    ``run_as`` runs the hub (and the proxy it starts) as that account instead of root:
    ``root`` must then be a directory that account can reach; it becomes its owner.
    ``config`` sets any other option: ``{"JupyterHub": {"internal_ssl": True}}``.
    """

    def __init__(
        self,
        root: Path,
        spawner: dict[str, Any] | None = None,
        spawner_class: str = "slurm",
        run_as: str | None = None,
        config: dict[str, dict[str, Any]] | None = None,
    ) -> None:
        self.root = root
        self.run_as = pwd.getpwnam(run_as) if run_as else None
        root.mkdir(parents=True, exist_ok=True)
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.admin_token = secrets.token_hex(16)
        self.password = "test-password"
        self.settings: dict[str, Any] = {
            "bind_url": self.url,
            "hub_port": free_port(),
            "proxy_api_url": f"http://127.0.0.1:{free_port()}",
            "proxy_token": secrets.token_hex(16),
            "db": str(root / "hub.sqlite"),
            "cookie_secret": str(root / "cookie_secret"),
            "pid_file": str(root / "hub.pid"),
            "password": self.password,
            "admin_token": self.admin_token,
            "per_user": str(root / "per_user.json"),
            "spawner": spawner or {},
            "spawner_class": spawner_class,
            "config": config or {},
        }
        (root / "settings.json").write_text(json.dumps(self.settings))
        (root / "jupyterhub_config.py").write_text(CONFIG)
        self._own(root, root / "settings.json", root / "jupyterhub_config.py")
        self.process: HubProcess | None = None
        self.log_path = root / "hub.log"

    @property
    def proc(self) -> subprocess.Popen[bytes] | None:
        """The running hub's process (None after ``stop``, ``kill`` and ``kill_all``)."""
        return self.process.proc if self.process is not None else None

    def _own(self, *paths: Path) -> None:
        """Give the hub's files to the account it runs as (private: tokens are in them)."""
        if self.run_as is None:
            return
        for path in paths:
            os.chown(path, self.run_as.pw_uid, self.run_as.pw_gid)
            os.chmod(path, 0o700 if path.is_dir() else 0o600)

    def per_user(self, values: dict[str, dict[str, Any]]) -> None:
        Path(self.settings["per_user"]).write_text(json.dumps(values))
        self._own(Path(self.settings["per_user"]))

    def start(self, timeout: float = 60) -> None:
        extra = {"HPC_TEST_SETTINGS": str(self.root / "settings.json")}
        account = self.run_as
        if account is not None:
            # an unprivileged hub: its own uid, gid and no supplementary groups
            extra.update(HOME=account.pw_dir, USER=account.pw_name, LOGNAME=account.pw_name)
        self.process = HubProcess.start(
            self.root / "jupyterhub_config.py",
            log_path=self.log_path,
            command=[str(VENV_BIN / "jupyterhub")],
            env=hub_environment(VENV_BIN, extra),
            cwd=self.root,
            user=account.pw_uid if account else None,
            group=account.pw_gid if account else None,
            extra_groups=[] if account else None,
        )
        self.process.wait_ready(f"{self.url}{API_PATH}", timeout)

    def stop(self) -> None:
        """Graceful: SIGTERM, as a service manager would (SIGKILL after 60 s), then what is
        left in the hub's process group."""
        if self.process is not None:
            self.process.stop(timeout=60)
        self.process = None

    def kill(self) -> None:
        """A crash: SIGKILL the hub only (the proxy it started survives, as in real life)."""
        if self.process is not None:
            self.process.kill()
        self.process = None

    def kill_all(self) -> None:
        """Tear down: the hub and its process group, and the proxy (in a session of its own)."""
        if self.process is not None:
            self.process.stop(timeout=30)
        subprocess.run(
            ["pkill", "-f", f"configurable-http-proxy.*{self.settings['proxy_api_url'].rsplit(':', 1)[1]}"],
            check=False,
        )
        self.process = None

    def log_tail(self, n: int = 60) -> str:
        return log_tail(self.log_path, n)

    # -- REST ---------------------------------------------------------------------------
    def api(self, method: str, path: str, **kwargs: Any) -> requests.Response:
        headers = kwargs.pop("headers", {})
        headers.setdefault("Authorization", f"token {self.admin_token}")
        return requests.request(method, f"{self.url}/hub/api{path}", headers=headers, timeout=30, **kwargs)

    def user_model(self, name: str) -> dict[str, Any]:
        r = self.api("GET", f"/users/{name}")
        r.raise_for_status()
        return dict(r.json())

    def ensure_user(self, name: str) -> None:
        if self.api("GET", f"/users/{name}").status_code == 404:
            self.api("POST", f"/users/{name}").raise_for_status()

    def spawn(self, name: str, options: dict[str, Any] | None = None) -> requests.Response:
        self.ensure_user(name)
        return self.api("POST", f"/users/{name}/server", json=options or {})

    def wait_ready(self, name: str, timeout: float = 120) -> dict[str, Any]:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            server = self.user_model(name)["servers"].get("")
            if server and server.get("ready"):
                return dict(server)
            if not server:
                raise AssertionError(f"{name}'s server is gone:\n{self.progress_events(name)}")
            time.sleep(0.2)
        raise AssertionError(f"{name}'s server not ready in {timeout} s:\n{self.log_tail()}")

    def spawn_with_progress(
        self, name: str, options: dict[str, Any] | None = None, timeout: float = 120
    ) -> list[dict[str, Any]]:
        """Spawn and read the progress stream while the spawn runs, as the spawn page does."""
        with ThreadPoolExecutor(1) as pool:
            posted = pool.submit(self.spawn, name, options)
            wait_for(lambda: self.user_model(name)["servers"], 30, message="no spawn started")
            events = self.progress_events(name, timeout=timeout)
            started = posted.result()
            assert started.status_code in (201, 202), started.text
        return events

    def progress_events(self, name: str, timeout: float = 60) -> list[dict[str, Any]]:
        events = []
        with self.api("GET", f"/users/{name}/server/progress", stream=True) as r:
            deadline = time.monotonic() + timeout
            for line in r.iter_lines():
                if line.startswith(b"data:"):
                    events.append(json.loads(line[5:]))
                    if events[-1].get("failed") or events[-1].get("ready"):
                        break
                if time.monotonic() > deadline:
                    break
        return events

    def metrics(self) -> str:
        """The text of ``/hub/metrics`` (Prometheus exposition format)."""
        r = requests.get(
            f"{self.url}/hub/metrics", headers={"Authorization": f"token {self.admin_token}"}, timeout=30
        )
        r.raise_for_status()
        return r.text

    def user_token(self, name: str) -> str:
        r = self.api("POST", f"/users/{name}/tokens", json={"scopes": [f"access:servers!user={name}"]})
        r.raise_for_status()
        return str(r.json()["token"])

    def server_status(self, name: str, token: str) -> requests.Response:
        return requests.get(
            f"{self.url}/user/{name}/api/status", headers={"Authorization": f"token {token}"}, timeout=10
        )

    def stop_server(self, name: str, timeout: float = 60) -> float:
        t0 = time.monotonic()
        r = self.api("DELETE", f"/users/{name}/server")
        assert r.status_code in (202, 204), r.text
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if not self.user_model(name)["servers"]:
                return time.monotonic() - t0
            time.sleep(0.2)
        raise AssertionError(f"{name}'s server did not stop")


def wait_for(predicate: Any, timeout: float, interval: float = 0.2, message: str = "") -> Any:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = predicate()
        if value:
            return value
        time.sleep(interval)
    raise AssertionError(message or "condition not met in time")


def iter_lines(path: Path) -> Iterator[str]:
    yield from path.read_text(errors="replace").splitlines()
