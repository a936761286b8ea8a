"""A real JupyterLab run as a test user (``runuser``), with the package's real server extension and a
batch kernelspec (``hpc-provisioner``) on the live single-node Slurm (partition ``debug``, node
``vm``) on its JUPYTER_PATH, for the kernel-job tests of the Lab (issue 16). Kernel jobs are
submitted by this Lab, as the user, as a user's own server does; a blocker job of the same user
fills the node so that the kernel job waits in the queue."""

from __future__ import annotations

import json
import os
import pwd
import re
import secrets
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import requests

from jupyterhub_hpc.hubprocess import free_port

from .conftest import LAB_NOTIFICATION_SETTINGS

__all__ = ["BROKEN", "KERNEL", "USER", "UserLab", "blocker", "slurm_state"]

USER = "hpcuser2"
KERNEL = "slurm-queued"
DISPLAY_NAME = "Python 3 (Slurm debug, queued test)"
#: a batch kernel whose command fails in the job before it binds its ports
BROKEN = "slurm-broken"
BROKEN_OUTPUT = "no such library: libfoo.so.1"
VENV_BIN = Path(sys.executable).parent


def slurm_state(job: str) -> str:
    """The job's state in the live queue ('' once it is gone)."""
    out = subprocess.run(
        ["squeue", "--noheader", "-j", job, "--format=%T"], capture_output=True, text=True, check=False
    ).stdout
    return out.strip()


def node_cpus(node: str = "vm") -> int:
    out = subprocess.run(
        ["scontrol", "show", "node", node], capture_output=True, text=True, check=True
    ).stdout
    found = re.search(r"\bCPUTot=(\d+)", out)
    assert found, out
    return int(found.group(1))


def blocker(user: str = USER, seconds: int = 300) -> str:
    """A job of ``user`` holding every CPU of the node (the kernel job then waits for Resources)."""
    out = subprocess.run(
        ["runuser", "-u", user, "--", "sbatch", "--parsable", "-p", "debug", "-N", "1", "-n", "1",
         f"--cpus-per-task={node_cpus()}", "--mem=100M", "-t", "00:10:00", "-J", "blocker",
         "-o", "/dev/null", "--wrap", f"sleep {seconds}"],
        capture_output=True, text=True, check=True, cwd="/tmp",
    ).stdout  # fmt: skip
    job = out.strip().split(";")[0]
    deadline = time.monotonic() + 30
    while slurm_state(job) != "RUNNING":
        assert time.monotonic() < deadline, f"the blocker {job} did not start: {slurm_state(job)}"
        time.sleep(0.3)
    return job


class UserLab:
    """``jupyter lab`` as ``user`` in a private base directory: the root of its files, its Jupyter
    data and runtime dirs, the Lab settings and the batch kernelspec (JUPYTER_PATH)."""

    def __init__(self, user: str = USER, poll_interval: float = 2.0, pending_kernels: bool = False) -> None:
        from jupyterhub_hpc.kernels.spec import install, kernelspec

        self.user = user
        entry = pwd.getpwnam(user)
        self.base = Path(tempfile.mkdtemp(prefix="lab-kernel-jobs-"))
        self.root = self.base / "root"
        for name in ("root", "data", "runtime", "config", "share/kernels", "settings", "workspaces"):
            (self.base / name).mkdir(parents=True, exist_ok=True)
        spec = kernelspec(
            DISPLAY_NAME,
            resources={"partition": "debug", "walltime": "00:05:00", "memory": "500M"},
            config={"poll_interval": poll_interval},
        )
        install(KERNEL, spec, self.base / "share" / "kernels")
        broken = kernelspec(
            "Broken batch kernel",
            resources={"partition": "debug", "walltime": "00:05:00", "memory": "500M"},
            config={"poll_interval": poll_interval},
            kernel_argv=[
                sys.executable,
                "-c",
                f"import sys; print({BROKEN_OUTPUT!r}, file=sys.stderr); sys.exit(3)",
                "{connection_file}",
            ],
        )
        install(BROKEN, broken, self.base / "share" / "kernels")
        notification = self.base / "settings" / "@jupyterlab" / "apputils-extension"
        notification.mkdir(parents=True)
        (notification / "notification.jupyterlab-settings").write_text(json.dumps(LAB_NOTIFICATION_SETTINGS))
        docmanager = self.base / "settings" / "@jupyterlab" / "docmanager-extension"
        docmanager.mkdir(parents=True)
        (docmanager / "plugin.jupyterlab-settings").write_text(
            json.dumps({"renameUntitledFileOnSave": False})
        )
        server: dict[str, Any] = {"ServerApp": {"jpserver_extensions": {"jupyterhub_hpc.lab": True}}}
        if pending_kernels:
            server["MappingKernelManager"] = {"use_pending_kernels": True}
        (self.base / "config" / "jupyter_server_config.json").write_text(json.dumps(server))
        os.chmod(self.base, 0o700)
        subprocess.run(["chown", "-R", f"{entry.pw_uid}:{entry.pw_gid}", str(self.base)], check=True)
        self.home = entry.pw_dir
        self.port = free_port()
        self.token = secrets.token_hex(16)
        self.url = f"http://127.0.0.1:{self.port}"
        self.log = Path(tempfile.mkstemp(prefix="lab-kernel-jobs-", suffix=".log")[1])
        self.proc: subprocess.Popen[bytes] | None = None

    def start(self) -> None:
        b = self.base
        env = {
            "HOME": self.home,
            "USER": self.user,
            "PATH": f"{VENV_BIN}:/usr/local/bin:/usr/bin:/bin",
            "JUPYTER_PATH": str(b / "share"),
            "JUPYTER_DATA_DIR": str(b / "data"),
            "JUPYTER_RUNTIME_DIR": str(b / "runtime"),
            "JUPYTER_CONFIG_DIR": str(b / "config"),
            "JUPYTERLAB_SETTINGS_DIR": str(b / "settings"),
            "JUPYTERLAB_WORKSPACES_DIR": str(b / "workspaces"),
        }
        argv = ["runuser", "-u", self.user, "--", "env", "-i", *[f"{k}={v}" for k, v in env.items()]]
        argv += [str(VENV_BIN / "jupyter-lab"), "--no-browser", "--ip=127.0.0.1", f"--port={self.port}"]
        argv += [
            "--port-retries=0",
            f"--ServerApp.root_dir={self.root}",
            f"--IdentityProvider.token={self.token}",
        ]
        argv += ["--LabApp.news_url="]
        with open(self.log, "wb") as log:
            self.proc = subprocess.Popen(argv, stdout=log, stderr=subprocess.STDOUT, cwd="/tmp")
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

    def api(self, method: str, path: str, token: bool = True, **kw: Any) -> requests.Response:
        headers = {"Authorization": f"token {self.token}"} if token else {}
        return requests.request(method, self.url + path, headers=headers, timeout=kw.pop("timeout", 10), **kw)

    def kernel_jobs(self) -> list[dict[str, Any]]:
        r = self.api("GET", "/jupyterhub-hpc/kernels")
        assert r.status_code == 200, r.text
        jobs: list[dict[str, Any]] = r.json()["kernels"]
        return jobs

    def write_notebook(self, name: str, source: str, kernel: str = KERNEL) -> None:
        from .test_modules_live import notebook

        path = self.root / name
        notebook(path, kernel, source)
        shutil.chown(path, self.user, self.user)

    def stop(self) -> None:
        """Shut the kernels down (their jobs end), stop the server, cancel the user's jobs."""
        try:
            if self.proc and self.proc.poll() is None:
                for kernel in self.api("GET", "/api/kernels").json():
                    self.api("DELETE", f"/api/kernels/{kernel['id']}", timeout=30)
        except requests.RequestException:
            pass
        if self.proc and self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(20)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        subprocess.run(["scancel", f"--user={self.user}"], check=False)
        shutil.rmtree(self.base, ignore_errors=True)
