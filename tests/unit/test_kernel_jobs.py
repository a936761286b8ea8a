"""The kernel-job parts that need no scheduler: the shared files, the in-job supervisor with a
stand-in kernel (a real subprocess), the provisioner's refusals before anything is submitted,
the messages, the environment a job gets, and kernel presets (``jupyterhub-hpc kernels``)."""

from __future__ import annotations

import asyncio
import json
import os
import signal
import stat
import subprocess
import sys
import time
from collections.abc import Callable
from datetime import datetime
from pathlib import Path

import pytest
from jupyter_client.manager import AsyncKernelManager

from jupyterhub_hpc.cli import main as cli_main
from jupyterhub_hpc.kernels.files import (
    PORT_NAMES,
    NodeRequest,
    NodeState,
    log_path,
    ports_bound,
    read_json,
    read_model,
    request_path,
    state_path,
    write_private,
)
from jupyterhub_hpc.kernels.jobs import clean_environment, describe_end, tail
from jupyterhub_hpc.kernels.provisioner import KernelJobError
from jupyterhub_hpc.kernels.spec import install, kernelspec
from jupyterhub_hpc.request import RequestError
from jupyterhub_hpc.states import JobState, JobStatus

SRC = Path(__file__).resolve().parents[2] / "src"

#: a stand-in kernel: writes five ports into its connection file like ipykernel, reports its
#: pid and each signal it gets to a side file, exits 7 on SIGTERM
FAKE_KERNEL = r"""
import json, os, signal, sys, time
cf = sys.argv[1]
side = cf + ".kernel"
def note(text):
    with open(side, "a") as f:
        f.write(text + "\n")
info = json.load(open(cf))
info.update({n: 40000 + i for i, n in enumerate(
    ["shell_port", "iopub_port", "stdin_port", "control_port", "hb_port"])})
json.dump(info, open(cf, "w"))
note(f"started {os.getpid()} ip={info['ip']}")
signal.signal(signal.SIGUSR1, lambda s, f: note("SIGUSR1"))
signal.signal(signal.SIGTERM, lambda s, f: sys.exit(7))
while True:
    time.sleep(0.05)
"""


def test_shared_files_are_private_whole_and_typed(tmp_path: Path) -> None:
    cf = tmp_path / "kernel-abc.json"
    assert state_path(cf).name == "kernel-abc.hpc-state.json"
    assert request_path(cf).name == "kernel-abc.hpc-request.json"
    assert log_path(cf).name == "kernel-abc.hpc-{job_id}.log"
    assert log_path(cf, "12").name == "kernel-abc.hpc-12.log"
    write_private(request_path(cf), NodeRequest(generation=2))
    assert stat.S_IMODE(request_path(cf).stat().st_mode) == 0o600
    assert read_model(request_path(cf), NodeRequest) == NodeRequest(generation=2)
    # half written (a kernel writes its file in place) or missing: None, never an exception
    state_path(cf).write_text('{"generation": 1, "sta')
    assert read_model(state_path(cf), NodeState) is None
    assert read_json(tmp_path / "missing.json") is None
    assert not ports_bound({"shell_port": 1})
    assert not ports_bound(dict.fromkeys(PORT_NAMES, 0))
    assert ports_bound(dict.fromkeys(PORT_NAMES, 5))
    assert not ports_bound({**dict.fromkeys(PORT_NAMES, 5), "hb_port": True})  # a bool is no port


def test_a_kernel_job_gets_no_credentials_and_not_the_servers_job_variables() -> None:
    env = {
        "JUPYTERHUB_API_TOKEN": "secret",
        "JPY_API_TOKEN": "secret",
        "SLURM_JOB_ID": "7",
        "SLURM_CPUS_PER_TASK": "1",
        "SLURM_CONF": "/etc/slurm/slurm.conf",
        "SGE_ROOT": "/var/lib/gridengine",
        "PATH": "/usr/bin",
        "JPY_SESSION_NAME": "a.ipynb",
    }
    assert clean_environment(env) == {
        "SLURM_CONF": "/etc/slurm/slurm.conf",
        "SGE_ROOT": "/var/lib/gridengine",
        "PATH": "/usr/bin",
        "JPY_SESSION_NAME": "a.ipynb",
    }


def test_an_ended_kernel_job_is_explained_in_the_schedulers_words(tmp_path: Path) -> None:
    out = tmp_path / "job.log"
    out.write_text("".join(f"line {n}\n" for n in range(30)) + "jupyterhub-hpc-exit-status=0\n")
    assert tail(out).splitlines() == [f"line {n}" for n in range(10, 30)]
    assert tail(tmp_path / "none.log") == ""
    status = JobStatus(job_id="31", state=JobState.TIMEOUT, native_state="TIMEOUT", exit_code=0)
    text = describe_end("slurm", status, "", tail(out, 2))
    assert text.startswith("kernel job 31 (slurm) TIMEOUT, exit code 0: killed at its walltime")
    assert text.endswith("--- last lines of its output ---\nline 28\nline 29")
    running = JobStatus(job_id="32", state=JobState.RUNNING)
    assert describe_end("sge", running, "no kernel ports after 120 s", "") == (
        "kernel job 32 (sge): no kernel ports after 120 s"
    )


def test_kernel_presets_are_validated_when_written(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    spec = kernelspec(
        "Py (gpu)", resources={"partition": "gpu", "cpus": 4, "gpus": 1, "walltime": "02:00:00"}
    )
    assert spec["interrupt_mode"] == "message"
    assert spec["metadata"]["supported_encryption"] == ["curve"]
    assert spec["metadata"]["kernel_provisioner"]["provisioner_name"] == "hpc-provisioner"
    assert "{connection_file}" in spec["argv"]
    with pytest.raises(RequestError, match="memory"):
        kernelspec("x", resources={"memory": "lots"})
    with pytest.raises(RequestError, match="partition"):
        kernelspec("x", resources={"partition": "debug; rm -rf ~"})
    with pytest.raises(RequestError):
        kernelspec("x", resources={"sbatch_flags": "--exclusive"})
    with pytest.raises(RequestError, match="lsf backend cannot ask for generic resources"):
        kernelspec("x", backend="lsf", resources={"gres": ["nvme:1"]})
    with pytest.raises(SystemExit) as done:
        cli_main(
            [
                "kernels",
                "install",
                "k1",
                "--display-name",
                "K",
                "--resource",
                "cpus=2",
                "--dir",
                str(tmp_path),
            ]
        )
    assert done.value.code == 0
    written = json.loads((tmp_path / "k1" / "kernel.json").read_text())
    assert written["metadata"]["kernel_provisioner"]["config"]["resources"] == {"cpus": "2"}
    with pytest.raises(SystemExit) as done:
        cli_main(
            [
                "kernels",
                "install",
                "k2",
                "--display-name",
                "K",
                "--resource",
                "cpus=0",
                "--dir",
                str(tmp_path),
            ]
        )
    assert done.value.code == 2
    assert "cpus" in capsys.readouterr().err
    assert not (tmp_path / "k2").exists()


def start_kernel_refused(tmp_path: Path, spec: dict[str, object]) -> str:
    install("k", spec, tmp_path / "kernels")
    os.environ["JUPYTER_PATH"] = str(tmp_path)
    try:
        km = AsyncKernelManager(kernel_name="k")
        km.connection_file = str(tmp_path / "runtime" / "kernel-x.json")
        with pytest.raises(KernelJobError) as refused:
            asyncio.run(km.start_kernel())
        return str(refused.value)
    finally:
        del os.environ["JUPYTER_PATH"]


def test_a_kernel_without_curve_is_refused_before_anything_is_submitted(tmp_path: Path) -> None:
    spec = kernelspec(
        "No curve", resources={"partition": "debug"}, config={"scheduler_commands": {"sbatch": "/bin/false"}}
    )
    spec["metadata"]["supported_encryption"] = []  # type: ignore[index]
    message = start_kernel_refused(tmp_path, spec)
    assert "does not declare CurveZMQ support" in message and "'auto' or 'disabled'" in message
    assert not (tmp_path / "runtime").exists()


def test_resources_changed_after_install_are_refused_at_start(tmp_path: Path) -> None:
    spec = kernelspec("Py", resources={"partition": "debug"})
    spec["metadata"]["kernel_provisioner"]["config"]["resources"] = {"walltime": "00:99:99"}  # type: ignore[index]
    assert start_kernel_refused(tmp_path, spec).startswith("kernel job resources: ")


@pytest.fixture
def node(tmp_path: Path) -> Callable[..., subprocess.Popen[bytes]]:
    """Start the in-job supervisor with the stand-in kernel, as a job would."""
    kernel = tmp_path / "fake_kernel.py"
    kernel.write_text(FAKE_KERNEL)
    cf = tmp_path / "kernel-n.json"
    write_private(cf, {"key": "k", "ip": "0.0.0.0", "signature_scheme": "hmac-sha256", "shell_port": 0})
    started: list[subprocess.Popen[bytes]] = []

    def start(linger: float = 30.0) -> subprocess.Popen[bytes]:
        argv = [sys.executable, "-m", "jupyterhub_hpc.kernels.node", "--connection-file", str(cf)]
        argv += ["--address", "127.0.0.7", "--linger", str(linger), "--cwd", str(tmp_path), "--"]
        argv += [sys.executable, str(kernel), str(cf)]
        proc = subprocess.Popen(argv, env={**os.environ, "PYTHONPATH": str(SRC), "SLURM_JOB_ID": "99"})
        started.append(proc)
        return proc

    yield start
    for proc in started:
        proc.kill()
        proc.wait()


def wait_state(cf: Path, want: Callable[[NodeState], bool], timeout: float = 20) -> NodeState:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        state = read_model(state_path(cf), NodeState)
        if state is not None and want(state):
            return state
        time.sleep(0.05)
    raise AssertionError(f"no such state; last: {read_model(state_path(cf), NodeState)}")


def test_the_job_binds_on_its_node_restarts_in_place_delivers_signals_and_stops(
    tmp_path: Path, node: Callable[..., subprocess.Popen[bytes]]
) -> None:
    cf = tmp_path / "kernel-n.json"
    side = Path(str(cf) + ".kernel")
    job = node()
    ready = wait_state(cf, lambda s: s.state == "ready")
    assert (ready.generation, ready.address, ready.job_id) == (1, "127.0.0.7", "99")
    info = read_json(cf)
    assert info is not None and info["ip"] == "127.0.0.7" and info["key"] == "k" and ports_bound(info)
    assert stat.S_IMODE(cf.stat().st_mode) == 0o600
    # a signal asked for by the server reaches the kernel process
    write_private(request_path(cf), NodeRequest(generation=1, signal_seq=1, signum=int(signal.SIGUSR1)))
    deadline = time.monotonic() + 10
    while "SIGUSR1" not in (side.read_text() if side.exists() else ""):
        assert time.monotonic() < deadline
        time.sleep(0.05)
    # the kernel ends (SIGTERM: exit 7); the job lingers, then runs generation 2 in place
    write_private(request_path(cf), NodeRequest(generation=1, signal_seq=2, signum=int(signal.SIGTERM)))
    exited = wait_state(cf, lambda s: s.state == "exited")
    assert (exited.generation, exited.returncode) == (1, 7)
    assert job.poll() is None
    write_private(request_path(cf), NodeRequest(generation=2, signal_seq=2, signum=int(signal.SIGTERM)))
    again = wait_state(cf, lambda s: s.state == "ready" and s.generation == 2)
    assert again.pid != ready.pid
    assert side.read_text().count("started") == 2
    # shutdown: stop is asked, the kernel exits, the job ends with the kernel's status
    write_private(
        request_path(cf), NodeRequest(generation=2, stop=True, signal_seq=3, signum=int(signal.SIGTERM))
    )
    assert job.wait(timeout=10) == 7
    assert wait_state(cf, lambda s: s.state == "stopped").generation == 2


def test_a_kernel_that_dies_before_binding_fails_the_generation_and_the_job_ends(
    tmp_path: Path, node: Callable[..., subprocess.Popen[bytes]]
) -> None:
    (tmp_path / "fake_kernel.py").write_text("import sys; print('boom', file=sys.stderr); sys.exit(5)")
    job = node(linger=0.5)
    failed = wait_state(cf := tmp_path / "kernel-n.json", lambda s: s.state in ("failed", "stopped"))
    assert failed.returncode == 5
    assert job.wait(timeout=10) == 5
    assert "before it bound its ports" in read_model(state_path(cf), NodeState).message  # type: ignore[union-attr]


def test_the_scheduler_ending_the_job_ends_the_kernel(
    tmp_path: Path, node: Callable[..., subprocess.Popen[bytes]]
) -> None:
    job = node()
    cf = tmp_path / "kernel-n.json"
    wait_state(cf, lambda s: s.state == "ready")
    started = datetime.now()
    job.send_signal(signal.SIGTERM)  # scancel, or the walltime
    assert job.wait(timeout=10) == 7
    assert (datetime.now() - started).total_seconds() < 5
    stopped = wait_state(cf, lambda s: s.state == "stopped")
    assert (stopped.returncode, stopped.message) == (7, "the scheduler ended the job")
