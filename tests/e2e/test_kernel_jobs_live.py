"""Kernels as batch jobs (``hpc-provisioner``), live: real jupyter_client and ipykernel, run as a
test user against the real Slurm (scripts/slurm.sh) and Grid Engine (scripts/gridengine.sh).

The driver (tests/kernel_driver.py) runs as the user, like the user's own Jupyter server would;
these tests check the scheduler's own queue and what the driver saw: the cell runs inside the
job, the ports were bound on the node, the connection file is 0600 with CurveZMQ keys, an
interrupt is a message that ends ``time.sleep(60)`` in under a second, a restart keeps the job,
a shutdown takes the job out of the queue within 3 s, a new process re-attaches to a running
kernel job with its state, and a failing kernel is explained with the tail of its output.
"""

from __future__ import annotations

import asyncio
import json
import os
import pwd
import shutil
import signal
import subprocess
import sys
import tempfile
import time
import uuid
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import pytest
import requests

from conftest import slurm_jobs

pytestmark = [pytest.mark.hub]

USER = "hpcuser1"
SGE_USER = "hpcuser3"
DRIVER = Path(__file__).resolve().parents[1] / "kernel_driver.py"
SGE_ENV = {"SGE_ROOT": "/var/lib/gridengine", "SGE_CELL": "default"}


@pytest.fixture(scope="module")
def kernels() -> Iterator[Path]:
    """A world-readable directory with the driver and the kernelspecs of these tests."""
    from jupyterhub_hpc.kernels.spec import install, kernelspec

    base = Path(tempfile.mkdtemp(prefix="kernel-jobs-"))
    os.chmod(base, 0o755)
    shutil.copy(DRIVER, base / "kernel_driver.py")
    small = {"partition": "debug", "walltime": "00:10:00", "memory": "500M"}
    specs = {
        "slurm-debug": kernelspec("Python 3 (Slurm debug)", resources=small),
        "slurm-broken": kernelspec(
            "Broken",
            resources=small,
            kernel_argv=[
                sys.executable,
                "-c",
                "import sys; print('no such library: libfoo.so.1', file=sys.stderr); sys.exit(3)",
                "{connection_file}",
            ],
        ),
        "slurm-nopart": kernelspec("No partition", resources={**small, "partition": "nosuchpartition"}),
        "sge-all": kernelspec(
            "Python 3 (Grid Engine)",
            backend="sge",
            resources={"partition": "all.q", "walltime": "00:10:00", "memory": "4G"},
            config={"scheduler_environment": SGE_ENV},
        ),
    }
    for name, spec in specs.items():
        install(name, spec, base / "kernels")
    out = base / "out"
    out.mkdir()
    os.chmod(out, 0o777)
    subprocess.run(["chmod", "-R", "a+rX", str(base / "kernels")], check=True)
    yield base
    shutil.rmtree(base, ignore_errors=True)


def scheduler_state(user: str) -> str:
    """What both schedulers hold for ``user`` now: said when a driver times out."""
    commands = [
        (["squeue", "-u", user, "-o", "%i %T %r %N %e"], {}),
        (["qstat", "-f", "-u", user, "-explain", "aAcE"], SGE_ENV),
        (["qstat", "-j", "*"], SGE_ENV),
    ]
    said = []
    for argv, env in commands:
        run = subprocess.run(argv, capture_output=True, text=True, check=False, env={**os.environ, **env})
        said.append(f"$ {' '.join(argv)}\n{run.stdout[-2000:]}{run.stderr[-500:]}")
    return "\n".join(said)


def drive(base: Path, scenario: str, kernel: str, user: str = USER, tag: str = "") -> dict[str, Any]:
    out = base / "out" / f"{kernel}-{tag or scenario}.json"
    try:
        result = run_driver(base, scenario, kernel, user, out)
    except subprocess.TimeoutExpired as exc:
        said = exc.stderr.decode(errors="replace") if isinstance(exc.stderr, bytes) else exc.stderr or ""
        state = scheduler_state(user)
        pytest.fail(f"the driver took over {exc.timeout:.0f} s; it said:\n{said[-4000:]}\n{state}")
    assert result.returncode == 0, result.stderr[-3000:]
    facts: dict[str, Any] = json.loads(out.read_text())
    return facts


def run_driver(
    base: Path, scenario: str, kernel: str, user: str, out: Path
) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [
            "runuser",
            "-u",
            user,
            "--",
            sys.executable,
            str(base / "kernel_driver.py"),
            scenario,
            str(base),
            kernel,
            str(out),
        ],
        capture_output=True,
        text=True,
        timeout=180,
        cwd="/tmp",
    )


def sge_jobs(user: str) -> list[str]:
    listing = subprocess.run(
        ["qstat", "-u", user], capture_output=True, text=True, check=False, env={**os.environ, **SGE_ENV}
    ).stdout
    return [line.split()[0] for line in listing.splitlines()[2:] if line.split()]


def gone_within(seconds: float, still_there: Any) -> float:
    deadline = time.monotonic() + seconds
    while still_there():
        assert time.monotonic() < deadline, "the kernel job is still in the queue"
        time.sleep(0.2)
    return seconds - (deadline - time.monotonic())


def assert_contract(facts: dict[str, Any], user: str) -> None:
    job = facts["job"]
    assert job.isdigit(), facts
    # the cell ran in the job, as the user
    job_seen, _host, uid = facts["cell"]["output"].split()
    assert job_seen == job, facts
    assert int(uid) == pwd.getpwnam(user).pw_uid
    # ports chosen and bound on the node (the file had 0 before the kernel wrote them)
    assert all(isinstance(p, int) and p > 0 for p in facts["ports"]), facts
    assert facts["mode"] == "0o600" and facts["curve"] is True
    # an interrupt by message, the kernel keeps its state
    assert facts["interrupt"]["ename"] == "KeyboardInterrupt" and facts["interrupt"]["seconds"] < 1.0
    assert facts["after_interrupt"]["output"].strip() == "42"
    # a restart keeps the allocation and starts a fresh kernel process in it
    assert facts["job_after_restart"] == job
    lines = facts["after_restart"]["output"].split("\n")
    assert lines[0] == "False" and lines[1].split()[0] == job


def test_slurm_kernel_contract_interrupt_restart_in_place_and_shutdown(kernels: Path) -> None:
    facts = drive(kernels, "contract", "slurm-debug")
    assert_contract(facts, USER)
    # the kernel job is gone from the queue within 3 s of the shutdown
    assert time.time() - facts["shutdown_at"] < 60
    gone_within(3.0, lambda: facts["job"] in slurm_jobs(USER))
    accounting = subprocess.run(
        ["sacct", "-n", "-X", "-P", "-j", facts["job"], "--format=JobName,Partition"],
        capture_output=True,
        text=True,
        check=False,
    ).stdout
    assert "jupyter-kernel|debug" in accounting or not accounting.strip(), accounting


def test_a_new_process_reattaches_to_a_running_kernel_job_with_its_state(kernels: Path) -> None:
    first = drive(kernels, "start-keep", "slurm-debug", tag="keep")
    assert first["cell"]["output"].strip() == "kept-42"
    # the first process has exited; its kernel job runs on
    assert slurm_jobs(USER).get(first["job"]) == "RUNNING"
    second = drive(kernels, "reattach", "slurm-debug", tag="keep")
    assert second["job"] == first["job"] and second["alive"] is True
    assert second["cell"]["output"].strip() == "kept-42"
    gone_within(3.0, lambda: first["job"] in slurm_jobs(USER))


def test_a_failing_kernel_command_is_explained_with_the_tail_of_its_output(kernels: Path) -> None:
    facts = drive(kernels, "fail", "slurm-broken")
    assert facts["type"] == "KernelJobError"
    assert f"kernel job {facts['job']} (slurm)" in facts["error"]
    assert "exited with status 3 before it bound its ports" in facts["error"]
    assert "no such library: libfoo.so.1" in facts["error"]
    gone_within(3.0, lambda: facts["job"] in slurm_jobs(USER))


def test_a_job_the_scheduler_refuses_is_reported_in_its_words(kernels: Path) -> None:
    facts = drive(kernels, "fail", "slurm-nopart")
    assert facts["job"] == ""
    assert facts["error"].startswith("the scheduler refused the kernel job: ")
    assert "invalid partition" in facts["error"].lower()


def test_grid_engine_runs_the_same_kernel_contract(kernels: Path) -> None:
    facts = drive(kernels, "contract", "sge-all", user=SGE_USER)
    assert_contract(facts, SGE_USER)
    gone_within(3.0, lambda: facts["job"] in sge_jobs(SGE_USER))


def kernel_cell(url: str, headers: dict[str, str], user: str, code: str, timeout: float = 60) -> str:
    """Run ``code`` over a kernel's websocket at ``url``, as JupyterLab does; its printed output."""
    from tornado.httpclient import HTTPRequest
    from tornado.websocket import websocket_connect

    async def go() -> str:
        conn = await websocket_connect(HTTPRequest(url, headers=headers))
        session = uuid.uuid4().hex

        async def send(msg_type: str, content: dict[str, Any]) -> str:
            msg_id = uuid.uuid4().hex
            header = {"msg_id": msg_id, "msg_type": msg_type, "session": session, "username": user}
            header.update({"date": datetime.now(timezone.utc).isoformat(), "version": "5.3"})
            message = {"header": header, "parent_header": {}, "metadata": {}, "content": content}
            await conn.write_message(json.dumps({**message, "channel": "shell"}))
            return msg_id

        async def replies(msg_id: str, until: str) -> list[dict[str, Any]]:
            seen: list[dict[str, Any]] = []
            deadline = time.monotonic() + timeout
            while time.monotonic() < deadline:
                raw = await asyncio.wait_for(conn.read_message(), deadline - time.monotonic())
                assert raw is not None, "the kernel's websocket closed"
                msg = json.loads(raw)
                if msg.get("parent_header", {}).get("msg_id") == msg_id:
                    seen.append(msg)
                    # the reply comes on shell; its output on iopub, ending with status idle
                    done = {m["msg_type"] for m in seen}
                    if until in done and any(
                        m["msg_type"] == "status" and m["content"]["execution_state"] == "idle" for m in seen
                    ):
                        return seen
            raise AssertionError(f"no {until}")

        # as JupyterLab does: kernel_info first (iopub is then connected), then the cell
        await replies(await send("kernel_info_request", {}), "kernel_info_reply")
        cell = {"code": code, "silent": False, "store_history": False}
        seen = await replies(await send("execute_request", cell), "execute_reply")
        conn.close()
        out = [m["content"]["text"] for m in seen if m["msg_type"] == "stream"]
        out += [f"ERROR {m['content']['ename']}" for m in seen if m["msg_type"] == "error"]
        return "".join(out)

    with ThreadPoolExecutor(1) as pool:  # Playwright's sync API may hold this thread's event loop
        return pool.submit(asyncio.run, go()).result()


class UserServer:
    """A Jupyter server run as ``user`` (the package's server extension enabled, as in a job), on a
    fixed port so that a restarted one is found at the same address."""

    def __init__(self, user: str, kernels: Path, port: int, env: dict[str, str] | None = None) -> None:
        self.user, self.kernels, self.port = user, kernels, port
        self.env = env or {}
        self.token = uuid.uuid4().hex
        self.url = f"http://127.0.0.1:{port}"
        self.log = kernels / "out" / f"server-{port}.log"
        self.proc: subprocess.Popen[bytes] | None = None

    def start(self) -> None:
        home = pwd.getpwnam(self.user).pw_dir
        argv = ["runuser", "-u", self.user, "--", "env", f"JUPYTER_PATH={self.kernels}", f"HOME={home}"]
        argv += [f"{name}={value}" for name, value in self.env.items()]
        argv += [str(Path(sys.executable).parent / "jupyter-server"), "--no-browser", "--ip=127.0.0.1"]
        argv += [f"--port={self.port}", "--port-retries=0", f"--IdentityProvider.token={self.token}"]
        argv += [f"--ServerApp.root_dir={home}"]
        with open(self.log, "ab") as log:
            self.proc = subprocess.Popen(
                argv, stdout=log, stderr=subprocess.STDOUT, start_new_session=True, cwd="/tmp"
            )
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            assert self.proc.poll() is None, self.log.read_text()[-3000:]
            try:
                if self.api("GET", "/api/status").ok:
                    return
            except requests.ConnectionError:
                pass
            time.sleep(0.3)
        raise AssertionError(self.log.read_text()[-3000:])

    def api(self, method: str, path: str, **kw: Any) -> requests.Response:
        headers = {"Authorization": f"token {self.token}"}
        return requests.request(method, self.url + path, headers=headers, timeout=30, **kw)

    def kill(self) -> None:
        """The server process dies at once (kill -9): nothing of it shuts its kernels down."""
        if self.proc is not None and self.proc.poll() is None:
            os.killpg(self.proc.pid, signal.SIGKILL)
            self.proc.wait(10)

    def run_cell(self, kernel_id: str, code: str, timeout: float = 60) -> str:
        """Run ``code`` over the kernel's websocket, as JupyterLab does; its printed output."""
        url = f"ws://127.0.0.1:{self.port}/api/kernels/{kernel_id}/channels"
        return kernel_cell(url, {"Authorization": f"token {self.token}"}, self.user, code, timeout)


def test_a_server_killed_and_started_again_takes_back_its_kernel_job(kernels: Path) -> None:
    server = UserServer(USER, kernels, port=31330)
    server.start()
    try:
        started = server.api("POST", "/api/kernels", json={"name": "slurm-debug"})
        assert started.status_code == 201, started.text
        kernel_id = started.json()["id"]
        assert server.run_cell(kernel_id, PROBE_AND_SET).split()[0] in slurm_jobs(USER)
        job = server.run_cell(kernel_id, "print(os.environ['SLURM_JOB_ID'])").strip()
        server.kill()
        assert slurm_jobs(USER).get(job) == "RUNNING"  # the kernel job outlives the server process
        server.start()
        listed = server.api("GET", "/api/kernels").json()
        assert [k["id"] for k in listed] == [kernel_id], listed
        # the same kernel, with the state it had before the server died
        assert server.run_cell(kernel_id, "print(state, os.environ['SLURM_JOB_ID'])").split() == [
            "kept-42",
            job,
        ]
        assert server.api("DELETE", f"/api/kernels/{kernel_id}").status_code == 204
        gone_within(3.0, lambda: job in slurm_jobs(USER))
    finally:
        server.kill()
        subprocess.run(["scancel", f"--user={USER}"], check=False)


PROBE_AND_SET = "import os; state = 'kept-42'; print(os.environ['SLURM_JOB_ID'])"
