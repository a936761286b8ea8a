"""JupyterHub's internal_ssl with batch jobs on the real Slurm, unprivileged hub: the server's
key and certificates reach the job (the key like the token: submit environment only), the
server speaks TLS only and requires a client certificate from the internal CA, and the hub and
proxy reach it through it."""

from __future__ import annotations

import base64
import pwd
import ssl
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
