"""A remote submit host: the unprivileged hub runs every scheduler command over ssh, against a
real sshd on 127.0.0.1 (its own port, host key and known_hosts), which submits to the real Slurm
through sudo under the generated sudoers file. One SSH connection is reused (ControlMaster),
host keys are checked, and the token is on no command line and in no sshd log."""

from __future__ import annotations

import os
import pwd
import re
import shutil
import socket
import subprocess
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import requests
import secutil
from secutil import FAST
from test_running_server import CommandLines

from conftest import HUB_ACCOUNT, nonroot_hubs
from hub import free_port, wait_for

pytestmark = [pytest.mark.slurm, pytest.mark.hub]

USER = "hpcuser2"


def keygen(path: Path) -> str:
    subprocess.run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-C", "", "-f", str(path)], check=True)
    return Path(f"{path}.pub").read_text().strip()


@pytest.fixture(scope="module")
def sshd() -> Iterator[dict[str, Any]]:
    """An sshd of our own on 127.0.0.1, letting only the hub account in, with one key."""
    account = pwd.getpwnam(HUB_ACCOUNT)
    server_dir = Path(tempfile.mkdtemp(prefix="jhpc-sshd-", dir="/run"))
    os.chmod(server_dir, 0o755)
    client_dir = Path(tempfile.mkdtemp(prefix="ssh-", dir=account.pw_dir))
    host_key = keygen(server_dir / "host_ed25519")
    client_key = keygen(client_dir / "id_ed25519")
    port = free_port()
    # `restrict`: no forwarding of any kind, no pty, no ~/.ssh/rc for this key
    (server_dir / "authorized_keys").write_text(f"restrict {client_key}\n")
    os.chmod(server_dir / "authorized_keys", 0o644)
    (client_dir / "known_hosts").write_text(f"[127.0.0.1]:{port} {host_key}\n")
    other = keygen(server_dir / "other_ed25519")
    (client_dir / "wrong_known_hosts").write_text(f"[127.0.0.1]:{port} {other}\n")
    for path in [client_dir, *client_dir.iterdir()]:
        os.chown(path, account.pw_uid, account.pw_gid)
    os.chmod(client_dir, 0o700)
    log = server_dir / "sshd.log"
    config = server_dir / "sshd_config"
    config.write_text(
        f"Port {port}\nListenAddress 127.0.0.1\nHostKey {server_dir / 'host_ed25519'}\n"
        f"PidFile {server_dir / 'sshd.pid'}\nAuthorizedKeysFile {server_dir / 'authorized_keys'}\n"
        "PasswordAuthentication no\nKbdInteractiveAuthentication no\nPubkeyAuthentication yes\n"
        f"UsePAM yes\nAllowUsers {HUB_ACCOUNT}\nPermitRootLogin no\nStrictModes yes\n"
        "LogLevel DEBUG3\nMaxSessions 50\nMaxStartups 50\n"
    )
    os.makedirs("/run/sshd", mode=0o755, exist_ok=True)
    proc = subprocess.Popen(["/usr/sbin/sshd", "-D", "-f", str(config), "-E", str(log)])

    def accepting() -> bool:
        with socket.socket() as sock:
            return sock.connect_ex(("127.0.0.1", port)) == 0

    try:
        wait_for(accepting, 15, message="sshd did not start")
        yield {"port": port, "log": log, "client": client_dir}
    finally:
        for control in (client_dir / "cm", client_dir / "cm-wrong", client_dir / "cl"):
            for socket_path in control.glob("*") if control.exists() else []:
                subprocess.run(
                    [
                        "runuser",
                        "-u",
                        HUB_ACCOUNT,
                        "--",
                        "ssh",
                        "-o",
                        f"ControlPath={socket_path}",
                        "-O",
                        "exit",
                        "x",
                    ],
                    capture_output=True,
                    check=False,
                )
        proc.terminate()
        proc.wait(timeout=10)
        shutil.rmtree(server_dir, ignore_errors=True)
        shutil.rmtree(client_dir, ignore_errors=True)


def ssh_options(
    sshd: dict[str, Any], known_hosts: str = "known_hosts", control: str = "cm"
) -> dict[str, Any]:
    return {
        "ssh_host": "127.0.0.1",
        "ssh_port": sshd["port"],
        "ssh_key": str(sshd["client"] / "id_ed25519"),
        "ssh_known_hosts": str(sshd["client"] / known_hosts),
        "ssh_control_dir": str(sshd["client"] / control),
    }


def test_spawn_and_stop_through_the_submit_host(
    sshd: dict[str, Any], tmp_path_factory: pytest.TempPathFactory
) -> None:
    secutil.cancel_test_jobs()
    with nonroot_hubs(tmp_path_factory.mktemp("logs")) as make:
        hub = make(**FAST, **ssh_options(sshd))
        hub.start()
        hub.ensure_user(USER)
        with CommandLines() as sampled:
            hub.spawn(USER)
            hub.wait_ready(USER)
        state = secutil.server_state(hub, USER)
        assert state is not None
        token = secutil.server_token(USER, str(state["job_id"]))
        assert secutil.scontrol_job(str(state["job_id"]))["UserId"].startswith(f"{USER}(")
        r = hub.server_status(USER, hub.user_token(USER))
        assert r.status_code == 200
        time.sleep(4)  # a few status queries more, over the same connection
        hub.stop_server(USER)
        assert secutil.live_jobs(USER) == []
        assert (
            "JobState=CANCELLED"
            in subprocess.run(
                ["scontrol", "show", "job", str(state["job_id"])], capture_output=True, text=True
            ).stdout
        )
    log = sshd["log"].read_text(errors="replace")
    # one SSH connection (ControlMaster) carried the submit, the status queries and the cancel
    assert len(re.findall(r"Accepted publickey for jupyterhub", log)) == 1, log[-3000:]
    assert len(re.findall(r"Starting session: command for jupyterhub", log)) >= 4
    # the remote commands are in sshd's debug log, the token is not
    assert "jupyterhub-hpc-submit sudo -n -u hpcuser2 -- sbatch --parsable" in log
    assert token not in log
    # locally: the ssh command line and the remote argv were sampled, without the token
    ssh_lines = [line for line in sampled.seen if line.startswith(b"ssh\0-T\0")]
    assert any(b"jupyterhub-hpc-submit" in line for line in ssh_lines), sorted(sampled.seen)[:50]
    assert not [line for line in sampled.seen if token.encode() in line]
    assert not [line for line in {secutil.cmdline(p) for p in secutil.pids()} if token.encode() in line]


def test_an_unknown_host_key_is_refused(
    sshd: dict[str, Any], tmp_path_factory: pytest.TempPathFactory
) -> None:
    with nonroot_hubs(tmp_path_factory.mktemp("logs")) as make:
        hub = make(**FAST, **ssh_options(sshd, known_hosts="wrong_known_hosts", control="cm-wrong"))
        hub.start()
        hub.ensure_user(USER)
        hub.spawn(USER)
        events = hub.progress_events(USER, timeout=30)
        assert events[-1].get("failed"), events
        assert "Host key verification failed" in events[-1]["message"]
        secutil.wait_no_server(hub, USER)
        assert secutil.live_jobs(USER) == []


#: what docs/profiles.md adds to a hub's config: the profile endpoints and the start check
PROFILES_CONFIG = """
from jupyterhub_hpc.profiles import check_profiles
from jupyterhub_hpc.profiles.handlers import all_handlers

c.JupyterHub.extra_handlers = all_handlers
check_profiles(c)
"""
PROFILES = [
    {
        "display_name": "Interactive",
        "slug": "interactive",
        "profile_options": {
            "partition": {"display_name": "Partition", "type": "partition"},
            "walltime": {"display_name": "Time", "type": "walltime", "default": "00:04:00"},
        },
    }
]


def test_the_form_shows_the_login_nodes_limits(
    sshd: dict[str, Any], tmp_path_factory: pytest.TempPathFactory
) -> None:
    """With ``ssh_host`` the partition query runs on the login node, like every other
    scheduler command (one scheduler client): the sshd log has the ``sinfo`` call, and the
    form and the discovery API show the partitions it reported."""
    before = sshd["log"].read_text(errors="replace").count("sinfo --noheader --Node")
    with nonroot_hubs(tmp_path_factory.mktemp("logs")) as make:
        hub = make(**FAST, **ssh_options(sshd, control="cl"), profile_list=PROFILES)
        config = hub.root / "jupyterhub_config.py"
        config.write_text(config.read_text() + PROFILES_CONFIG)
        hub.start()
        hub.ensure_user(USER)
        r = hub.api("POST", f"/users/{USER}/tokens", json={"scopes": [f"read:servers!user={USER}"]})
        token = r.json()["token"]
        r = hub.api("GET", "/hpc/profiles", headers={"Authorization": f"token {token}"})
        assert r.status_code == 200, r.text
        (limits,) = r.json()["limits"].values()
        assert limits["live"] and limits["error"] is None, limits
        partitions = {p["name"]: p for p in limits["partitions"]}
        assert {"debug", "short", "gpu"} <= set(partitions)
        assert partitions["short"]["max_walltime_seconds"] == 300
        # the form, as the user's browser gets it
        session = requests.Session()
        session.get(f"{hub.url}/hub/login", timeout=30)
        login = session.post(
            f"{hub.url}/hub/login",
            data={"username": USER, "password": hub.password, "_xsrf": session.cookies.get("_xsrf") or ""},
            timeout=30,
        )
        assert login.status_code == 200, login.status_code
        form = session.get(f"{hub.url}/hub/spawn/{USER}", timeout=30)
        assert form.status_code == 200 and "Interactive" in form.text
        assert all(f">{name}<" in form.text or f'"{name}"' in form.text for name in ("debug", "short", "gpu"))
        hub_log = hub.log_path.read_text(errors="replace")
    # the query ran on the login node (sshd's log) and not on the hub's host
    log = sshd["log"].read_text(errors="replace")
    assert log.count("sinfo --noheader --Node") > before, log[-3000:]
    assert "scheduler limits unavailable" not in hub_log
