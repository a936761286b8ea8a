"""Two ordinary users with servers on the same compute node (the red-team's setup): the
attacker, as its own Unix user, takes the victim's port in the window between the
launcher's pick and Jupyter's bind, holds a whole small ``port_range``, subscribes to the
victim's kernel, and tries to read the victim's job output. The hub runs unprivileged under
the generated sudoers file, as deployed.

The attacker is given what it could at best learn (the victim's port and kernel endpoints,
read here as root): a stronger attacker than a real one, who cannot read the 0600 output."""

from __future__ import annotations

import json
import os
import pwd
import re
import signal
import stat
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import requests
import secutil
from secutil import FAST

from conftest import nonroot_hubs
from hub import Hub, wait_for
from jupyterhub_hpc.singleuser.listeners import listeners

pytestmark = [pytest.mark.slurm, pytest.mark.hub]

VICTIM, ATTACKER, OTHER = "hpcuser1", "hpcuser2", "hpcuser3"
FAKES = Path(__file__).resolve().parents[1] / "fakes"
PYTHON = sys.executable  # the venv's: readable and runnable by the test users
# below the kernel's ephemeral range (ip_local_port_range 32768-60999 on Debian), so that no
# outgoing connection of an unrelated process can hold one of these ports while the test runs
RANGE = (31310, 31312)


@pytest.fixture(scope="module")
def hub(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Hub]:
    secutil.cancel_test_jobs()
    with nonroot_hubs(tmp_path_factory.mktemp("logs")) as make:
        hub = make(**FAST)
        hub.start()
        for user in (VICTIM, OTHER):
            hub.ensure_user(user)
        yield hub
        for user in (VICTIM, OTHER):
            if hub.user_model(user)["servers"]:
                hub.stop_server(user)
    secutil.cancel_test_jobs()


def output_path(user: str, job: str) -> Path:
    return Path(pwd.getpwnam(user).pw_dir) / f".jupyterhub-hpc-{job}.log"


def as_user(user: str, *argv: str, **kwargs: Any) -> subprocess.Popen[str]:
    return subprocess.Popen(
        ["runuser", "-u", user, "--", *argv],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        cwd="/",
        start_new_session=True,  # runuser and the program in one process group: stop() ends both
        **kwargs,
    )


def stop(proc: subprocess.Popen[str]) -> None:
    try:
        os.killpg(proc.pid, signal.SIGKILL)
    except ProcessLookupError:
        pass
    proc.wait()


def wait_job(hub: Hub, user: str) -> str:
    return str(wait_for(lambda: (secutil.server_state(hub, user) or {}).get("job_id"), 60, 0.05))


def outputs(user: str) -> set[Path]:
    return set(Path(pwd.getpwnam(user).pw_dir).glob(".jupyterhub-hpc-*.log"))


def started_on(user: str, before: set[Path], timeout: float = 90) -> tuple[str, int]:
    """The address and port the launcher of the user's new job is starting the server
    on, as soon as it says so (read as root from the job's output, every 5 ms)."""

    def find() -> tuple[str, int] | None:
        for path in outputs(user) - before:
            try:
                match = re.search(r"starting the server on ([\d.]+):(\d+)", path.read_text())
            except OSError:
                continue
            if match:
                return match.group(1), int(match.group(2))
        return None

    found = wait_for(find, timeout, 0.005, message=f"no start line in a new job output of {user}")
    return str(found[0]), int(found[1])


#: the victim's server command starts 2 s late, as a Python import from a busy shared file
#: system does on a real cluster: the window the red team used, made deterministic
SLOW_START = {"cmd": ["bash", "-c", 'sleep 2 && exec jupyterhub-singleuser "$@"', "slow-start"]}


@pytest.fixture(scope="module")
def attacker_log(tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("attacker") / "connections.jsonl"
    path.touch()
    os.chmod(path.parent, 0o777)
    os.chmod(path, 0o666)
    return path


@pytest.fixture(scope="module")
def taken(hub: Hub, attacker_log: Path) -> Iterator[dict[str, Any]]:
    """The victim spawns; the attacker binds the victim's port the moment it is picked."""
    attacker = as_user(ATTACKER, PYTHON, str(FAKES / "node_attacker.py"), "bind", "--log", str(attacker_log))
    hub.per_user({VICTIM: SLOW_START})
    before = outputs(VICTIM)
    # the spawn request returns once the server is up (or after slow_spawn_timeout): send it aside
    request = threading.Thread(target=hub.spawn, args=(VICTIM,), daemon=True)
    try:
        request.start()
        address, port = started_on(VICTIM, before)
        assert attacker.stdin is not None and attacker.stdout is not None
        attacker.stdin.write(f"{address} {port}\n")
        attacker.stdin.flush()
        answer = attacker.stdout.readline().strip()
        if answer != f"bound {port}":
            sockets = subprocess.run(["ss", "-tanpe"], capture_output=True, text=True).stdout
            seen = "\n".join(line for line in sockets.splitlines() if f":{port}" in line)
            raise AssertionError(f"the attacker lost the race: {answer}\n{seen}")
        server = hub.wait_ready(VICTIM)
        request.join(30)
        job = wait_job(hub, VICTIM)
        yield {"job": job, "stolen": port, "server": server, "attacker": attacker}
    finally:
        stop(attacker)


def test_a_port_taken_in_the_window_is_never_routed(
    hub: Hub, taken: dict[str, Any], attacker_log: Path
) -> None:
    state = secutil.server_state(hub, VICTIM)
    assert state is not None and state["port"] != taken["stolen"]
    output = output_path(VICTIM, taken["job"]).read_text()
    uid = pwd.getpwnam(ATTACKER).pw_uid
    assert f"port {taken['stolen']} on" in output and f"held by another user's process (uid {uid})" in output
    # the victim's browser, through the proxy, reaches the victim's own Jupyter
    token = hub.user_token(VICTIM)
    reply = hub.server_status(VICTIM, token)
    assert reply.status_code == 200 and "started" in reply.json()
    lab = requests.get(
        f"{hub.url}/user/{VICTIM}/lab", headers={"Authorization": f"token {token}"}, timeout=30
    )
    assert lab.status_code == 200
    time.sleep(1)
    assert attacker_log.read_text() == "", "the hub or proxy connected to the attacker's listener"


def test_the_job_output_is_private(taken: dict[str, Any]) -> None:
    path = output_path(VICTIM, taken["job"])
    info = path.stat()
    assert stat.S_IMODE(info.st_mode) == 0o600 and info.st_uid == pwd.getpwnam(VICTIM).pw_uid
    assert "the server listens on" in path.read_text()  # the same useful content
    read = subprocess.run(["runuser", "-u", ATTACKER, "--", "cat", str(path)], capture_output=True, text=True)
    assert read.returncode != 0 and "Permission denied" in read.stderr


def kernel_connection(hub: Hub, user: str, job: str) -> dict[str, Any]:
    """Start a kernel in the user's server; its connection file, read as root."""
    token = hub.user_token(user)
    reply = requests.post(
        f"{hub.url}/user/{user}/api/kernels",
        headers={"Authorization": f"token {token}"},
        json={"name": "python3"},
        timeout=60,
    )
    assert reply.status_code == 201, reply.text
    kernel = reply.json()["id"]
    pid = secutil.server_pid(user, job)
    environ = dict(item.split(b"=", 1) for item in secutil.proc_environ(pid).split(b"\0") if b"=" in item)
    path = Path(environ[b"JUPYTER_RUNTIME_DIR"].decode()) / f"kernel-{kernel}.json"
    wait_for(path.exists, 30, message=f"no {path}")
    info = dict(json.loads(path.read_text()))
    info["path"] = str(path)
    return info


def endpoint(info: dict[str, Any], channel: str) -> str:
    port = info[f"{channel}_port"]
    if info["transport"] == "ipc":
        return f"ipc://{info['ip']}-{port}"
    return f"tcp://{info['ip']}:{port}"


def eavesdrop(
    hub: Hub, user: str, job: str, marker: str
) -> tuple[dict[str, Any], dict[str, Any], dict[str, Any]]:
    """The attacker subscribes to the kernel's iopub (and every TCP port the user listens
    on) while the user's own client runs code printing ``marker``."""
    info = kernel_connection(hub, user, job)
    uid = pwd.getpwnam(user).pw_uid
    tcp = [
        f"tcp://{'127.0.0.1' if s.is_wildcard else s.address}:{s.port}" for s in listeners() if s.uid == uid
    ]
    targets = sorted({endpoint(info, "iopub"), *tcp})
    spy = as_user(
        ATTACKER,
        PYTHON,
        str(FAKES / "node_attacker.py"),
        "subscribe",
        "--seconds",
        "12",
        "--marker",
        marker,
        *targets,
    )
    time.sleep(2)  # subscriptions in place before the output starts
    os.chmod(FAKES / "kernel_client.py", 0o644)
    own = subprocess.run(
        [
            "runuser",
            "-u",
            user,
            "--",
            PYTHON,
            str(FAKES / "kernel_client.py"),
            info["path"],
            "--marker",
            marker,
            "--seconds",
            "5",
        ],
        capture_output=True,
        text=True,
        timeout=90,
        cwd="/",
    )
    assert own.returncode == 0, own.stdout + own.stderr
    spied, _ = spy.communicate(timeout=60)
    return info, json.loads(own.stdout.strip().splitlines()[-1]), json.loads(spied.strip().splitlines()[-1])


def test_an_attackers_subscriber_gets_nothing_of_the_victims_kernel(hub: Hub, taken: dict[str, Any]) -> None:
    info, own, spied = eavesdrop(hub, VICTIM, taken["job"], "VICTIM-SECRET-OUTPUT")
    assert info["transport"] == "ipc"
    runtime = Path(info["path"]).parent
    assert runtime.stat().st_mode & 0o777 == 0o700  # (Jupyter adds the sticky bit)
    assert own["with_marker"] > 10  # the kernel did print, and its own user saw it
    assert spied["messages"] == 0 and spied["with_marker"] == 0, spied
    # none of the kernel's five channels is on TCP; ipykernel keeps one receive-only ZMQ PULL
    # port on 127.0.0.1 for its forked subprocesses' output (messages without the kernel's
    # random 16-byte prefix are dropped): the subscriber above tried it too and got nothing
    uid = pwd.getpwnam(VICTIM).pw_uid
    kernels = [
        p
        for p in secutil.pids()
        if secutil.uid_of(p) == uid and b"ipykernel" in secutil.cmdline(p) and secutil.in_job(p, taken["job"])
    ]
    assert kernels
    for kernel in kernels:
        assert len(secutil.listening(kernel)) <= 1
    assert len(secutil.listening(secutil.server_pid(VICTIM, taken["job"]))) == 1


def test_a_held_port_range_fails_clearly_and_is_never_routed(hub: Hub, attacker_log: Path) -> None:
    hub.per_user({OTHER: {"port_range": f"{RANGE[0]}-{RANGE[1]}", "kernel_transport": "tcp"}})
    attacker = as_user(ATTACKER, PYTHON, str(FAKES / "node_attacker.py"), "bind", "--log", str(attacker_log))
    try:
        assert attacker.stdin is not None and attacker.stdout is not None
        for port in range(RANGE[0], RANGE[1] + 1):
            attacker.stdin.write(f"{port}\n")
            attacker.stdin.flush()
            assert attacker.stdout.readline().strip() == f"bound {port}"
        hub.spawn(OTHER)
        events = hub.progress_events(OTHER, timeout=120)
        assert events and events[-1].get("failed"), events
        message = events[-1]["message"]
        assert f"every port in {RANGE[0]}-{RANGE[1]} on" in message and "is in use" in message, message
        assert f"uid {pwd.getpwnam(ATTACKER).pw_uid}" in message
        secutil.wait_no_server(hub, OTHER)
        assert attacker_log.read_text() == ""
    finally:
        stop(attacker)


def test_with_tcp_kernels_the_same_subscriber_reads_everything(hub: Hub) -> None:
    """The control: ``kernel_transport = "tcp"`` (Jupyter's default) is what the red team
    broke: the attacker's subscriber, unchanged, reads the other user's kernel output."""
    hub.per_user({OTHER: {"port_range": f"{RANGE[0]}-{RANGE[1]}", "kernel_transport": "tcp"}})
    hub.spawn(OTHER)
    hub.wait_ready(OTHER)
    state = secutil.server_state(hub, OTHER)
    assert state is not None and RANGE[0] <= state["port"] <= RANGE[1]
    info, own, spied = eavesdrop(hub, OTHER, str(state["job_id"]), "OTHER-USER-OUTPUT")
    assert info["transport"] == "tcp"
    assert own["with_marker"] > 10
    assert spied["with_marker"] > 0, spied
    hub.stop_server(OTHER)
