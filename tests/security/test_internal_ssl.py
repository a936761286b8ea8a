"""JupyterHub's internal_ssl with batch jobs on the real Slurm, unprivileged hub: the server's
key and certificates reach the job (the key like the token: submit environment only), the
server speaks TLS only and requires a client certificate from the internal CA, and the hub and
proxy reach it through it."""

from __future__ import annotations

import base64
import os
import pwd
import shutil
import ssl
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import requests
import secutil
from secutil import FAST

from conftest import nonroot_hubs

pytestmark = [pytest.mark.slurm, pytest.mark.hub]

USER = "hpcuser3"


@pytest.fixture(scope="module")
def tls(tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict[str, Any]]:
    secutil.cancel_test_jobs()
    with nonroot_hubs(tmp_path_factory.mktemp("logs")) as make:
        # the hub reaches the node as `vm` (node_address "{host}"): the server's certificate names it
        hub = make(
            config={"JupyterHub": {"internal_ssl": True}, "Spawner": {"ssl_alt_names": ["DNS:vm"]}}, **FAST
        )
        hub.start()
        hub.spawn(USER)
        hub.wait_ready(USER)
        state = secutil.server_state(hub, USER)
        assert state is not None
        try:
            yield {"hub": hub, "state": state, "certs": hub.root / "internal-ssl"}
        finally:
            hub.stop_server(USER)
    secutil.cancel_test_jobs()


def test_the_server_is_reached_through_tls(tls: dict[str, Any]) -> None:
    hub = tls["hub"]
    r = hub.server_status(USER, hub.user_token(USER))
    assert r.status_code == 200, r.text
    assert hub.user_model(USER)["servers"][""]["url"] == f"/user/{USER}/"
    assert "https://vm:" in hub.log_path.read_text()


def test_the_server_speaks_tls_only_and_wants_a_client_certificate(tls: dict[str, Any]) -> None:
    certs, state = tls["certs"], tls["state"]
    url = f"https://vm:{state['port']}/user/{USER}/api"
    server_ca = str(certs / "notebooks-ca" / "notebooks-ca.crt")
    client = (
        str(certs / "proxy-client" / "proxy-client.crt"),
        str(certs / "proxy-client" / "proxy-client.key"),
    )
    # plain HTTP is not served
    with pytest.raises(requests.RequestException):
        requests.get(f"http://vm:{state['port']}/user/{USER}/api", timeout=5).raise_for_status()
    # without a client certificate of the internal CA: refused in the handshake
    with pytest.raises(requests.exceptions.SSLError):
        requests.get(url, verify=server_ca, timeout=5)
    # the server's certificate is verified (CA and host name), the client's accepted
    r = requests.get(url, verify=server_ca, cert=client, timeout=5)
    assert r.status_code == 200 and "version" in r.json()
    pem = ssl.get_server_certificate(("vm", state["port"]))
    assert pem.startswith("-----BEGIN CERTIFICATE-----")


def test_the_key_travels_like_the_token(tls: dict[str, Any]) -> None:
    job = str(tls["state"]["job_id"])
    key_file = next((tls["certs"] / f"user-{USER}").glob("*.key"))
    key = key_file.read_bytes().strip()
    key_line = key.splitlines()[1]  # a line of the PEM body
    encoded = base64.b64encode(key_file.read_bytes()).decode()
    script = secutil.batch_script(job)
    # the certificate and CA (public) are in the script; the key in no form
    assert "-----BEGIN CERTIFICATE-----" in script and "JUPYTERHUB_HPC_SSL_CERT=" in script
    assert "PRIVATE KEY" not in script and key_line.decode() not in script and encoded not in script
    assert not [
        p for p in secutil.pids() if key_line in secutil.cmdline(p) or encoded.encode() in secutil.cmdline(p)
    ]
    output = Path(pwd.getpwnam(USER).pw_dir) / f".jupyterhub-hpc-{job}.log"
    assert "certificates written" in output.read_text() and key_line.decode() not in output.read_text()
    # in the job: a private file on the node, outside the home; the server's environment
    # names it and no longer carries the key itself
    pid = secutil.server_pid(USER, job)
    environ = dict(i.split(b"=", 1) for i in secutil.proc_environ(pid).split(b"\0") if b"=" in i)
    assert b"JUPYTERHUB_HPC_SSL_KEY" not in environ
    keyfile = Path(environ[b"JUPYTERHUB_SSL_KEYFILE"].decode())
    assert keyfile.read_bytes().strip() == key
    uid = pwd.getpwnam(USER).pw_uid
    assert keyfile.stat().st_uid == uid and keyfile.stat().st_mode & 0o777 == 0o600
    assert keyfile.parent.stat().st_mode & 0o777 == 0o700
    assert not str(keyfile).startswith(pwd.getpwnam(USER).pw_dir + "/")


# -- a spoofing listener: a server that cannot present the user's own certificate ------------------

SPOOF_USER = "hpcuser2"
FAKE_SERVER = Path(__file__).resolve().parents[1] / "fakes" / "fake_server.py"
HTTP_METHODS = ("GET ", "POST ", "PUT ", "DELETE ", "HEAD ", "PATCH ", "OPTIONS ")


@pytest.fixture
def spoof_dir() -> Iterator[Path]:
    """A self-signed certificate for ``vm`` (not of the internal CA) and a request log,
    readable and writable by the spoofing job."""
    directory = Path(tempfile.mkdtemp(prefix="spoof-", dir="/tmp"))  # reachable by the job user
    argv = ["openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "1", "-subj", "/CN=vm"]
    argv += ["-addext", "subjectAltName=DNS:vm", "-keyout", str(directory / "key.pem")]
    subprocess.run(
        [*argv, "-out", str(directory / "cert.pem")],
        check=True,
        capture_output=True,
    )
    (directory / "requests.log").touch()
    for path in [directory, *directory.iterdir()]:
        os.chmod(path, 0o777 if path.is_dir() else 0o666)
    yield directory
    shutil.rmtree(directory)


@pytest.mark.parametrize("kind", ["plain-http", "self-signed-tls"])
def test_a_spoofing_listener_is_refused(tls: dict[str, Any], spoof_dir: Path, kind: str) -> None:
    """The job runs a listener that answers like a server but holds no certificate of the
    internal CA for this user (plain HTTP; TLS with a self-signed certificate): the hub's
    readiness check fails, the proxy never gets a route and no HTTP request reaches it."""
    hub = tls["hub"]
    environment = {"FAKE_LOG": str(spoof_dir / "requests.log")}
    if kind == "self-signed-tls":
        environment.update(FAKE_TLS_CERT=str(spoof_dir / "cert.pem"), FAKE_TLS_KEY=str(spoof_dir / "key.pem"))
    hub.per_user(
        {
            SPOOF_USER: {
                "cmd": [sys.executable, str(FAKE_SERVER)],
                "http_timeout": 10,
                "environment": environment,
            }
        }
    )
    gave_up = f"{SPOOF_USER}'s server never showed up at https://"
    before = hub.log_path.read_text().count(gave_up)
    reply = hub.spawn(SPOOF_USER)
    assert reply.status_code in (201, 202, 500), reply.text  # 500: it failed within slow_spawn_timeout
    # the server is never ready, then gone; the hub says its readiness check gave up
    # (the outcome is read from the user model and the log, not the progress stream,
    # which answers 400 "not starting" once the failure is over)
    deadline = time.monotonic() + 120
    while (server := hub.user_model(SPOOF_USER)["servers"].get("")) and time.monotonic() < deadline:
        assert not server.get("ready"), server
        time.sleep(0.2)
    assert server is None, f"{SPOOF_USER}'s server still there: {server}"
    assert hub.log_path.read_text().count(gave_up) == before + 1
    token = hub.user_token(SPOOF_USER)
    reply = requests.get(
        f"{hub.url}/user/{SPOOF_USER}/api/status",
        headers={"Authorization": f"token {token}"},
        allow_redirects=False,
        timeout=10,
    )
    assert reply.status_code in (302, 303, 424, 503), reply.status_code  # the hub's answer, not the fake's
    seen = (spoof_dir / "requests.log").read_text(errors="replace").splitlines()
    assert not [line for line in seen if line.startswith(HTTP_METHODS)], seen
    # the hub did try the listener (else this proves nothing), and refused it in TLS
    if kind == "plain-http":
        assert seen, "the hub never sent the spoofing listener anything"
    else:
        assert [line for line in seen if line.startswith("TLS handshake failed")], seen
