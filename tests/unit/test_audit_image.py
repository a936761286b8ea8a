"""`jupyterhub-hpc audit --image`: synthetic images built in tmp as the test runs (a root file
system directory, the same tree as a flat tar, docker- and OCI-archives of layers with
whiteouts), each bad thing giving exactly its finding, the unsquashfs listing parser on the
sample in tests/data/unsquashfs, and the command's exit status."""

from __future__ import annotations

import contextlib
import hashlib
import io
import json
import os
import stat
import subprocess
import sys
import tarfile
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from jupyterhub_hpc import cli
from jupyterhub_hpc.audit.image_checks import check_image, is_root_user, singleuser_paths, sudoers_grants
from jupyterhub_hpc.audit.image_read import (
    Entry,
    ImageError,
    mode_from_string,
    parse_unsquashfs_listing,
    read_image,
)
from needs import needs

DATA = Path(__file__).resolve().parents[1] / "data" / "unsquashfs"
ROOT_ONLY = needs(os.geteuid() == 0, "needs root to chown files to other owners")
PASSWD = "root:x:0:0:root:/root:/bin/sh\njovyan:x:1000:100::/home/jovyan:/bin/bash\n"


def put(root: Path, path: str, mode: int, data: str = "", uid: int = 0, gid: int = 0) -> Path:
    target = root / path.lstrip("/")
    target.parent.mkdir(parents=True, exist_ok=True)
    target.write_text(data)
    if os.geteuid() == 0:
        os.chown(target, uid, gid)
    os.chmod(target, mode)
    return target


def mkdir(root: Path, path: str, mode: int = 0o755) -> Path:
    target = root / path.lstrip("/")
    target.mkdir(parents=True, exist_ok=True)
    os.chmod(target, mode)
    return target


def clean_tree(root: Path) -> Path:
    """A small image with nothing wrong: jupyterhub-singleuser inside, a sticky /tmp."""
    mkdir(root, "/")
    for directory in ("/usr/bin", "/usr/local/bin", "/etc/sudoers.d", "/home/jovyan"):
        mkdir(root, directory)
    mkdir(root, "/tmp", 0o1777)
    mkdir(root, "/var/tmp", 0o1777)
    mkdir(root, "/tmp/.X11-unix", 0o1777)
    put(root, "/etc/passwd", 0o644, PASSWD)
    put(root, "/etc/group", 0o644, "root:x:0:\nusers:x:100:\n")
    put(root, "/etc/shadow", 0o640, "root:*:19000:0:99999:7:::\n")
    put(root, "/etc/sudoers", 0o440, "Defaults env_reset\nroot ALL=(ALL:ALL) ALL\n")
    put(root, "/usr/bin/python3", 0o755, "#!/bin/true\n")
    put(root, "/usr/local/bin/jupyterhub-singleuser", 0o755, "#!/usr/bin/python3\n")
    os.symlink("usr/bin", root / "bin")
    return root


def audit_dir(root: Path, user: str | None = None) -> dict[tuple[str, str], str]:
    contents = read_image(str(root))
    findings = list(contents.problems) + check_image(contents.entries, user=user)
    subjects = [f.subject for f in findings if f.subject]
    assert len(subjects) == len(set(subjects)), "one finding per path"
    return {(f.check, f.subject): f.severity for f in findings}


CLEAN = {("image.default-user", "User"): "info", ("image.singleuser", ""): "info"}


def test_the_clean_image_has_no_finding_beyond_info(tmp_path: Path) -> None:
    assert audit_dir(clean_tree(tmp_path / "rootfs")) == CLEAN


def _setuid_root(root: Path) -> None:
    put(root, "/usr/bin/newgrp", 0o4755)


def _setgid(root: Path) -> None:
    put(root, "/usr/bin/wall", 0o2755, gid=5)


def _sudo_nopasswd(root: Path) -> None:
    put(root, "/usr/bin/sudo", 0o4755)
    put(root, "/etc/sudoers.d/jovyan", 0o440, "# the notebook user\njovyan ALL=(ALL) NOPASSWD: ALL\n")


def _sudo_password(root: Path) -> None:
    put(root, "/usr/bin/sudo", 0o4755)
    put(root, "/etc/sudoers", 0o440, "Defaults env_reset\nroot ALL=(ALL:ALL) ALL\n%sudo ALL=(ALL:ALL) ALL\n")


def _su(root: Path) -> None:
    put(root, "/usr/bin/su", 0o4755)


def _shared_dir(root: Path) -> None:
    mkdir(root, "/opt/shared", 0o777)


def _tmp_not_sticky(root: Path) -> None:
    os.chmod(root / "tmp", 0o777)


def _world_writable_file(root: Path) -> None:
    put(root, "/etc/motd", 0o666, "hello\n")


def _passwd_group_writable(root: Path) -> None:
    os.chmod(root / "etc/passwd", 0o664)


def _passwd_world_writable(root: Path) -> None:
    os.chmod(root / "etc/passwd", 0o666)


def _group_writable(root: Path) -> None:
    os.chmod(root / "etc/group", 0o664)


def _shadow_readable(root: Path) -> None:
    os.chmod(root / "etc/shadow", 0o644)


def _no_singleuser(root: Path) -> None:
    (root / "usr/local/bin/jupyterhub-singleuser").unlink()


@pytest.mark.parametrize(
    ("spoil", "expected"),
    [
        (_setuid_root, {("image.setuid-root", "/usr/bin/newgrp"): "high"}),
        (_setgid, {("image.setuid", "/usr/bin/wall"): "medium"}),
        (_sudo_nopasswd, {("image.sudo", "/usr/bin/sudo"): "high"}),
        (_sudo_password, {("image.sudo", "/usr/bin/sudo"): "medium"}),
        (_su, {("image.su", "/usr/bin/su"): "high"}),
        (_shared_dir, {("image.world-writable-dir", "/opt/shared"): "medium"}),
        (_tmp_not_sticky, {("image.world-writable-dir", "/tmp"): "medium"}),
        (_world_writable_file, {("image.world-writable-file", "/etc/motd"): "medium"}),
        (_passwd_group_writable, {("image.passwd-writable", "/etc/passwd"): "high"}),
        (_passwd_world_writable, {("image.passwd-writable", "/etc/passwd"): "high"}),
        (_group_writable, {("image.passwd-writable", "/etc/group"): "high"}),
        (_shadow_readable, {("image.shadow-readable", "/etc/shadow"): "high"}),
    ],
    ids=lambda value: getattr(value, "__name__", ""),
)
def test_each_bad_thing_gives_exactly_its_finding(
    tmp_path: Path, spoil: Callable[[Path], None], expected: dict[tuple[str, str], str]
) -> None:
    root = clean_tree(tmp_path / "rootfs")
    spoil(root)
    assert audit_dir(root) == {**CLEAN, **expected}


def test_no_singleuser_is_low(tmp_path: Path) -> None:
    root = clean_tree(tmp_path / "rootfs")
    _no_singleuser(root)
    assert audit_dir(root)[("image.singleuser", "")] == "low"


def test_a_setuid_sudo_without_rules_for_users_is_reported_as_setuid_root(tmp_path: Path) -> None:
    root = clean_tree(tmp_path / "rootfs")
    put(root, "/usr/bin/sudo", 0o4755)
    # sudo ignores files of sudoers.d whose names contain a dot: so does the audit
    put(root, "/etc/sudoers.d/README.dpkg-dist", 0o440, "jovyan ALL=(ALL) NOPASSWD: ALL\n")
    assert audit_dir(root) == {**CLEAN, ("image.setuid-root", "/usr/bin/sudo"): "high"}


@ROOT_ONLY
def test_setuid_to_another_user_is_medium(tmp_path: Path) -> None:
    root = clean_tree(tmp_path / "rootfs")
    put(root, "/usr/local/bin/game", 0o4755, uid=1000)
    assert audit_dir(root) == {**CLEAN, ("image.setuid", "/usr/local/bin/game"): "medium"}


def test_the_directory_reader_does_not_follow_links_out_of_the_tree(tmp_path: Path) -> None:
    outside = mkdir(tmp_path, "/outside", 0o777)
    put(outside, "/escape", 0o4755)
    root = clean_tree(tmp_path / "rootfs")
    os.symlink(str(outside), root / "opt")
    entries = {e.path: e for e in read_image(str(root)).entries}
    assert entries["/opt"].link == str(outside) and stat.S_ISLNK(entries["/opt"].mode)
    assert not any(path.startswith("/opt/") for path in entries)
    assert audit_dir(root) == CLEAN


def test_default_user_from_a_config() -> None:
    for user in ("", "0", "root", "0:0", "root:root"):
        assert is_root_user(user), user
    assert not is_root_user("1000") and not is_root_user("jovyan:users", PASSWD)
    assert is_root_user("toor", "toor:x:0:0::/:/bin/sh\n")
    entries = [Entry("/etc/passwd", stat.S_IFREG | 0o644, content=PASSWD.encode())]
    [user] = [f for f in check_image(entries, user="0") if f.check == "image.default-user"]
    assert user.severity == "high" and "USER 1000" in user.fix and "keep-id" in user.fix
    [user] = [f for f in check_image(entries, user="jovyan") if f.check == "image.default-user"]
    assert user.severity == "info"


def test_sudoers_grants() -> None:
    text = (
        "# comment\nDefaults secure_path=/usr/bin\nUser_Alias ADMINS = alice\nroot ALL=(ALL) ALL\n"
        "%admin ALL=(ALL) ALL\nalice, bob ALL = \\\n  NOPASSWD: /usr/bin/apt\n#include /etc/x\n"
        "root , #0 ALL=(ALL) ALL\nroot, jovyan ALL=(ALL) ALL\n"
    )
    assert sudoers_grants(text) == [
        "%admin ALL=(ALL) ALL",
        "alice, bob ALL = NOPASSWD: /usr/bin/apt",
        "root, jovyan ALL=(ALL) ALL",
    ]


def test_singleuser_places() -> None:
    def reg(path: str) -> Entry:
        return Entry(path, stat.S_IFREG | 0o755)

    found = singleuser_paths(
        [
            reg("/opt/conda/bin/jupyterhub-singleuser"),
            reg("/srv/env/bin/jupyterhub-singleuser"),
            reg("/opt/a/b/bin/jupyterhub-singleuser"),
            reg("/home/u/bin/jupyterhub-singleuser"),
        ]
    )
    assert found == ["/opt/conda/bin/jupyterhub-singleuser", "/srv/env/bin/jupyterhub-singleuser"]


# tar archives ---------------------------------------------------------------------------------------


def test_the_same_tree_as_a_flat_tar(tmp_path: Path) -> None:
    root = clean_tree(tmp_path / "rootfs")
    _setuid_root(root)
    _passwd_group_writable(root)
    expected = audit_dir(root)
    for suffix, mode in ((".tar", "w"), (".tar.gz", "w:gz"), (".tar.xz", "w:xz")):
        archive = tmp_path / f"rootfs{suffix}"
        with tarfile.open(archive, mode) as tar:  # type: ignore[call-overload]
            tar.add(root, arcname=".")
        contents = read_image(str(archive))
        assert contents.kind == "tar" and contents.user is None
        found = {(f.check, f.subject): f.severity for f in check_image(contents.entries, user=None)}
        assert found == expected
        assert expected[("image.setuid-root", "/usr/bin/newgrp")] == "high"


def member(tar: tarfile.TarFile, name: str, mode: int = 0o644, data: bytes = b"", **kw: Any) -> None:
    info = tarfile.TarInfo(name)
    info.mode = mode
    for key, value in kw.items():
        setattr(info, key, value)
    if info.type == tarfile.REGTYPE:
        info.size = len(data)
        tar.addfile(info, io.BytesIO(data))
    else:
        tar.addfile(info)


def layer_bytes(build: Callable[[tarfile.TarFile], None], mode: str = "w") -> bytes:
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode=mode) as tar:  # type: ignore[call-overload]
        build(tar)
    return buffer.getvalue()


def lower(tar: tarfile.TarFile) -> None:
    for directory in ("etc", "usr", "usr/bin", "usr/local", "usr/local/bin", "opt", "opt/old", "opt/old/bin"):
        member(tar, directory, 0o755, type=tarfile.DIRTYPE)
    member(tar, "tmp", 0o1777, type=tarfile.DIRTYPE)
    member(tar, "etc/passwd", 0o644, PASSWD.encode())
    member(tar, "usr/bin/newgrp", 0o4755, b"x")  # deleted by the upper layer's whiteout
    member(tar, "opt/old/bin/helper", 0o4755, b"x")  # hidden by the upper layer's opaque directory
    member(tar, "usr/bin/chfn", 0o4755, b"x")  # stays: must be reported
    member(tar, "usr/bin/su", 0o4755, b"x")  # replaced by a plain file above


def upper(tar: tarfile.TarFile) -> None:
    member(tar, "usr/bin/.wh.newgrp", 0o644)
    member(tar, "opt/old/.wh..wh..opq", 0o644)
    member(tar, "opt/old/README", 0o644, b"new\n")
    member(tar, "usr/bin/su", 0o755, b"y")
    member(tar, "usr/local/bin/jupyterhub-singleuser", 0o755, b"#!/usr/bin/python3\n")


LAYERED = {
    ("image.default-user", "User"): "high",
    ("image.setuid-root", "/usr/bin/chfn"): "high",
    ("image.singleuser", ""): "info",
}


def add_bytes(tar: tarfile.TarFile, name: str, data: bytes) -> None:
    member(tar, name, 0o644, data)


def test_a_docker_archive_applies_its_layers_and_whiteouts(tmp_path: Path) -> None:
    archive = tmp_path / "image.tar"
    with tarfile.open(archive, "w") as tar:
        add_bytes(tar, "aaa/layer.tar", layer_bytes(lower))
        add_bytes(tar, "bbb/layer.tar", layer_bytes(upper, "w:gz"))
        add_bytes(tar, "cfg.json", json.dumps({"config": {"User": "0", "Cmd": ["bash"]}}).encode())
        manifest = [{"Config": "cfg.json", "RepoTags": ["t:1"], "Layers": ["aaa/layer.tar", "bbb/layer.tar"]}]
        add_bytes(tar, "manifest.json", json.dumps(manifest).encode())
    contents = read_image(str(archive))
    assert contents.kind == "docker-archive" and contents.user == "0"
    paths = {e.path for e in contents.entries}
    assert "/usr/bin/newgrp" not in paths and "/opt/old/bin/helper" not in paths
    assert {"/opt/old", "/opt/old/README", "/usr/bin/su"} <= paths
    found = {(f.check, f.subject): f.severity for f in check_image(contents.entries, user=contents.user)}
    assert found == LAYERED


def test_an_oci_archive(tmp_path: Path) -> None:
    archive = tmp_path / "image.oci.tar"
    blobs: dict[str, bytes] = {}

    def blob(data: bytes) -> dict[str, Any]:
        digest = hashlib.sha256(data).hexdigest()
        blobs[f"blobs/sha256/{digest}"] = data
        return {"digest": f"sha256:{digest}", "size": len(data)}

    layers = [blob(layer_bytes(lower, "w:gz")), blob(layer_bytes(upper))]
    config = blob(json.dumps({"config": {"User": "root"}}).encode())
    manifest = blob(json.dumps({"schemaVersion": 2, "config": config, "layers": layers}).encode())
    with tarfile.open(archive, "w") as tar:
        add_bytes(tar, "oci-layout", b'{"imageLayoutVersion": "1.0.0"}')
        add_bytes(tar, "index.json", json.dumps({"schemaVersion": 2, "manifests": [manifest]}).encode())
        for name, data in blobs.items():
            add_bytes(tar, name, data)
    contents = read_image(str(archive))
    assert contents.kind == "oci-archive" and contents.user == "root"
    assert {(f.check, f.subject): f.severity for f in check_image(contents.entries, user="root")} == LAYERED


def test_members_leaving_the_root_are_findings_not_tracebacks(tmp_path: Path) -> None:
    archive = tmp_path / "evil.tar"
    with tarfile.open(archive, "w") as tar:
        member(tar, "etc", 0o755, type=tarfile.DIRTYPE)
        member(tar, "../evil", 0o4755, b"x")
        member(tar, "/etc/cron.d/x", 0o644, b"x")
        member(tar, "usr/../../evil2", 0o644, b"x")
    contents = read_image(str(archive))
    assert {e.path for e in contents.entries} == {"/etc"}
    found = {(f.check, f.subject.rsplit(": ", 1)[-1]): f.severity for f in contents.problems}
    assert found == {
        ("image.unsafe-member", "../evil"): "high",
        ("image.unsafe-member", "/etc/cron.d/x"): "medium",
        ("image.unsafe-member", "usr/../../evil2"): "high",
    }
    code, _ = run_cli("--image", str(archive))
    assert code == 2


def test_a_docker_archive_with_a_missing_layer_cannot_be_audited(tmp_path: Path) -> None:
    archive = tmp_path / "broken.tar"
    with tarfile.open(archive, "w") as tar:
        add_bytes(tar, "cfg.json", b"{}")
        add_bytes(tar, "manifest.json", json.dumps([{"Config": "cfg.json", "Layers": ["x.tar"]}]).encode())
    with pytest.raises(ImageError, match="missing"):
        read_image(str(archive))
    assert run_cli("--image", str(archive))[0] == 1


# SquashFS and SIF -----------------------------------------------------------------------------------


def test_the_unsquashfs_listing() -> None:
    entries = {e.path: e for e in parse_unsquashfs_listing((DATA / "lln.txt").read_text())}
    assert sorted(entries) == [
        "/",
        "/bin",
        "/dev/null",
        "/etc",
        "/etc/passwd",
        "/opt/env/bin/jupyterhub-singleuser",
        "/srv/my data",
        "/tmp",
        "/usr/bin/su",
        "/usr/bin/wall",
    ]
    assert entries["/bin"].link == "usr/bin" and stat.S_ISLNK(entries["/bin"].mode)
    assert entries["/usr/bin/su"].mode == stat.S_IFREG | 0o4755
    assert (entries["/usr/bin/wall"].mode, entries["/usr/bin/wall"].gid) == (stat.S_IFREG | 0o2755, 5)
    assert entries["/tmp"].mode == stat.S_IFDIR | 0o1777 and stat.S_ISCHR(entries["/dev/null"].mode)
    assert entries["/opt/env/bin/jupyterhub-singleuser"].uid == 1000
    found = {(f.check, f.subject): f.severity for f in check_image(list(entries.values()), user=None)}
    assert found == {
        ("image.default-user", "User"): "info",
        ("image.su", "/usr/bin/su"): "high",
        ("image.setuid", "/usr/bin/wall"): "medium",
        ("image.passwd-writable", "/etc/passwd"): "high",
        ("image.world-writable-dir", "/srv/my data"): "medium",
        ("image.singleuser", ""): "info",
    }


def test_mode_strings() -> None:
    assert mode_from_string("-", "rwSr-----") == stat.S_IFREG | 0o4640
    assert mode_from_string("d", "rwxrwxrwT") == stat.S_IFDIR | 0o1776
    assert mode_from_string("-", "r-xr-sr-x") == stat.S_IFREG | 0o2555


def test_squashfs_without_unsquashfs_exits_1(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    image = tmp_path / "image.sqfs"
    image.write_bytes(b"hsqs" + bytes(96))
    monkeypatch.setattr("jupyterhub_hpc.audit.image_read.shutil.which", lambda name: None)
    code, _, err = run_cli_err("--image", str(image))
    assert code == 1 and "unsquashfs is not installed" in err


def test_sif_is_not_supported(tmp_path: Path) -> None:
    image = tmp_path / "image.sif"
    image.write_bytes(b"#!/usr/bin/env run-singularity\n".ljust(32, b"\0") + b"SIF_MAGIC" + bytes(32))
    code, _, err = run_cli_err("--image", str(image))
    assert code == 1 and "SIF" in err and "Apptainer" in err


# the command ----------------------------------------------------------------------------------------


def run_cli_err(*argv: str) -> tuple[int, str, str]:
    out, err = io.StringIO(), io.StringIO()
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
        try:
            cli.main(["audit", *argv])
            code = 0
        except SystemExit as exc:
            code = int(exc.code or 0)
    return code, out.getvalue(), err.getvalue()


def run_cli(*argv: str) -> tuple[int, str]:
    code, out, _ = run_cli_err(*argv)
    return code, out


def test_the_command_on_a_clean_and_a_bad_image(tmp_path: Path) -> None:
    clean = clean_tree(tmp_path / "clean")
    bad = clean_tree(tmp_path / "bad")
    _sudo_nopasswd(bad)
    code, text = run_cli("--image", str(clean))
    assert code == 0 and f"image {clean} (directory)" in text and "[HIGH]" not in text
    code, text = run_cli("--image", str(clean), "--image", str(bad))
    assert code == 2 and f"image {clean} (directory)" in text and f"image {bad} (directory)" in text
    assert "[HIGH] image.sudo:" in text and "NOPASSWD" in text
    code, text = run_cli("--json", "--image", str(clean), "--image", str(bad))
    answer = json.loads(text)
    assert code == 2 == answer["exit_status"]
    assert [image["exit_status"] for image in answer["images"]] == [0, 2]
    assert answer["images"][1]["findings"][0]["check"] == "image.sudo"


def test_the_command_refuses_a_missing_image(tmp_path: Path) -> None:
    clean = clean_tree(tmp_path / "clean")
    code, out, err = run_cli_err("--image", str(clean), "--image", str(tmp_path / "nope"))
    assert code == 1 and out == "" and "no such image" in err


def test_an_archive_of_several_images_says_which_was_audited(tmp_path: Path) -> None:
    archive = tmp_path / "two.tar"
    with tarfile.open(archive, "w") as tar:
        add_bytes(tar, "aaa/layer.tar", layer_bytes(lower))
        add_bytes(tar, "cfg.json", json.dumps({"config": {"User": "1000"}}).encode())
        first = {"Config": "cfg.json", "RepoTags": ["one:1"], "Layers": ["aaa/layer.tar"]}
        add_bytes(tar, "manifest.json", json.dumps([first, {**first, "RepoTags": ["two:1"]}]).encode())
    contents = read_image(str(archive))
    [problem] = contents.problems
    assert (problem.check, problem.severity) == ("image.several-images", "info") and "one:1" in problem.what


def test_the_installed_module_exits_2_on_a_high_finding(tmp_path: Path) -> None:
    root = clean_tree(tmp_path / "rootfs")
    _su(root)
    env = {**os.environ, "PYTHONPATH": str(Path(cli.__file__).resolve().parents[1])}
    argv = [sys.executable, "-m", "jupyterhub_hpc.cli", "audit", "--image", str(root)]
    done = subprocess.run(argv, capture_output=True, text=True, env=env, check=False, timeout=60)
    assert done.returncode == 2, done.stderr
    assert "[HIGH] image.su:" in done.stdout
