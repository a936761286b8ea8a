"""`jupyterhub-hpc audit`, the installed command, on this machine.

(a) The hub audit of a deliberately weak deployment in tmp (no subdomain_host, internal_ssl
off, cookie secret and database 0644, a sudoers file with a tail rule and SETENV) flags
each of those and exits non-zero; the recommended one (subdomain_host, internal_ssl, 0600
files owned by the hub account, the sudoers file `jupyterhub-hpc sudoers` generates) has no
high finding and exits 0.

(b) The node audit, run as hpcuser2 (directly and inside a Slurm job) while hpcuser1 has a
process listening on 127.0.0.1, a kernel over TCP, a Jupyter server, a world-readable job
output file in their home and a 0755 private directory with a readable file in /tmp, flags
each of them and exits non-zero; once they are gone, so are those findings.
"""

from __future__ import annotations

import json
import os
import pwd
import secrets
import shutil
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest

from conftest import HUB_ACCOUNT

VENV_BIN = Path(sys.executable).parent
CLI = str(VENV_BIN / "jupyterhub-hpc")
OWNER, AUDITOR = "hpcuser1", "hpcuser2"
JOB_NAME = "sectest-audit"


def audit(*argv: str, user: str | None = None, timeout: float = 120) -> tuple[int, dict[str, Any]]:
    prefix = ["runuser", "-u", user, "--"] if user else []
    result = subprocess.run(
        [*prefix, CLI, "audit", *argv, "--json"], capture_output=True, text=True, timeout=timeout, check=False
    )
    assert result.stdout, result.stderr
    return result.returncode, json.loads(result.stdout)


def checks(answer: dict[str, Any], severity: str | None = None) -> set[str]:
    return {f["check"] for f in answer["findings"] if severity in (None, f["severity"])}


# -- (a) the hub audit ---------------------------------------------------------------------------

WEAK = """
c.JupyterHub.spawner_class = "slurm"
c.JupyterHub.cookie_secret_file = "jupyterhub_cookie_secret"
c.JupyterHub.db_url = "sqlite:///jupyterhub.sqlite"
"""
RECOMMENDED = """
c.JupyterHub.spawner_class = "slurm"
c.JupyterHub.subdomain_host = "https://hub.example.org"
c.JupyterHub.internal_ssl = True
c.JupyterHub.cookie_secret_file = "jupyterhub_cookie_secret"
c.JupyterHub.db_url = "sqlite:///jupyterhub.sqlite"
c.SlurmSpawner.scheduler_commands = {"sbatch": "/usr/bin/sbatch", "scancel": "/usr/bin/scancel"}
"""
WEAK_SUDOERS = """
Cmnd_Alias HUB_CMDS = /usr/bin/sbatch ^--parsable$, /usr/bin/scancel ^[0-9]+$, \\
    /usr/bin/tail -n * /home/*/.jupyterhub-hpc-*.log
jupyterhub ALL = (%jupyterhub-users, !root) NOPASSWD: SETENV: HUB_CMDS
"""


def deployment(base: Path, config: str, mode: int, owner: str) -> Path:
    base.mkdir(mode=0o755)
    account = pwd.getpwnam(owner)
    path = base / "jupyterhub_config.py"
    path.write_text(config)
    (base / "jupyterhub_cookie_secret").write_text(secrets.token_hex(32) + "\n")
    subprocess.run(["sqlite3", str(base / "jupyterhub.sqlite"), "create table t(x);"], check=False)
    if not (base / "jupyterhub.sqlite").exists():
        (base / "jupyterhub.sqlite").write_bytes(b"SQLite format 3\0")
    for name in ("jupyterhub_config.py", "jupyterhub_cookie_secret", "jupyterhub.sqlite"):
        os.chown(base / name, account.pw_uid, account.pw_gid)
        os.chmod(base / name, mode)
    return path


def test_a_weak_deployment_is_flagged(tmp_path: Path) -> None:
    config = deployment(tmp_path / "weak", WEAK, 0o644, HUB_ACCOUNT)
    sudoers = tmp_path / "weak.sudoers"
    sudoers.write_text(WEAK_SUDOERS)
    code, answer = audit("--config", str(config), "--hub-dir", str(config.parent), "--sudoers", str(sudoers))
    assert code == 2 == answer["exit_status"]
    found = {f["check"]: f for f in answer["findings"]}
    assert found["hub.subdomain-host"]["severity"] == "high"  # slurm: servers share nodes
    assert found["hub.internal-ssl"]["severity"] == "medium"
    assert found["hub.cookie-secret-file"]["severity"] == "high"
    assert found["hub.cookie-secret-file"]["subject"] == str(config.parent / "jupyterhub_cookie_secret")
    assert found["hub.db-file"]["severity"] == "high"
    assert found["hub.db-file"]["subject"] == str(config.parent / "jupyterhub.sqlite")
    assert found["sudoers.tail"]["severity"] == "high"
    assert found["sudoers.setenv"]["severity"] == "high"
    assert found["sudoers.wildcard"]["severity"] == "medium"
    assert found["sudoers.differs"]["severity"] == "medium"  # tail instead of the reader
    secret = (config.parent / "jupyterhub_cookie_secret").read_text().strip()
    assert secret not in json.dumps(answer)
    # the same in text form, with the summary and the exit status
    text = subprocess.run(
        [CLI, "audit", "--config", str(config), "--hub-dir", str(config.parent)],
        capture_output=True,
        text=True,
        check=False,
    )
    assert text.returncode == 2
    assert "[HIGH] hub.cookie-secret-file" in text.stdout and "\nsummary: " in text.stdout


def test_the_recommended_deployment_has_no_high_finding(tmp_path: Path) -> None:
    config = deployment(tmp_path / "good", RECOMMENDED, 0o600, HUB_ACCOUNT)
    generated = subprocess.run(
        [CLI, "sudoers", "--config", str(config), "--group", "jupyterhub-users", "--check"],
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    sudoers = tmp_path / "generated.sudoers"
    sudoers.write_text(generated)
    code, answer = audit("--config", str(config), "--hub-dir", str(config.parent), "--sudoers", str(sudoers))
    assert checks(answer, "high") == set(), answer["findings"]
    assert checks(answer, "medium") == set(), answer["findings"]
    assert code == 0 == answer["exit_status"]
    # what may remain: this machine runs test hubs as root (low), nothing else
    assert checks(answer) <= {"hub.runs-as-root"}


# -- (b) the node audit ------------------------------------------------------------------------


@dataclass
class Exposure:
    """What hpcuser1 leaves open on the node; :meth:`remove` takes it all away."""

    port: int = 0
    server_port: int = 0
    kernel_ports: list[int] = field(default_factory=list)
    output: Path = Path()
    private_dir: Path = Path()
    private_file: Path = Path()
    work: Path = Path()
    processes: list[subprocess.Popen[bytes]] = field(default_factory=list)

    def remove(self) -> None:
        for proc in self.processes:
            if proc.poll() is None:
                os.killpg(proc.pid, signal.SIGTERM)
        for proc in self.processes:
            try:
                proc.wait(10)
            except subprocess.TimeoutExpired:
                os.killpg(proc.pid, signal.SIGKILL)
                proc.wait(10)
        self.processes.clear()
        self.output.unlink(missing_ok=True)
        shutil.rmtree(self.private_dir, ignore_errors=True)
        shutil.rmtree(self.work, ignore_errors=True)


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def listening(port: int) -> bool:
    try:
        with socket.create_connection(("127.0.0.1", port), 1):
            return True
    except OSError:
        return False


def as_owner(*argv: str, work: Path) -> subprocess.Popen[bytes]:
    home = pwd.getpwnam(OWNER).pw_dir
    env = ["env", f"HOME={home}", f"JUPYTER_RUNTIME_DIR={work}", f"JUPYTER_DATA_DIR={work}"]
    env.append(f"IPYTHONDIR={work}")
    return subprocess.Popen(
        ["runuser", "-u", OWNER, "--", *env, *argv],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        start_new_session=True,
        cwd=work,
    )


def wait(condition: Any, timeout: float, what: str) -> Any:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = condition()
        if value:
            return value
        time.sleep(0.2)
    raise AssertionError(f"timed out waiting for {what}")


def kernel_ports(connection: Path) -> list[int]:
    """The kernel's five ports, once it has written its connection file ([] before)."""
    try:
        info = json.loads(connection.read_text())
    except (OSError, ValueError):
        return []
    return sorted(int(info[k]) for k in info if k.endswith("_port"))


@pytest.fixture
def exposure() -> Iterator[Exposure]:
    owner = pwd.getpwnam(OWNER)
    tag = secrets.token_hex(4)
    found = Exposure()
    found.work = Path(f"/tmp/audit-work-{tag}")
    found.work.mkdir(mode=0o700)
    os.chown(found.work, owner.pw_uid, owner.pw_gid)
    try:
        # (i) a process listening on 127.0.0.1, a kernel over TCP and a Jupyter server
        found.port = free_port()
        found.processes.append(
            as_owner(
                "/usr/bin/python3",
                "-m",
                "http.server",
                "--bind",
                "127.0.0.1",
                str(found.port),
                work=found.work,
            )
        )
        connection = found.work / "kernel-audit.json"
        found.processes.append(
            as_owner(
                sys.executable, "-m", "ipykernel_launcher", "-f", str(connection),
                "--transport=tcp", "--ip=127.0.0.1", work=found.work,
            )
        )  # fmt: skip
        found.server_port = free_port()
        found.processes.append(
            as_owner(
                str(VENV_BIN / "jupyter-server"), "--ip=127.0.0.1", f"--port={found.server_port}",
                "--no-browser", f"--IdentityProvider.token={secrets.token_hex(16)}", work=found.work,
            )
        )  # fmt: skip
        # (ii) a world-readable job output file in their home
        found.output = Path(owner.pw_dir) / f".jupyterhub-hpc-audit{tag}.log"
        found.output.write_text("server log\n")
        os.chown(found.output, owner.pw_uid, owner.pw_gid)
        found.output.chmod(0o644)
        # (iii) a 0755 private directory with a readable file
        found.private_dir = Path(f"/tmp/jupyterhub-hpc-{owner.pw_uid}-audit{tag}")
        found.private_dir.mkdir()
        found.private_dir.chmod(0o755)
        found.private_file = found.private_dir / "kernel-0.json"
        found.private_file.write_text("{}\n")
        for path in (found.private_dir, found.private_file):
            os.chown(path, owner.pw_uid, owner.pw_gid)
        found.private_file.chmod(0o644)
        wait(lambda: listening(found.port), 30, "the http.server")
        wait(lambda: listening(found.server_port), 60, "the Jupyter server")
        found.kernel_ports = wait(lambda: kernel_ports(connection), 60, "the kernel's connection file")
        wait(lambda: all(listening(p) for p in found.kernel_ports), 60, "the kernel's ports")
        yield found
    finally:
        found.remove()


def subjects(answer: dict[str, Any]) -> dict[str, set[str]]:
    out: dict[str, set[str]] = {}
    for f in answer["findings"]:
        out.setdefault(f["check"], set()).add(f["subject"])
    return out


def assert_flagged(answer: dict[str, Any], found: Exposure) -> None:
    owner_uid = pwd.getpwnam(OWNER).pw_uid
    seen = subjects(answer)
    assert f"127.0.0.1:{found.port} (uid {owner_uid})" in seen["node.other-listener"]
    assert f"127.0.0.1:{found.server_port} (uid {owner_uid})" in seen["node.server-reachable"]
    kernels = {s for s in seen["node.kernel-reachable"] if s.endswith(f"(uid {owner_uid})")}
    flagged_ports = {int(p) for s in kernels for p in s.split(":", 1)[1].split(" ")[0].split(",")}
    assert set(found.kernel_ports) <= flagged_ports
    assert str(found.output) in seen["node.readable-output"]
    assert str(found.private_dir) in seen["node.runtime-dir-mode"]
    assert str(found.private_file) in seen["node.readable-runtime-file"]
    severity = {(f["check"], f["subject"]): f["severity"] for f in answer["findings"]}
    assert severity[("node.readable-output", str(found.output))] == "high"
    assert severity[("node.readable-runtime-file", str(found.private_file))] == "high"
    assert severity[("node.runtime-dir-mode", str(found.private_dir))] == "low"
    assert answer["exit_status"] == 2


def assert_gone(answer: dict[str, Any], found: Exposure) -> None:
    text = json.dumps(answer)
    for needle in (
        f":{found.port} ",
        f":{found.server_port} ",
        str(found.output),
        str(found.private_dir),
        *[str(p) for p in found.kernel_ports],
    ):
        assert needle not in text, needle


def test_node_audit_as_another_user(exposure: Exposure) -> None:
    code, answer = audit("--node", user=AUDITOR)
    assert code == 2
    assert answer["scope"].endswith(f"as {AUDITOR}")
    assert_flagged(answer, exposure)
    # what hpcuser2 cannot read is not reported: the kernel's own connection file (0700 dir)
    assert str(exposure.work) not in json.dumps(answer)
    exposure.remove()
    _, after = audit("--node", user=AUDITOR)
    assert_gone(after, exposure)


def run_in_job(user: str, command: str, work: Path) -> tuple[int, dict[str, Any]]:
    out = work / "audit.json"
    code_file = work / "audit.rc"
    wrap = f"{command} > {out}; echo $? > {code_file}"
    subprocess.run(
        [
            "runuser", "-u", user, "--", "sbatch", "--wait", f"--job-name={JOB_NAME}", "--mem=200M",
            "--time=3", f"--chdir={work}", f"--output={work}/job.out", "--wrap", wrap,
        ],
        capture_output=True, text=True, timeout=240, check=True,
    )  # fmt: skip
    return int(code_file.read_text()), json.loads(out.read_text())


@pytest.fixture
def job_dir() -> Iterator[Path]:
    account = pwd.getpwnam(AUDITOR)
    path = Path(f"/tmp/audit-job-{secrets.token_hex(4)}")
    path.mkdir(mode=0o700)
    os.chown(path, account.pw_uid, account.pw_gid)
    yield path
    subprocess.run(["scancel", f"--user={AUDITOR}", f"--name={JOB_NAME}"], check=False)
    shutil.rmtree(path, ignore_errors=True)


@pytest.mark.slurm
def test_node_audit_inside_a_slurm_job(exposure: Exposure, job_dir: Path) -> None:
    code, answer = run_in_job(AUDITOR, f"{CLI} audit --node --json", job_dir)
    assert code == 2
    assert_flagged(answer, exposure)
    exposure.remove()
    _, after = run_in_job(AUDITOR, f"{CLI} audit --node --json", job_dir)
    assert_gone(after, exposure)


def test_the_node_audit_refuses_root() -> None:
    result = subprocess.run([CLI, "audit", "--node"], capture_output=True, text=True, check=False)
    assert result.returncode == 1 and "ordinary user" in result.stderr
