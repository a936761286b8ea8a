"""``server_bind`` as an interface name: the server listens on that interface's address on the
node, only there, and the hub reaches it through ``node_address``. (The default, the node's
own address, is checked in test_running_server.py.)"""

from __future__ import annotations

import subprocess

import pytest
import secutil
from secutil import FAST

from conftest import nonroot_hubs

pytestmark = [pytest.mark.slurm, pytest.mark.hub]

USER = "hpcuser2"


def cluster_interface() -> tuple[str, str]:
    """(name, IPv4 address) of a non-loopback interface of this machine."""
    out = subprocess.run(
        ["ip", "-4", "-o", "addr", "show"], capture_output=True, text=True, check=True
    ).stdout
    for line in out.splitlines():
        fields = line.split()
        name, address = fields[1], fields[3].split("/")[0]
        if name != "lo" and not address.startswith("127."):
            return name, address
    raise AssertionError(f"no non-loopback IPv4 interface:\n{out}")


def test_the_server_listens_on_the_configured_interface_only(
    tmp_path_factory: pytest.TempPathFactory,
) -> None:
    name, address = cluster_interface()
    secutil.cancel_test_jobs()
    with nonroot_hubs(tmp_path_factory.mktemp("logs")) as make:
        hub = make(server_bind=name, node_address=address, **FAST)
        hub.start()
        hub.spawn(USER)
        hub.wait_ready(USER)
        state = secutil.server_state(hub, USER)
        assert state is not None
        assert secutil.listening(secutil.server_pid(USER, str(state["job_id"]))) == [(address, state["port"])]
        assert hub.server_status(USER, hub.user_token(USER)).status_code == 200
        hub.stop_server(USER)
    secutil.cancel_test_jobs()
