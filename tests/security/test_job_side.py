"""The job side of the hardening, without a cluster: where the launcher binds, the private
directory for Jupyter's runtime files and certificates, and the certificates' round trip from
the hub's files to files in the job."""

from __future__ import annotations

import os
import socket
import stat
import tempfile
from pathlib import Path

import pytest

from jupyterhub_hpc.certs import job_certificates
from jupyterhub_hpc.singleuser import private
from jupyterhub_hpc.singleuser.certs import SSL_CA_ENV, SSL_CERT_ENV, SSL_KEY_ENV, write_job_certificates
from jupyterhub_hpc.singleuser.launcher import bind_address, node_address
from jupyterhub_hpc.singleuser.private import PrivateDir


def test_bind_address_never_defaults_to_the_wildcard() -> None:
    assert bind_address("") == node_address() != "0.0.0.0"
    assert bind_address("lo") == "127.0.0.1"
    assert bind_address("{hostname}") == socket.gethostbyname(socket.gethostname())
    assert bind_address("10.1.2.3") == "10.1.2.3"
    with pytest.raises(OSError):
        bind_address("no-such-host.invalid")


def test_private_dir_is_new_private_and_unpredictable(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    monkeypatch.delenv("XDG_RUNTIME_DIR", raising=False)
    monkeypatch.setattr(tempfile, "tempdir", str(tmp_path))  # what $TMPDIR sets
    # a directory another user pre-created under the old fixed name is never used
    planted = tmp_path / f"jupyterhub-hpc-{os.getuid()}"
    planted.mkdir(mode=0o777)
    first, second = PrivateDir(), PrivateDir()
    try:
        for made in (first, second):
            info = os.lstat(made.path)
            assert Path(made.path).parent == tmp_path and made.path != str(planted)
            assert stat.S_IMODE(info.st_mode) == 0o700 and info.st_uid == os.getuid()
            assert Path(made.path).name.startswith(f"jupyterhub-hpc-{os.getuid()}-")
        assert first.path != second.path
        assert stat.S_IMODE(os.stat(first.subdir("certs")).st_mode) == 0o700
    finally:
        first.remove()
        second.remove()
    assert not Path(first.path).exists() and not Path(second.path).exists()
    runtime = tmp_path / "run"
    runtime.mkdir(mode=0o700)
    monkeypatch.setenv("XDG_RUNTIME_DIR", str(runtime))
    made = PrivateDir()
    assert Path(made.path).parent == runtime
    made.remove()
    os.chmod(runtime, 0o755)  # not private: not used
    made = PrivateDir()
    assert Path(made.path).parent == tmp_path
    made.remove()


def test_stale_private_dirs_are_removed_live_ones_kept(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    monkeypatch.delenv("XDG_RUNTIME_DIR", raising=False)
    monkeypatch.setattr(tempfile, "tempdir", str(tmp_path))
    monkeypatch.setattr(private, "MIN_AGE", 0.0)
    live = PrivateDir()  # holds its lock, as a running job's launcher does
    stale = PrivateDir()
    Path(stale.path, "jpserver-1.json").write_text("{}")
    os.close(stale._lock)  # the job was killed: nobody holds the lock any more
    foreign = tmp_path / f"jupyterhub-hpc-{os.getuid()}-nolock"
    foreign.mkdir(mode=0o700)  # not made by PrivateDir (no lock file): left alone
    fresh = PrivateDir()
    try:
        assert fresh.stale_removed == [stale.path]
        assert not Path(stale.path).exists()
        assert Path(live.path).is_dir() and foreign.is_dir()
    finally:
        live.remove()
        fresh.remove()


def test_certificates_round_trip_into_private_files(tmp_path: Path) -> None:
    hub = tmp_path / "hub"
    hub.mkdir()
    files = {"keyfile": b"-----BEGIN PRIVATE KEY-----\nAAA\n-----END PRIVATE KEY-----\n"}
    files["certfile"] = b"-----BEGIN CERTIFICATE-----\nBBB\n-----END CERTIFICATE-----\n"
    files["cafile"] = b"-----BEGIN CERTIFICATE-----\nCCC\n-----END CERTIFICATE-----\n"
    paths = {}
    for name, content in files.items():
        (hub / name).write_bytes(content)
        paths[name] = str(hub / name)
    carried = job_certificates(paths)
    assert "\n" not in carried[SSL_KEY_ENV] and b"PRIVATE" not in carried[SSL_KEY_ENV].encode()
    env = {**carried, "OTHER": "x"}
    job = tmp_path / "job"
    job.mkdir(mode=0o700)
    assert write_job_certificates(env, str(job))
    assert set(env) == {
        "OTHER",
        "JUPYTERHUB_SSL_KEYFILE",
        "JUPYTERHUB_SSL_CERTFILE",
        "JUPYTERHUB_SSL_CLIENT_CA",
    }
    assert Path(env["JUPYTERHUB_SSL_KEYFILE"]).read_bytes() == files["keyfile"]
    assert Path(env["JUPYTERHUB_SSL_CERTFILE"]).read_bytes() == files["certfile"]
    assert Path(env["JUPYTERHUB_SSL_CLIENT_CA"]).read_bytes() == files["cafile"]
    for variable in ("JUPYTERHUB_SSL_KEYFILE", "JUPYTERHUB_SSL_CERTFILE", "JUPYTERHUB_SSL_CLIENT_CA"):
        assert stat.S_IMODE(os.stat(env[variable]).st_mode) == 0o600
    # never over an existing file (O_EXCL): a planted symlink is not followed
    again = {**carried}
    with pytest.raises(FileExistsError):
        write_job_certificates(again, str(job))


def test_no_certificates_no_files(tmp_path: Path) -> None:
    env = {"PATH": "/bin"}
    assert write_job_certificates(env, str(tmp_path)) is False
    assert env == {"PATH": "/bin"} and list(tmp_path.iterdir()) == []


def test_a_partial_set_is_refused(tmp_path: Path) -> None:
    env = {SSL_KEY_ENV: "QUFB", SSL_CERT_ENV: "x"}
    with pytest.raises(ValueError):
        write_job_certificates(env, str(tmp_path))
    assert SSL_CA_ENV not in env
