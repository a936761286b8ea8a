"""One server started by the unprivileged hub, inspected as root while it runs: where its API
token is (only in the job's own process environments) and is not (any command line, the hub
log at DEBUG, the job script Slurm stores, the job's output, anything under the user's home),
where it listens, and what the hub and proxy run as.

Every scan must also find a known marker placed in the same kind of place, so that none of the
"absent" checks can pass by scanning nothing."""

from __future__ import annotations

import os
import pwd
import secrets
import socket
import subprocess
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import requests
import secutil
from secutil import FAST

from conftest import HUB_ACCOUNT, nonroot_hubs
from hub import wait_for

pytestmark = [pytest.mark.slurm, pytest.mark.hub]

USER = "hpcuser1"


class CommandLines:
    """Samples every process's command line, as fast as it can, while a spawn runs."""

    def __init__(self) -> None:
        self.seen: set[bytes] = set()
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def _run(self) -> None:
        while not self._stop.is_set():
            for pid in secutil.pids():
                line = secutil.cmdline(pid)
                if line:
                    self.seen.add(line)

    def __enter__(self) -> CommandLines:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join()


@pytest.fixture(scope="module")
def running(tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict[str, Any]]:
    marker = f"AUDIT-MARKER-{secrets.token_hex(8)}"
    secutil.cancel_test_jobs()
    with nonroot_hubs(tmp_path_factory.mktemp("logs")) as make:
        hub = make(config={"Spawner": {"environment": {"HPC_AUDIT_MARKER": marker}}}, **FAST)
        hub.per_user({USER: {"job_script_prologue": 'echo "marker: $HPC_AUDIT_MARKER"'}})
        hub.start()
        hub.ensure_user(USER)
        with CommandLines() as sampled:
            hub.spawn(USER)
            hub.wait_ready(USER)
        job = str(secutil.server_state(hub, USER)["job_id"])  # type: ignore[index]
        token = secutil.server_token(USER, job)
        # a marker on a command line and in the hub log, like the places scanned for the token
        # (Debian's python by its path: a version manager's shim in PATH would be a script in between)
        marker_process = subprocess.Popen(["/usr/bin/python3", "-c", "import time; time.sleep(900)", marker])
        wait_for(
            lambda: marker.encode() in secutil.cmdline(marker_process.pid),
            10,
            message=f"the marker process did not start: {marker_process.poll()}",
        )
        assert hub.api("GET", f"/users/{marker}").status_code == 404
        try:
            yield {
                "hub": hub,
                "job": job,
                "token": token,
                "marker": marker,
                "sampled": sampled.seen,
                "marker_process": marker_process,
            }
        finally:
            marker_process.kill()
            marker_process.wait()
            hub.stop_server(USER)
    secutil.cancel_test_jobs()


def test_the_token_found_is_the_servers_own(running: dict[str, Any]) -> None:
    hub = running["hub"]
    r = requests.get(
        f"{hub.url}/hub/api/user", headers={"Authorization": f"token {running['token']}"}, timeout=10
    )
    assert r.status_code == 200 and r.json()["name"] == USER
    assert secutil.spool_token(running["job"]) == running["token"]


def test_not_on_any_command_line(running: dict[str, Any]) -> None:
    token, marker = running["token"].encode(), running["marker"].encode()
    now = {secutil.cmdline(pid) for pid in secutil.pids()} - {b""}
    sampled: set[bytes] = running["sampled"]
    assert running["marker_process"].poll() is None, "the marker process ended"
    assert len(now) > 20 and any(marker in line for line in now)
    # the sampling during the spawn saw the submit itself (sudo ... sbatch) and the job
    assert any(b"sbatch" in line for line in sampled), "the submit was not sampled"
    assert any(b"jupyterhub-hpc-singleuser" in line for line in sampled)
    assert not [line for line in now | sampled if token in line]


def test_not_in_the_hub_log_at_debug_nor_its_files(running: dict[str, Any]) -> None:
    hub = running["hub"]
    log = hub.log_path.read_bytes()
    assert b"[D " in log and running["marker"].encode() in log
    assert running["token"].encode() not in log
    files = list(secutil.files_under(str(hub.root)))
    assert any(p.name == "hub.sqlite" for p in files)
    assert not [p for p in files if secutil.contains(p, running["token"].encode())]


def test_not_in_the_job_script_slurm_stores(running: dict[str, Any]) -> None:
    script = secutil.batch_script(running["job"])
    assert running["marker"] in script and "#SBATCH" in script
    assert running["token"] not in script


def test_not_in_the_job_output(running: dict[str, Any]) -> None:
    output = Path(pwd.getpwnam(USER).pw_dir) / f".jupyterhub-hpc-{running['job']}.log"
    text = output.read_text()
    assert f"marker: {running['marker']}" in text
    assert "jupyterhub-hpc-singleuser: the server listens on" in text
    assert running["token"] not in text


def test_not_anywhere_under_the_users_home(running: dict[str, Any]) -> None:
    files = list(secutil.files_under(pwd.getpwnam(USER).pw_dir))
    assert len(files) > 3
    assert [p for p in files if secutil.contains(p, running["marker"].encode())]
    assert not [p for p in files if secutil.contains(p, running["token"].encode())]


def test_only_in_the_jobs_own_process_environments(running: dict[str, Any]) -> None:
    uid = pwd.getpwnam(USER).pw_uid
    holders = [pid for pid in secutil.pids() if running["token"].encode() in secutil.proc_environ(pid)]
    assert secutil.server_pid(USER, running["job"]) in holders
    assert {secutil.uid_of(pid) for pid in holders} == {uid}
    assert all(secutil.in_job(pid, running["job"]) for pid in holders)
    other = subprocess.run(
        ["runuser", "-u", "hpcuser2", "--", "cat", f"/proc/{holders[0]}/environ"],
        capture_output=True,
        check=False,
    )
    assert other.returncode != 0 and running["token"].encode() not in other.stdout


def test_jupyters_runtime_files_are_private_and_off_the_home(running: dict[str, Any]) -> None:
    pid = secutil.server_pid(USER, running["job"])
    environ = dict(item.split(b"=", 1) for item in secutil.proc_environ(pid).split(b"\0") if b"=" in item)
    runtime = Path(environ[b"JUPYTER_RUNTIME_DIR"].decode())
    home = pwd.getpwnam(USER).pw_dir
    assert not str(runtime).startswith(home + "/")
    info = runtime.stat()
    assert info.st_uid == pwd.getpwnam(USER).pw_uid and info.st_mode & 0o777 == 0o700
    assert list(runtime.glob("jpserver-*.json"))
    other = subprocess.run(["runuser", "-u", "hpcuser2", "--", "ls", str(runtime)], capture_output=True)
    assert other.returncode != 0


def test_the_server_listens_on_the_nodes_address_only(running: dict[str, Any]) -> None:
    state = secutil.server_state(running["hub"], USER)
    assert state is not None
    expected = socket.gethostbyname(state["host"])
    sockets = secutil.listening(secutil.server_pid(USER, running["job"]))
    assert sockets == [(expected, state["port"])], sockets
    assert expected not in ("0.0.0.0", "::")


def test_the_hub_and_its_proxy_run_unprivileged(running: dict[str, Any]) -> None:
    hub = running["hub"]
    account = pwd.getpwnam(HUB_ACCOUNT)
    proxy_port = hub.settings["proxy_api_url"].rsplit(":", 1)[1].encode()
    proxies = [
        pid
        for pid in secutil.pids()
        if b"configurable-http-proxy" in secutil.cmdline(pid) and proxy_port in secutil.cmdline(pid)
    ]
    assert proxies
    for pid in [hub.proc.pid, *proxies]:
        status = Path(f"/proc/{pid}/status").read_text()
        fields = dict(line.split(":", 1) for line in status.splitlines() if ":" in line)
        assert fields["Uid"].split() == [str(account.pw_uid)] * 4, (pid, fields["Uid"])
        assert fields["Gid"].split() == [str(account.pw_gid)] * 4
        assert fields["Groups"].strip() in ("", str(account.pw_gid))
        assert int(fields["CapEff"], 16) == 0
    assert os.stat(hub.root).st_uid == account.pw_uid
