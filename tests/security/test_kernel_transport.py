"""A kernel job's traffic on the wire, live: the kernel runs in a network namespace with an
address of its own (a veth pair made here, a second "host"), started as the test user through
the project's real in-job supervisor (``python -m jupyterhub_hpc.kernels.node --address``), and
a jupyter_client client in the host namespace talks to it while ``tcpdump`` records the host end
of the veth.

The connection file is written by the provisioner itself (``HPCProvisioner.pre_launch``, through
``KernelManager.pre_start_kernel`` run as the user: HMAC key, hmac-sha256, CurveZMQ key pair,
ports 0, 0600 in the 0700 kernel directory); nothing is submitted to a scheduler, the test
starts the command a kernel job would run.

- with CurveZMQ (the default) neither the cell's code nor its output is in the captured bytes;
- the control, encryption ``disabled``: both are, so the capture does see plaintext;
- a client with the HMAC key but without the CurveZMQ keys gets no answer at all.
"""

from __future__ import annotations

import contextlib
import json
import os
import pwd
import queue
import secrets
import shutil
import signal
import stat
import struct
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
import zmq
from jupyter_client.blocking.client import BlockingKernelClient

import jupyterhub_hpc
from jupyterhub_hpc.kernels.files import PORT_NAMES, NodeState, read_json, read_model, state_path
from jupyterhub_hpc.kernels.spec import install, kernelspec

USER = "hpcuser1"
#: where the package the test imports lives: the supervisor in the namespace runs the same code
SRC = str(Path(jupyterhub_hpc.__file__).resolve().parents[1])

#: as the user: the provisioner writes the connection file (KernelManager.pre_start_kernel ->
#: HPCProvisioner.pre_launch) and says where it is and what the kernel job would run
WRITE_CONNECTION_FILE = """
import json, os, sys
os.environ["JUPYTER_PATH"] = sys.argv[1]
from jupyter_client.manager import KernelManager
km = KernelManager(kernel_name=sys.argv[2])
cmd, _ = km.pre_start_kernel()
print(json.dumps({"connection_file": km.connection_file, "cmd": cmd}))
"""


@dataclass(frozen=True)
class Netns:
    name: str
    host_if: str
    host_ip: str
    node_ip: str


@dataclass(frozen=True)
class Kernel:
    connection_file: Path
    info: dict[str, Any]
    pid: int


def tool(name: str) -> str:
    """The path of a program this test needs (it fails, never skips, when one is missing)."""
    path = shutil.which(name, path="/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin")
    assert path, f"{name} is not installed (make system-deps installs it)"
    return path


def run(*argv: str) -> str:
    result = subprocess.run(list(argv), capture_output=True, text=True, timeout=30)
    assert result.returncode == 0, f"{argv}: {result.returncode}\n{result.stdout}{result.stderr}"
    return result.stdout


def free_subnet() -> tuple[str, str]:
    """(host, namespace) addresses of a /30 in 10.0.0.0/8 that no interface or route here uses."""
    ip = tool("ip")
    used = run(ip, "-4", "-o", "addr", "show") + run(ip, "-4", "route", "show", "table", "all")
    for _ in range(200):
        b, c, d = secrets.randbelow(56) + 200, secrets.randbelow(256), secrets.randbelow(64) * 4
        prefix = f"10.{b}.{c}."
        if prefix not in used:
            return f"{prefix}{d + 1}", f"{prefix}{d + 2}"
    raise AssertionError("no free 10.x.y.0/30 for the test namespace")


@pytest.fixture
def netns() -> Iterator[Netns]:
    """A network namespace with a veth pair to the host namespace, both ends up; always removed."""
    tag = secrets.token_hex(3)
    host_ip, node_ip = free_subnet()
    ns = Netns(name=f"jhhpc-ktx-{os.getpid()}-{tag}", host_if=f"kt{tag}h", host_ip=host_ip, node_ip=node_ip)
    node_if = f"kt{tag}n"
    try:
        run(tool("ip"), "netns", "add", ns.name)
        run(tool("ip"), "link", "add", ns.host_if, "type", "veth", "peer", "name", node_if)
        run(tool("ip"), "link", "set", node_if, "netns", ns.name)
        run(tool("ip"), "addr", "add", f"{host_ip}/30", "dev", ns.host_if)
        run(tool("ip"), "link", "set", ns.host_if, "up")
        inside = (tool("ip"), "netns", "exec", ns.name)
        run(*inside, tool("ip"), "addr", "add", f"{node_ip}/30", "dev", node_if)
        run(*inside, tool("ip"), "link", "set", node_if, "up")
        run(*inside, tool("ip"), "link", "set", "lo", "up")
        # no IPv6 chatter (router solicitations) on the pair: what is captured is the kernel's traffic
        for where in ((), inside):
            name = ns.host_if if not where else node_if
            run(*where, tool("sysctl"), "-q", "-w", f"net.ipv6.conf.{name}.disable_ipv6=1")
        yield ns
    finally:
        pids = subprocess.run([tool("ip"), "netns", "pids", ns.name], capture_output=True, text=True).stdout
        for pid in pids.split():
            with contextlib.suppress(ProcessLookupError, ValueError):
                os.kill(int(pid), signal.SIGKILL)
        subprocess.run([tool("ip"), "link", "del", ns.host_if], capture_output=True, check=False)
        subprocess.run([tool("ip"), "netns", "del", ns.name], capture_output=True, check=False)
        assert ns.name not in run(tool("ip"), "netns", "list"), f"netns {ns.name} left behind"


@pytest.fixture
def kernels() -> Iterator[tuple[Path, Path]]:
    """(kernelspecs readable by the user, a fresh kernel directory in the user's home); removed."""
    user = pwd.getpwnam(USER)
    specs = Path(tempfile.mkdtemp(prefix="kernel-transport-"))
    os.chmod(specs, 0o755)
    directory = Path(user.pw_dir, ".local/share/jupyter/hpc-kernels", f"transport-{secrets.token_hex(4)}")
    for name, encryption in (("curve", "required"), ("plain", "disabled")):
        spec = kernelspec(
            f"Transport test ({name})",
            config={"kernel_directory": str(directory), "encryption": encryption},
        )
        install(name, spec, specs / "kernels")
    run("chmod", "-R", "a+rX", str(specs))
    try:
        yield specs, directory
    finally:
        shutil.rmtree(specs, ignore_errors=True)
        shutil.rmtree(directory, ignore_errors=True)


def user_env() -> dict[str, str]:
    user = pwd.getpwnam(USER)
    return {
        "PATH": "/usr/local/bin:/usr/bin:/bin",
        "HOME": user.pw_dir,
        "USER": USER,
        "LOGNAME": USER,
        "LANG": "C.UTF-8",
        "PYTHONPATH": SRC,
    }


def provisioner_connection_file(specs: Path, kernel_name: str) -> tuple[Path, list[str]]:
    """The provisioner writes the connection file as the user: (its path, the kernel argv)."""
    result = subprocess.run(
        [
            tool("runuser"),
            "-u",
            USER,
            "--",
            sys.executable,
            "-c",
            WRITE_CONNECTION_FILE,
            str(specs),
            kernel_name,
        ],
        capture_output=True,
        text=True,
        timeout=30,
        cwd="/tmp",
        env=user_env(),
    )
    assert result.returncode == 0, result.stderr[-3000:]
    written = json.loads(result.stdout.strip().splitlines()[-1])
    return Path(written["connection_file"]), list(written["cmd"])


def check_private(path: Path, mode: int) -> None:
    user = pwd.getpwnam(USER)
    st = path.stat()
    assert (st.st_uid, stat.S_IMODE(st.st_mode)) == (user.pw_uid, mode), (path, st.st_uid, oct(st.st_mode))


@contextlib.contextmanager
def node_kernel(ns: Netns, specs: Path, kernel_name: str) -> Iterator[Kernel]:
    """The kernel job's command, ``python -m jupyterhub_hpc.kernels.node --address <namespace
    address> -- <kernel argv>``, run in the namespace as the user, until its state file says
    ``ready``; killed (its whole session) and its files removed at the end."""
    connection_file, cmd = provisioner_connection_file(specs, kernel_name)
    check_private(connection_file, 0o600)
    check_private(connection_file.parent, 0o700)
    written = read_json(connection_file)
    assert written is not None
    assert [written[p] for p in PORT_NAMES] == [0] * 5, written
    assert cmd[1:] == ["-m", "ipykernel_launcher", "-f", str(connection_file)], cmd
    user = pwd.getpwnam(USER)
    argv = [
        *(tool("ip"), "netns", "exec", ns.name),
        *(tool("setpriv"), f"--reuid={user.pw_uid}", f"--regid={user.pw_gid}", "--init-groups", "--"),
        *(sys.executable, "-m", "jupyterhub_hpc.kernels.node", "--connection-file", str(connection_file)),
        *("--address", ns.node_ip, "--linger", "0", "--cwd", str(connection_file.parent), "--"),
        *cmd,
    ]
    log = tempfile.TemporaryFile()
    node = subprocess.Popen(argv, env=user_env(), cwd="/", stdout=log, stderr=log, start_new_session=True)
    try:
        deadline = time.monotonic() + 20
        while True:
            state = read_model(state_path(connection_file), NodeState)
            if state is not None and state.state == "ready":
                break
            if node.poll() is not None or time.monotonic() > deadline:
                log.seek(0)
                raise AssertionError(f"the kernel did not get ready ({state}): {log.read()[-3000:]!r}")
            time.sleep(0.05)
        info = read_json(connection_file)
        assert info is not None and state.pid is not None
        yield Kernel(connection_file, info, state.pid)
    finally:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(node.pid, signal.SIGTERM)
        try:
            node.wait(timeout=5)
        except subprocess.TimeoutExpired:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(node.pid, signal.SIGKILL)
            node.wait(timeout=5)
        log.close()
        for path in connection_file.parent.glob(connection_file.stem + "*"):
            path.unlink(missing_ok=True)


@contextlib.contextmanager
def capture(ns: Netns, pcap: Path) -> Iterator[None]:
    """``tcpdump`` on the host end of the veth, writing every packet to ``pcap`` as it comes."""
    argv = [
        tool("tcpdump"),
        "-i",
        ns.host_if,
        "-n",
        "-s",
        "0",
        "-B",
        "65536",
        "--immediate-mode",
        "-U",
        "-Z",
        "root",
        "-w",
        str(pcap),
    ]
    proc = subprocess.Popen(argv, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    try:
        assert proc.stderr is not None
        line = proc.stderr.readline()  # "tcpdump: listening on ...": it captures from now on
        assert "listening on" in line, line
        yield
        time.sleep(0.5)  # the last packets (the reply's ACKs) reach the capture
    finally:
        proc.send_signal(signal.SIGINT)
        try:
            proc.wait(timeout=5)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(timeout=5)
    assert proc.stderr is not None
    stats = proc.stderr.read()
    # "N packets captured / M packets received by filter": none may be lost
    captured = [int(line.split()[0]) for line in stats.splitlines() if line.endswith("packets captured")]
    received = [int(line.split()[0]) for line in stats.splitlines() if "received by filter" in line]
    assert captured and captured == received, stats


def pcap_packets(pcap: Path) -> list[bytes]:
    """The packets of a classic pcap file (what ``tcpdump -w`` writes)."""
    data = pcap.read_bytes()
    assert len(data) >= 24, f"{pcap}: no pcap header"
    order = {b"\xd4\xc3\xb2\xa1": "<", b"\xa1\xb2\xc3\xd4": ">"}[data[:4]]
    packets, offset = [], 24
    while offset + 16 <= len(data):
        (included,) = struct.unpack(order + "I", data[offset + 8 : offset + 12])
        packets.append(data[offset + 16 : offset + 16 + included])
        offset += 16 + included
    return packets


def tcp_ports(pcap: Path, address: str) -> set[int]:
    """The TCP ports on ``address``'s side of the captured packets (``tcpdump -r``)."""
    ports = set()
    for line in run(tool("tcpdump"), "-r", str(pcap), "-nn", "tcp").splitlines():
        # 07:12:00.123456 IP 10.200.1.1.45678 > 10.200.1.2.5555: Flags [P.], ...
        for field in line.split()[2:5:2]:
            host, _, port = field.rstrip(":").rpartition(".")
            if host == address and port.isdigit():
                ports.add(int(port))
    return ports


def client_for(info: dict[str, Any]) -> BlockingKernelClient:
    client = BlockingKernelClient()
    client.load_connection_info(info)
    client.start_channels()
    return client


def close(client: BlockingKernelClient) -> None:
    client.stop_channels()  # and destroys the client's own zmq context


def run_cell(info: dict[str, Any], code: str) -> str:
    client = client_for(info)
    try:
        client.wait_for_ready(timeout=15)
        out: list[str] = []

        def hook(msg: dict[str, Any]) -> None:
            if msg["msg_type"] == "stream":
                out.append(msg["content"]["text"])

        reply = client.execute_interactive(code, timeout=15, output_hook=hook)
        assert reply["content"]["status"] == "ok", reply["content"]
        return "".join(out)
    finally:
        close(client)


def in_namespace_as_user(kernel: Kernel, ns: Netns) -> None:
    """The kernel process is the user's and lives in the test namespace."""
    user = pwd.getpwnam(USER)
    assert os.stat(f"/proc/{kernel.pid}").st_uid == user.pw_uid
    assert os.stat(f"/proc/{kernel.pid}/ns/net").st_ino == os.stat(f"/run/netns/{ns.name}").st_ino
    assert os.stat(f"/proc/{kernel.pid}/ns/net").st_ino != os.stat("/proc/self/ns/net").st_ino


def cell_on_the_wire(
    ns: Netns, kernel: Kernel, tmp_path: Path
) -> tuple[bytes, list[bytes], set[int], bytes, bytes]:
    """Run a cell while capturing: (all captured bytes, packets, namespace-side TCP ports seen,
    the code's marker, the output's marker)."""
    tag = secrets.token_hex(4).upper()
    code_marker, output_marker = f"CODE-MARKER-{tag}", f"MARKER-SECRET-42-{tag}"
    code = f'note = "{code_marker}"\nprint("MARKER-" + "SECRET-" + "42-" + "{tag}")'
    assert output_marker not in code
    pcap = tmp_path / "kernel.pcap"
    with capture(ns, pcap):
        assert run_cell(kernel.info, code) == output_marker + "\n"
    os.chmod(pcap, 0o600)
    try:
        ports = tcp_ports(pcap, ns.node_ip)
        return pcap.read_bytes(), pcap_packets(pcap), ports, code_marker.encode(), output_marker.encode()
    finally:
        pcap.unlink()


def test_curve_kernel_on_another_address_shows_nothing_on_the_wire(
    netns: Netns, kernels: tuple[Path, Path], tmp_path: Path
) -> None:
    specs, _ = kernels
    with node_kernel(netns, specs, "curve") as kernel:
        info = kernel.info
        assert info["ip"] == netns.node_ip and info["transport"] == "tcp"
        assert info["signature_scheme"] == "hmac-sha256" and len(str(info["key"])) >= 32
        assert len(str(info.get("curve_publickey"))) == 40 and len(str(info.get("curve_secretkey"))) == 40
        assert all(type(info[p]) is int and info[p] > 0 for p in PORT_NAMES), info
        check_private(kernel.connection_file, 0o600)
        in_namespace_as_user(kernel, netns)

        raw, packets, ports, code_marker, output_marker = cell_on_the_wire(netns, kernel, tmp_path)
        # the capture is the kernel's traffic, and plenty of it
        assert {info["shell_port"], info["iopub_port"]} <= ports, (ports, info)
        assert len(packets) >= 20 and len(raw) >= 5000, (len(packets), len(raw))
        # ... and none of it readable
        assert code_marker not in raw
        assert output_marker not in raw
        assert b"execute_request" not in raw and b"MARKER" not in raw
        assert str(info["key"]).encode() not in raw
        assert str(info["curve_secretkey"]).encode() not in raw


def test_without_curve_the_capture_shows_code_and_output(
    netns: Netns, kernels: tuple[Path, Path], tmp_path: Path
) -> None:
    """The control: the same capture of a kernel without CurveZMQ (encryption 'disabled')."""
    specs, _ = kernels
    with node_kernel(netns, specs, "plain") as kernel:
        info = kernel.info
        assert "curve_publickey" not in info and "curve_secretkey" not in info
        assert info["ip"] == netns.node_ip and info["signature_scheme"] == "hmac-sha256"
        in_namespace_as_user(kernel, netns)

        raw, packets, ports, code_marker, output_marker = cell_on_the_wire(netns, kernel, tmp_path)
        assert {info["shell_port"], info["iopub_port"]} <= ports, (ports, info)
        assert len(packets) >= 20, len(packets)
        assert code_marker in raw
        assert output_marker in raw
        assert b"execute_request" in raw


def test_a_client_without_the_curve_keys_gets_no_answer(netns: Netns, kernels: tuple[Path, Path]) -> None:
    specs, _ = kernels
    with node_kernel(netns, specs, "curve") as kernel:
        keyless = {k: v for k, v in kernel.info.items() if k not in ("curve_publickey", "curve_secretkey")}
        assert keyless["key"] == kernel.info["key"]  # the HMAC key alone is not enough
        client = client_for(keyless)
        began = time.monotonic()
        try:
            # no heartbeat and no kernel_info reply: "didn't respond" or "died before replying"
            with pytest.raises(RuntimeError, match=r"didn't respond|died before replying"):
                client.wait_for_ready(timeout=4)
            # nor on the shell channel: the request is either never taken for sending (no peer
            # completed the handshake: zmq.Again after 3 s) or never answered
            assert client.shell_channel.socket is not None
            client.shell_channel.socket.setsockopt(zmq.SNDTIMEO, 3000)
            try:
                client.kernel_info()
            except zmq.Again:
                pass
            else:
                with pytest.raises(queue.Empty):
                    client.get_shell_msg(timeout=3)
            assert not client.hb_channel.is_beating()
        finally:
            close(client)
        assert time.monotonic() - began < 12
        # the kernel is alive and answers a client with the keys
        assert run_cell(kernel.info, "print(6 * 7)") == "42\n"
