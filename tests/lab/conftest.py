"""A real JupyterLab (the venv of sys.executable, the extension installed from the wheel) in
headless Debian Chromium, for the Lab extension's tests."""

from __future__ import annotations

import json
import os
import secrets
import subprocess
import sys
import time
from pathlib import Path

import requests

from jupyterhub_hpc.hubprocess import free_port

VENV_BIN = Path(sys.executable).parent
HERE = Path(__file__).parent
# no "official Jupyter news?" toast and no update check on a fresh profile (they would hide ours)
LAB_NOTIFICATION_SETTINGS = {"fetchNews": "false", "checkForUpdates": False}


def write_lab_settings(settings_dir: Path) -> None:
    path = settings_dir / "@jupyterlab" / "apputils-extension" / "notification.jupyterlab-settings"
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(LAB_NOTIFICATION_SETTINGS))


def overrides_json() -> str:
    """The same as a site's overrides.json (what a spawner's environment can point Lab at)."""
    return json.dumps({"@jupyterlab/apputils-extension:notification": LAB_NOTIFICATION_SETTINGS})


class Lab:
    """``extensions``: the server extensions to enable (default: the fake routes instead of the
    package's own); ``env``: more environment for the server (what a job would set)."""

    def __init__(
        self,
        root: Path,
        fake_dir: Path,
        extensions: dict[str, bool] | None = None,
        env: dict[str, str] | None = None,
    ) -> None:
        self.root = root
        self.fake_dir = fake_dir
        self.extensions = extensions or {"fake_hpc_routes": True, "jupyterhub_hpc.lab": False}
        self.extra_env = env or {}
        self.port = free_port()
        self.token = secrets.token_hex(16)
        self.url = f"http://127.0.0.1:{self.port}"
        self.log = root.parent / "lab.log"
        self.proc: subprocess.Popen[bytes] | None = None

    def start(self) -> None:
        settings = self.root.parent / "lab-settings"
        write_lab_settings(settings)
        # the fake routes instead of the package's server extension (enabled by its wheel's config)
        config_dir = self.root.parent / "jupyter-config"
        config_dir.mkdir(exist_ok=True)
        (config_dir / "jupyter_server_config.json").write_text(
            json.dumps({"ServerApp": {"jpserver_extensions": self.extensions}})
        )
        env = dict(os.environ)
        env.update(
            {
                "HPC_FAKE_DIR": str(self.fake_dir),
                "PYTHONPATH": f"{HERE}:{env.get('PYTHONPATH', '')}".rstrip(":"),
                "JUPYTERLAB_SETTINGS_DIR": str(settings),
                "JUPYTERLAB_WORKSPACES_DIR": str(self.root.parent / "lab-workspaces"),
                "JUPYTER_CONFIG_DIR": str(config_dir),
                "JUPYTER_RUNTIME_DIR": str(self.root.parent / "jupyter-runtime"),
                "PATH": f"{VENV_BIN}:{env.get('PATH', '/usr/bin:/bin')}",
                **self.extra_env,
            }
        )
        argv = [
            str(VENV_BIN / "jupyter-lab"),
            "--no-browser",
            "--ip=127.0.0.1",
            f"--port={self.port}",
            f"--ServerApp.root_dir={self.root}",
            f"--IdentityProvider.token={self.token}",
            "--LabApp.news_url=",
            *(["--allow-root"] if os.geteuid() == 0 else []),  # CI runs as root; the Lab is ours alone
        ]
        with open(self.log, "wb") as log:
            self.proc = subprocess.Popen(argv, stdout=log, stderr=subprocess.STDOUT, env=env)
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise AssertionError(f"jupyter lab exited:\n{self.log.read_text()[-3000:]}")
            try:
                if self.api("GET", "/api/status").ok:
                    return
            except requests.ConnectionError:
                pass
            time.sleep(0.3)
        raise AssertionError(f"jupyter lab did not answer:\n{self.log.read_text()[-3000:]}")

    def api(self, method: str, path: str, **kw: object) -> requests.Response:
        headers = {"Authorization": f"token {self.token}"}
        return requests.request(method, self.url + path, headers=headers, timeout=10, **kw)  # type: ignore[arg-type]

    def stop(self) -> None:
        if self.proc and self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
