"""The job-side launcher: ports, the service URL and the port report to a real local HTTP server."""

from __future__ import annotations

import argparse
import json
import os
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest

from jupyterhub_hpc.singleuser.launcher import PortsHeld, parse_range, pick_port, report_port, service_url

SRC = Path(__file__).resolve().parents[2] / "src"
TOKEN = "secret-token-abc"


@dataclass(frozen=True)
class Seen:
    path: str
    authorization: str | None
    content_type: str | None
    body: bytes


class HubStub(ThreadingHTTPServer):
    """Answers POSTs with the next status of ``codes`` (the last one repeats) and records them."""

    daemon_threads = True

    def __init__(self, port: int, codes: list[int]) -> None:
        self.codes = list(codes)
        self.requests: list[Seen] = []
        super().__init__(("127.0.0.1", port), Handler)

    def next_code(self) -> int:
        return self.codes.pop(0) if len(self.codes) > 1 else self.codes[0]


class Handler(BaseHTTPRequestHandler):
    server: HubStub

    def do_POST(self) -> None:
        body = self.rfile.read(int(self.headers.get("Content-Length", "0")))
        self.server.requests.append(
            Seen(self.path, self.headers.get("Authorization"), self.headers.get("Content-Type"), body)
        )
        code = self.server.next_code()
        reply = json.dumps({"status": code}).encode()
        self.send_response(code)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(reply)))
        self.end_headers()
        self.wfile.write(reply)

    def log_message(self, format: str, *args: object) -> None:
        pass


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@pytest.fixture
def hub_stub() -> Iterator[Callable[..., HubStub]]:
    servers: list[HubStub] = []

    def start(codes: list[int], port: int = 0) -> HubStub:
        server = HubStub(port, codes)
        threading.Thread(target=server.serve_forever, args=(0.05,), daemon=True).start()
        servers.append(server)
        return server

    yield start
    for server in servers:
        server.shutdown()
        server.server_close()


@pytest.fixture(autouse=True)
def no_ssl_env(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in ["JUPYTERHUB_SSL_CLIENT_CA", "JUPYTERHUB_SSL_CERTFILE", "JUPYTERHUB_SSL_KEYFILE"]:
        monkeypatch.delenv(name, raising=False)


def api_url(server: HubStub | int) -> str:
    port = server if isinstance(server, int) else server.server_address[1]
    return f"http://127.0.0.1:{port}/hub/api/"


# -- ports ---------------------------------------------------------------------------------------


def test_pick_port_from_the_kernel_is_bindable() -> None:
    port = pick_port("127.0.0.1", None)
    assert 1024 <= port <= 65535
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", port))


def consecutive_free_ports(count: int) -> int:
    for base in range(40_000, 60_000, 7):
        socks = []
        try:
            for port in range(base, base + count):
                sock = socket.socket()
                socks.append(sock)
                sock.bind(("127.0.0.1", port))
            return base
        except OSError:
            continue
        finally:
            for sock in socks:
                sock.close()
    raise RuntimeError("no free port block")


def test_pick_port_in_a_range_skips_ports_in_use() -> None:
    base = consecutive_free_ports(3)
    held = [socket.socket(), socket.socket()]
    try:
        held[0].bind(("127.0.0.1", base))
        held[1].bind(("127.0.0.1", base + 2))
        for _ in range(10):  # the candidates are shuffled: any order must find the one free port
            assert pick_port("127.0.0.1", (base, base + 2)) == base + 1
    finally:
        for sock in held:
            sock.close()


def test_pick_port_in_a_range_stays_in_it() -> None:
    base = consecutive_free_ports(5)
    assert {pick_port("127.0.0.1", (base, base + 4)) for _ in range(20)} <= set(range(base, base + 5))


def test_pick_port_full_range_says_so() -> None:
    base = consecutive_free_ports(1)
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", base))
        sock.listen()
        with pytest.raises(PortsHeld, match=f"every port in {base}-{base} on .* is in use"):
            pick_port("127.0.0.1", (base, base))


def test_pick_port_never_returns_an_excluded_port() -> None:
    base = consecutive_free_ports(3)
    picked = {pick_port("127.0.0.1", (base, base + 2), exclude={base, base + 2}) for _ in range(10)}
    assert picked == {base + 1}


@pytest.mark.parametrize(
    ("text", "expected"), [("8000-8010", (8000, 8010)), ("1-65535", (1, 65535)), ("9-9", (9, 9))]
)
def test_parse_range(text: str, expected: tuple[int, int]) -> None:
    assert parse_range(text) == expected


@pytest.mark.parametrize(
    "text", ["", "8000", "8000-", "-8000", "a-b", "10-5", "0-10", "1-65536", " 1-2", "1-2-3", "1.5-3"]
)
def test_parse_range_errors(text: str) -> None:
    with pytest.raises(argparse.ArgumentTypeError, match="not a port range"):
        parse_range(text)


# -- the service URL ------------------------------------------------------------------------------


def test_service_url_keeps_the_path(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("JUPYTERHUB_SERVICE_URL", "http://127.0.0.1:0/user/alice/?x=1#frag")
    assert service_url("10.0.0.5", 8888) == "http://10.0.0.5:8888/user/alice/"


def test_service_url_default(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("JUPYTERHUB_SERVICE_URL", raising=False)
    assert service_url("10.0.0.5", 8888) == "http://10.0.0.5:8888/"


def test_service_url_with_internal_ssl(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("JUPYTERHUB_SERVICE_URL", "http://127.0.0.1:0/user/bob/")
    monkeypatch.setenv("JUPYTERHUB_SSL_CERTFILE", "/x/cert.pem")
    assert service_url("c042", 9001) == "https://c042:9001/user/bob/"


# -- the port report -------------------------------------------------------------------------------


def assert_only_the_port(seen: Seen, port: int) -> None:
    assert seen.path == "/hub/api/hpc/port"
    assert seen.authorization == f"token {TOKEN}"
    assert seen.content_type == "application/json"
    assert json.loads(seen.body) == {"port": port}


def test_report_port_retries_while_the_hub_answers_503(
    hub_stub: Callable[..., HubStub], capsys: pytest.CaptureFixture[str]
) -> None:
    server = hub_stub([503, 503, 200])
    started = time.monotonic()
    report_port(api_url(server), TOKEN, 8765, timeout=30)
    elapsed = time.monotonic() - started
    assert len(server.requests) == 3
    for seen in server.requests:
        assert_only_the_port(seen, 8765)
    assert 1.4 <= elapsed < 5, "two retries with 0.5 s and 1 s back-off"
    out = capsys.readouterr().out
    assert out.count("HTTP 503") == 2
    assert "retrying in 0.5 s" in out and "retrying in 1.0 s" in out


@pytest.mark.parametrize("code", [400, 403, 404])
def test_report_port_gives_up_when_refused(hub_stub: Callable[..., HubStub], code: int) -> None:
    server = hub_stub([code])
    started = time.monotonic()
    with pytest.raises(SystemExit, match=f"the hub refused the port: {code}"):
        report_port(api_url(server), TOKEN, 8765, timeout=30)
    assert time.monotonic() - started < 2
    assert len(server.requests) == 1


def test_report_port_waits_for_a_hub_that_comes_up(
    hub_stub: Callable[..., HubStub], capsys: pytest.CaptureFixture[str]
) -> None:
    port = free_port()
    servers: list[HubStub] = []
    timer = threading.Timer(1.2, lambda: servers.append(hub_stub([200], port)))
    timer.start()
    started = time.monotonic()
    try:
        report_port(api_url(port), TOKEN, 9100, timeout=30)
    finally:
        timer.cancel()
    elapsed = time.monotonic() - started
    assert servers and len(servers[0].requests) == 1
    assert_only_the_port(servers[0].requests[0], 9100)
    assert 1.2 <= elapsed < 5
    out = capsys.readouterr().out
    assert "retrying in 0.5 s" in out and "retrying in 1.0 s" in out, out


def test_report_port_gives_up_after_its_timeout() -> None:
    port = free_port()
    started = time.monotonic()
    with pytest.raises(SystemExit, match="hub unreachable for 1 s"):
        report_port(api_url(port), TOKEN, 9100, timeout=1.0)
    assert time.monotonic() - started < 3


# -- the whole launcher, in its own process ------------------------------------------------------------


def launcher_env(**extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("JUPYTERHUB_")}
    env["PYTHONPATH"] = str(SRC)
    env.update(extra)
    return env


def test_main_needs_the_hub_environment() -> None:
    done = subprocess.run(
        [sys.executable, "-m", "jupyterhub_hpc.singleuser", "--", "true"],
        env=launcher_env(),
        capture_output=True,
        text=True,
        timeout=30,
        check=False,
    )
    assert done.returncode == 1
    assert "JUPYTERHUB_API_TOKEN and JUPYTERHUB_API_URL must be set" in done.stderr
