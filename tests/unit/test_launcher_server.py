"""The launcher as a process around a real (stand-in) server: it reports a port only once the
server's own process listens there, moves on when another process takes the port first,
fails clearly when every port is held, passes signals on and cleans up after itself."""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest

from .test_launcher import consecutive_free_ports

SRC = Path(__file__).resolve().parents[2] / "src"
FAKE_SERVER = Path(__file__).resolve().parents[1] / "fakes" / "fake_server.py"
TOKEN = "secret-token-launcher"


class Hub(ThreadingHTTPServer):
    """Records each port report and whether that port already accepted connections then."""

    daemon_threads = True

    def __init__(self, port: int = 0) -> None:
        self.reports: list[tuple[int, bool]] = []
        self.started = time.time()
        super().__init__(("127.0.0.1", port), Handler)

    @property
    def api_url(self) -> str:
        return f"http://127.0.0.1:{self.server_address[1]}/hub/api/"


class Handler(BaseHTTPRequestHandler):
    server: Hub

    def do_POST(self) -> None:
        port = json.loads(self.rfile.read(int(self.headers.get("Content-Length", "0"))))["port"]
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=1):
                listening = True
        except OSError:
            listening = False
        self.server.reports.append((port, listening))
        self.send_response(200)
        self.send_header("Content-Length", "2")
        self.end_headers()
        self.wfile.write(b"{}")

    def log_message(self, format: str, *args: object) -> None:
        pass


@pytest.fixture
def hub() -> Iterator[Hub]:
    server = Hub()
    threading.Thread(target=server.serve_forever, args=(0.05,), daemon=True).start()
    yield server
    server.shutdown()
    server.server_close()


def launch(api_url: str, tmp_path: Path, *args: str, **fake: str) -> subprocess.Popen[str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("JUPYTER", "XDG_RUNTIME"))}
    env.update(
        PYTHONPATH=str(SRC),
        TMPDIR=str(tmp_path),
        JUPYTERHUB_API_TOKEN=TOKEN,
        JUPYTERHUB_API_URL=api_url,
        JUPYTERHUB_SERVICE_URL="http://127.0.0.1:0/user/alice/",
        **{f"FAKE_{k.upper()}": v for k, v in fake.items()},
    )
    argv = [sys.executable, "-m", "jupyterhub_hpc.singleuser", "--ip", "127.0.0.1", *args]
    argv += ["--", sys.executable, str(FAKE_SERVER)]
    return subprocess.Popen(argv, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)


def read_until(proc: subprocess.Popen[str], marker: str, timeout: float = 20) -> list[str]:
    """Lines of the launcher's output up to (including) the first containing ``marker``."""
    lines: list[str] = []
    deadline = time.monotonic() + timeout
    assert proc.stdout is not None
    while time.monotonic() < deadline:
        line = proc.stdout.readline()
        if not line:
            break
        lines.append(line.rstrip("\n"))
        if marker in line:
            return lines
    raise AssertionError(f"no {marker!r} in {lines}")


def finish(proc: subprocess.Popen[str], timeout: float = 30) -> str:
    out, _ = proc.communicate(timeout=timeout)
    return out


def started_port(line: str) -> int:
    return int(line.rsplit(":", 1)[1].split()[0])


def test_the_port_is_reported_only_once_the_server_listens(hub: Hub, tmp_path: Path) -> None:
    proc = launch(hub.api_url, tmp_path, delay="1.0", serve="1.5")
    out = finish(proc)
    assert proc.returncode == 0, out
    [(port, listening)] = hub.reports
    assert listening, "the hub was told a port nobody listened on yet"
    info = json.loads(next(ln for ln in out.splitlines() if ln.startswith("fake-server: {"))[13:])
    assert info["port"] == port
    assert TOKEN not in out


def test_a_port_taken_in_the_window_is_never_reported(hub: Hub, tmp_path: Path) -> None:
    base = consecutive_free_ports(3)
    proc = launch(hub.api_url, tmp_path, "--port-range", f"{base}-{base + 2}", delay="1.0", serve="1.0")
    [*_, line] = read_until(proc, "starting the server on")
    victim_port = started_port(line)
    # the attacker binds the port between the launcher's pick and the server's bind
    with socket.socket() as attacker:
        attacker.bind(("127.0.0.1", victim_port))
        attacker.listen()
        out = finish(proc)
    assert proc.returncode == 0, out
    assert f"port {victim_port} on" in out and "is held by another process" in out
    [(port, listening)] = hub.reports
    assert port != victim_port and base <= port <= base + 2 and listening


def test_every_port_held_is_a_clear_failure_and_nothing_is_reported(hub: Hub, tmp_path: Path) -> None:
    base = consecutive_free_ports(2)
    held = []
    for port in (base, base + 1):
        sock = socket.socket()
        sock.bind(("127.0.0.1", port))
        sock.listen()
        held.append(sock)
    try:
        proc = launch(hub.api_url, tmp_path, "--port-range", f"{base}-{base + 1}", serve="1")
        out = finish(proc)
    finally:
        for sock in held:
            sock.close()
    assert proc.returncode == 1
    assert f"every port in {base}-{base + 1} on" in out and "is in use" in out
    assert hub.reports == []


def test_a_wildcard_listener_of_another_process_counts_as_taken(hub: Hub, tmp_path: Path) -> None:
    base = consecutive_free_ports(2)
    proc = launch(hub.api_url, tmp_path, "--port-range", f"{base}-{base + 1}", delay="1.0", serve="1.0")
    [*_, line] = read_until(proc, "starting the server on")
    with socket.socket() as attacker:
        attacker.bind(("0.0.0.0", started_port(line)))
        attacker.listen()
        out = finish(proc)
    assert "is held by another process" in out
    [(port, _)] = hub.reports
    assert port != started_port(line)


def test_kernels_use_ipc_in_the_private_directory_by_default(hub: Hub, tmp_path: Path) -> None:
    out = finish(launch(hub.api_url, tmp_path, serve="0.5"))
    info = json.loads(next(ln for ln in out.splitlines() if ln.startswith("fake-server: {"))[13:])
    assert info["config"] == {"KernelManager": {"transport": "ipc"}}
    runtime = Path(info["runtime_dir"])
    assert runtime.parent == tmp_path and info["config_path"].startswith(str(runtime))
    assert not runtime.exists(), "the private directory outlived the job"
    out = finish(launch(hub.api_url, tmp_path, "--kernel-transport", "tcp", serve="0.5"))
    info = json.loads(next(ln for ln in out.splitlines() if ln.startswith("fake-server: {"))[13:])
    assert info["config"] == {} and info["config_path"] == ""


def test_sigterm_reaches_the_server_and_the_private_directory_goes(hub: Hub, tmp_path: Path) -> None:
    proc = launch(hub.api_url, tmp_path, term_exit="7")
    lines = read_until(proc, "reporting the port")
    info = json.loads(next(ln for ln in lines if ln.startswith("fake-server: {"))[13:])
    proc.send_signal(signal.SIGTERM)
    finish(proc)
    assert proc.returncode == 7  # the server's own status after the signal it was passed
    with pytest.raises(ProcessLookupError):
        os.kill(info["pid"], 0)
    assert not Path(info["runtime_dir"]).exists()


def test_a_server_that_fails_before_listening_is_not_reported(hub: Hub, tmp_path: Path) -> None:
    proc = launch(hub.api_url, tmp_path, fail_before_listen="3")
    out = finish(proc)
    assert proc.returncode == 3, out
    assert "failing before it listens" in out
    assert "is held by" not in out
    assert hub.reports == []


def test_a_missing_server_command_is_a_clear_failure(hub: Hub, tmp_path: Path) -> None:
    env = {**os.environ, "PYTHONPATH": str(SRC), "TMPDIR": str(tmp_path)}
    env.update(JUPYTERHUB_API_TOKEN=TOKEN, JUPYTERHUB_API_URL=hub.api_url)
    argv = [sys.executable, "-m", "jupyterhub_hpc.singleuser", "--ip", "127.0.0.1", "--", "no-such-server"]
    done = subprocess.run(argv, env=env, capture_output=True, text=True, timeout=30, check=False)
    assert done.returncode == 127
    assert "cannot run no-such-server" in done.stderr and "Traceback" not in done.stderr
    assert hub.reports == []
    assert not list(tmp_path.iterdir()), "the private directory outlived the job"


def test_the_server_starts_only_once_the_hub_answers(tmp_path: Path) -> None:
    """A job that starts while the hub is down (a hub restart): Jupyter would give up on an
    absent hub after about 30 s, so the launcher waits for the hub before starting it."""
    port = consecutive_free_ports(1)
    proc = launch(f"http://127.0.0.1:{port}/hub/api/", tmp_path, serve="0.5")
    time.sleep(2)
    hub = Hub(port)
    threading.Thread(target=hub.serve_forever, args=(0.05,), daemon=True).start()
    try:
        out = finish(proc)
    finally:
        hub.shutdown()
        hub.server_close()
    assert proc.returncode == 0, out
    assert "hub not reachable" in out
    info = json.loads(next(ln for ln in out.splitlines() if ln.startswith("fake-server: {"))[13:])
    assert info["listening_at"] >= hub.started
    assert [listening for _, listening in hub.reports] == [True]
