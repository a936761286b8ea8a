"""`jupyterhub-hpc audit --node`: the /proc/net/tcp parser on lines recorded here
(tests/data/proc), the probe's classification on real answers, and each check on
constructed facts."""

from __future__ import annotations

import http.server
import json
import socket
import stat
import threading
from collections.abc import Iterator
from pathlib import Path

import pytest

from jupyterhub_hpc.audit.node import (
    Listener,
    NodeFacts,
    PathFacts,
    TcpSocket,
    check_listeners,
    check_node,
    check_output_files,
    check_own_listeners,
    check_runtime,
    classify_http,
    decode_address,
    parse_proc_net_tcp,
    process_kind,
)
from jupyterhub_hpc.audit.node_probe import probe

DATA = Path(__file__).resolve().parents[1] / "data" / "proc"
ME, OTHER = 1002, 1001


def test_recorded_ipv4_table() -> None:
    sockets = parse_proc_net_tcp((DATA / "tcp").read_text())
    listening = {(s.address, s.port, s.uid) for s in sockets if s.listening}
    assert listening == {
        ("127.0.0.1", 28741, 1001),
        ("0.0.0.0", 28742, 1001),
        ("192.0.2.2", 28743, 1001),
        ("0.0.0.0", 6817, 0),
        ("0.0.0.0", 6818, 0),
    }
    established = [s for s in sockets if s.state == "01"]
    assert len(established) == 2
    client = next(s for s in established if s.remote_port == 28741)
    assert (client.address, client.remote_address, client.port) == ("127.0.0.1", "127.0.0.1", 0x9C42)
    assert client.inode == 50110
    assert all(s.endpoint.startswith(s.address) for s in sockets)


def test_recorded_ipv6_table() -> None:
    sockets = parse_proc_net_tcp((DATA / "tcp6").read_text())
    listening = {(s.address, s.port) for s in sockets if s.listening}
    assert listening == {("::1", 28744), ("::", 28745), ("fd00::2", 28746)}
    assert {s.uid for s in sockets} == {1001}
    assert next(s for s in sockets if s.port == 28744 and s.listening).endpoint == "[::1]:28744"


def test_header_and_garbage_lines_are_skipped() -> None:
    text = (DATA / "tcp").read_text().splitlines()
    assert parse_proc_net_tcp(text[0]) == []
    assert parse_proc_net_tcp("   7: zz:yy 00:00 0A 0 0 0 1001 0 1\nnot a line\n") == []


def test_addresses_in_either_byte_order() -> None:
    assert decode_address("0100007F") == "127.0.0.1"
    assert decode_address("7F000001", "big") == "127.0.0.1"
    # an IPv4-mapped address of a dual-stack socket reads as the IPv4 address
    assert decode_address("0000000000000000FFFF00000100007F") == "127.0.0.1"
    assert decode_address("000080FE00000000FF00FC00010000FE") == "fe80::fc:ff:fe00:1"


def test_classify_http_answers() -> None:
    api = (
        b"HTTP/1.1 200 OK\r\nServer: TornadoServer/6.4\r\nContent-Type: application/json\r\n\r\n"
        b'{"version": "2.14.2"}'
    )
    assert classify_http(api) == "jupyter"
    assert classify_http(b"HTTP/1.1 404 Not Found\r\nServer: TornadoServer/6.4\r\n\r\n") == "tornado"
    simple = b"HTTP/1.0 404 File not found\r\nServer: SimpleHTTP/0.6 Python/3.11.2\r\n\r\n"
    assert classify_http(simple) == "http"
    assert classify_http(b'HTTP/1.0 200 OK\r\n\r\n{"name": "x"}') == "http"
    assert classify_http(b"\x15\x03\x01\x00\x02\x02\x46") == "tls"
    assert classify_http(b"SSH-2.0-OpenSSH_9.2\r\n") == "other"
    assert classify_http(b"") == "silent"


def test_process_kind() -> None:
    assert process_kind(b"/venv/bin/python\0-m\0ipykernel_launcher\0-f\0/run/k.json\0") == "kernel"
    assert process_kind(b"/venv/bin/python\0/venv/bin/jupyterhub-singleuser\0--port=5\0") == "server"
    assert process_kind(b"/venv/bin/jupyter-lab\0") == "server"
    assert process_kind(b"python3\0-m\0http.server\0") == ""
    assert process_kind(b"") == ""


# -- probes of real listeners on this machine --------------------------------------------------


@pytest.fixture
def http_server() -> Iterator[int]:
    server = http.server.HTTPServer(("127.0.0.1", 0), http.server.SimpleHTTPRequestHandler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield server.server_address[1]
    server.shutdown()
    server.server_close()


def test_probe_of_a_plain_web_server(http_server: int) -> None:
    assert probe("127.0.0.1", http_server, 2.0) == "http"
    assert probe("0.0.0.0", http_server, 2.0) == "http"  # a wildcard address is probed on loopback


def test_probe_of_a_zmq_socket() -> None:
    zmq = pytest.importorskip("zmq")
    context = zmq.Context()
    sock = context.socket(zmq.PUB)
    port = sock.bind_to_random_port("tcp://127.0.0.1")
    try:
        assert probe("127.0.0.1", port, 2.0) == "zmq"
    finally:
        sock.close(0)
        context.term()


def test_probe_of_a_closed_port() -> None:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    assert probe("127.0.0.1", port, 1.0) == "closed"


# -- the checks on constructed facts -----------------------------------------------------------


def sock(address: str, port: int, uid: int) -> TcpSocket:
    return TcpSocket(address, port, "0.0.0.0", 0, "0A", uid, 1)


def test_other_users_listeners_by_what_answers() -> None:
    facts = NodeFacts(
        uid=ME,
        listeners=(
            Listener(sock("127.0.0.1", 8888, OTHER), "hpcuser1", "http"),
            Listener(sock("192.0.2.2", 40000, OTHER), "hpcuser1", "tornado"),
            Listener(sock("192.0.2.2", 40001, OTHER), "hpcuser1", "tls"),
            Listener(sock("127.0.0.1", 51373, OTHER), "hpcuser1", "zmq"),
            Listener(sock("127.0.0.1", 41609, OTHER), "hpcuser1", "zmq"),
            Listener(sock("0.0.0.0", 6817, 0), "root", ""),
            Listener(sock("127.0.0.1", 9999, ME), "hpcuser2", ""),
        ),
        jupyter_uids={OTHER: ("kernel",)},
    )
    found = {(f.check, f.severity, f.subject) for f in check_listeners(facts)}
    assert found == {
        ("node.other-listener", "medium", "127.0.0.1:8888 (uid 1001)"),
        ("node.server-reachable", "high", "192.0.2.2:40000 (uid 1001)"),
        ("node.other-listener", "medium", "192.0.2.2:40001 (uid 1001)"),
        ("node.kernel-reachable", "high", "127.0.0.1:41609,51373 (uid 1001)"),
        ("node.system-listener", "info", "uid 0"),
    }
    kernel = next(f for f in check_listeners(facts) if f.check == "node.kernel-reachable")
    assert "iopub" in kernel.what and "runs Jupyter kernel" in kernel.what


def test_five_unprobed_loopback_ports_of_one_user_look_like_a_kernel() -> None:
    five = tuple(Listener(sock("127.0.0.1", p, OTHER)) for p in (41001, 47017, 50003, 52211, 60100))
    found = check_listeners(NodeFacts(uid=ME, listeners=five))
    assert [(f.check, f.severity) for f in found] == [("node.kernel-reachable", "high")]
    four = five[:4]
    assert {f.check for f in check_listeners(NodeFacts(uid=ME, listeners=four))} == {"node.other-listener"}


def test_own_listeners() -> None:
    facts = NodeFacts(
        uid=ME,
        listeners=(
            Listener(sock("127.0.0.1", 41000, ME), pid=10, process="kernel"),
            Listener(sock("0.0.0.0", 8888, ME), pid=11, process="server"),
            Listener(sock("::", 7000, ME), pid=12, process=""),
            Listener(sock("192.0.2.2", 8889, ME), pid=13, process="server"),
        ),
    )
    found = [(f.check, f.severity, f.subject) for f in check_own_listeners(facts)]
    assert found == [
        ("node.own-kernel-tcp", "high", "127.0.0.1:41000 (pid 10)"),
        ("node.own-wildcard", "medium", "0.0.0.0:8888 (pid 11)"),
        ("node.own-wildcard", "low", "[::]:7000 (pid 12)"),
    ]


def path(p: str, uid: int, mode: int, readable: bool, kind: int = stat.S_IFREG) -> PathFacts:
    return PathFacts(p, uid, kind | mode, "", readable)


def test_job_outputs() -> None:
    facts = NodeFacts(
        uid=ME,
        output_files=(
            path("/home/a/.jupyterhub-hpc-1.log", OTHER, 0o644, True),
            path("/home/a/.jupyterhub-hpc-2.log", OTHER, 0o600, False),
            path("/home/b/.jupyterhub-hpc-3.log", ME, 0o640, True),
            path("/home/b/.jupyterhub-hpc-4.log", ME, 0o600, True),
        ),
    )
    found = [(f.check, f.severity, f.subject) for f in check_output_files(facts)]
    assert found == [
        ("node.readable-output", "high", "/home/a/.jupyterhub-hpc-1.log"),
        ("node.own-output-readable", "medium", "/home/b/.jupyterhub-hpc-3.log"),
    ]


def test_runtime_directories_and_files() -> None:
    d = stat.S_IFDIR
    facts = NodeFacts(
        uid=ME,
        runtime_dirs=(
            path("/tmp/jupyterhub-hpc-1001", OTHER, 0o700, False, d),
            path("/tmp/jupyterhub-hpc-1001-x", OTHER, 0o755, True, d),
            path(f"/tmp/jupyterhub-hpc-{ME}", OTHER, 0o777, True, d),
            path(f"/tmp/jupyterhub-hpc-{ME}-abc", ME, 0o755, True, d),
            path("/run/user/1001/jupyter", OTHER, 0o755, True, d),
        ),
        runtime_files=(
            path("/tmp/jupyterhub-hpc-1001-x/kernel-1.json", OTHER, 0o644, True),
            path("/tmp/jupyterhub-hpc-1001-x/jpserver-7.json", OTHER, 0o644, True),
            path("/tmp/jupyterhub-hpc-1001-x/private.json", OTHER, 0o600, False),
        ),
    )
    found = [(f.check, f.severity, f.subject) for f in check_runtime(facts)]
    assert found == [
        ("node.runtime-dir-mode", "low", "/tmp/jupyterhub-hpc-1001-x"),
        ("node.runtime-dir-squatted", "medium", f"/tmp/jupyterhub-hpc-{ME}"),
        ("node.own-runtime-dir", "high", f"/tmp/jupyterhub-hpc-{ME}-abc"),
        ("node.readable-runtime-file", "high", "/tmp/jupyterhub-hpc-1001-x/kernel-1.json"),
        ("node.readable-runtime-file", "high", "/tmp/jupyterhub-hpc-1001-x/jpserver-7.json"),
    ]
    texts = [f.what for f in check_runtime(facts) if f.check == "node.readable-runtime-file"]
    assert "HMAC key" in texts[0] and "token" in texts[1]


def test_a_clean_node_has_nothing_above_info() -> None:
    facts = NodeFacts(
        uid=ME,
        listeners=(Listener(sock("0.0.0.0", 6817, 0)), Listener(sock("192.0.2.2", 8888, ME), pid=5)),
        output_files=(path("/home/a/.jupyterhub-hpc-1.log", OTHER, 0o600, False),),
        runtime_dirs=(path("/tmp/jupyterhub-hpc-1001", OTHER, 0o700, False, stat.S_IFDIR),),
    )
    assert {f.severity for f in check_node(facts)} == {"info"}
    assert json.dumps([f.check for f in check_node(facts)]) == '["node.system-listener"]'
