"""The spawner's identity and container settings and the launcher's container (issue 17), no runtime."""

from __future__ import annotations

import os
import pwd
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import pytest
from traitlets import TraitError

from jupyterhub_hpc.containers import launch, runtimes
from jupyterhub_hpc.containers.options import ContainerOptions
from jupyterhub_hpc.containers.report import PROGRESS_ENV
from jupyterhub_hpc.containers.runtimes import CONTAINER_ENV, ContainerPlanError, ContainerSpec
from jupyterhub_hpc.identity import IDENTITY_ENV, IdentityError, UserIdentity
from jupyterhub_hpc.singleuser import launcher
from jupyterhub_hpc.singleuser.private import PrivateDir
from needs import needs

IMAGES = [
    {"name": "deb12", "kind": "directory", "location": "/srv/images/deb12"},
    {
        "name": "scipy",
        "kind": "podman",
        "location": "localhost/scipy",
        "image_user": "jovyan",
        "image_uid": 1000,
        "image_gid": 100,
        "has_jupyterhub": True,
    },
]
CHARLIECLOUD = {"runtime": "charliecloud", "site_env": "/opt/jupyterhub-hpc/venv"}
ALICE = UserIdentity.make(
    username="alice", uid=2001, group={"name": "alice", "gid": 2001}, home="/home/alice"
)


class User(SimpleNamespace):
    async def get_auth_state(self) -> Any:
        return self.auth_state


def options(user: str = "hpcuser1", **traits: Any) -> ContainerOptions:
    made = ContainerOptions(**traits)
    made.user = User(name=user, auth_state=None)  # type: ignore[attr-defined]
    return made


def test_the_launcher_and_the_runtimes_name_the_same_variable() -> None:
    assert launcher.CONTAINER_ENV == runtimes.CONTAINER_ENV


@pytest.mark.parametrize(
    ("trait", "value", "message"),
    [
        (
            "container_images",
            [{"name": "x", "kind": "directory", "location": "relative"}],
            "container_images: ",
        ),
        ("container_images", [IMAGES[0], IMAGES[0]], "'deb12' is listed twice"),
        (
            "container_images",
            [{"name": "x", "kind": "podman", "location": "--privileged"}],
            "podman image reference",
        ),
        ("container_runtime", {"runtime": "docker"}, "container_runtime: "),
        ("container_runtime", {"runtime": "podman", "site_env": "venv"}, "container_runtime: "),
    ],
)
def test_bad_container_settings_fail_when_the_config_loads(trait: str, value: Any, message: str) -> None:
    with pytest.raises(TraitError, match=message):
        ContainerOptions(**{trait: value})


def test_the_chosen_image_and_the_runtime_make_the_jobs_variables() -> None:
    spawner = options(container_images=IMAGES, container_runtime=CHARLIECLOUD)
    assert spawner.container_spec() is None and spawner.container_environment() == {}
    spawner.container_image = "deb12"
    spawner.job_identity = ALICE
    env = spawner.container_environment()
    assert ContainerSpec.from_env(env[CONTAINER_ENV]).image.location == "/srv/images/deb12"
    assert UserIdentity.from_env(env[IDENTITY_ENV]) == ALICE
    spawner.container_image = "nosuch"
    with pytest.raises(ContainerPlanError, match="not one the admin lists"):
        spawner.container_spec()
    no_runtime = options(container_images=IMAGES, container_image="deb12")
    with pytest.raises(ContainerPlanError, match="no container_runtime"):
        no_runtime.container_spec()


async def test_identity_from_nss_auth_state_or_a_callable() -> None:
    spawner = options()
    found = await spawner.resolve_identity()
    assert found.uid == pwd.getpwnam("hpcuser1").pw_uid and spawner.job_identity == found

    spawner = options(identity_source="auth_state")
    spawner.user.auth_state = {"identity": {"uid": 2001, "gid": 2001, "home": "/home/alice"}}  # type: ignore[attr-defined]
    assert (await spawner.resolve_identity()).describe() == "hpcuser1 (uid 2001, gid 2001 hpcuser1)"
    spawner.user.auth_state = {}  # type: ignore[attr-defined]
    with pytest.raises(IdentityError, match="stored no identity"):
        await spawner.resolve_identity()

    async def from_site(sp: Any) -> dict[str, Any]:
        return {"username": sp.user.name, "uid": 4242, "group": {"name": "site", "gid": 4242}, "home": "/u/x"}

    assert (await options(identity_source=from_site).resolve_identity()).uid == 4242
    assert (await options(identity_source=lambda sp: ALICE).resolve_identity()) is ALICE
    with pytest.raises(IdentityError, match="uid and gid 0"):
        await options(identity_source=lambda sp: {**ALICE.model_dump(), "uid": 0}).resolve_identity()
    with pytest.raises(IdentityError, match="not 'nss', 'auth_state' or a callable"):
        await options(identity_source="ldap").resolve_identity()
    with pytest.raises(IdentityError, match="uid and gid 0 are never used"):
        await options(user="root").resolve_identity()


def spec_env(image: dict[str, Any], runtime: dict[str, Any]) -> dict[str, str]:
    spec = ContainerSpec.model_validate({"image": image, "runtime": runtime})
    return {CONTAINER_ENV: spec.to_env(), IDENTITY_ENV: ALICE.to_env()}


@pytest.fixture
def private(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Any:
    monkeypatch.setenv("TMPDIR", str(tmp_path))
    monkeypatch.delenv("XDG_RUNTIME_DIR", raising=False)
    made = PrivateDir()
    yield made
    made.remove()


def test_a_node_whose_uid_differs_from_the_hubs_is_refused(private: PrivateDir) -> None:
    with pytest.raises(SystemExit, match="the node's and the hub's user databases disagree"):
        launch.container_launch(spec_env(IMAGES[0], CHARLIECLOUD), private)
    with pytest.raises(SystemExit, match="cannot start the container"):
        launch.container_launch({CONTAINER_ENV: "{}", IDENTITY_ENV: ALICE.to_env()}, private)
    assert launch.container_launch({}, private) is None


def test_the_server_attempt_in_podman_by_name_with_its_pidfile_and_pause_process(
    private: PrivateDir, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(launch.os, "getuid", lambda: 2001)
    podman = {"runtime": "podman", "oci_runtime": "crun", "site_env": "/opt/jupyterhub-hpc/venv"}
    job = launch.container_launch(spec_env(IMAGES[1], podman), private)
    assert job is not None
    env = {
        "JUPYTERHUB_API_TOKEN": "s3cret",
        "JUPYTERHUB_API_URL": "http://10.0.0.1:8081/hub/api/",
        "PATH": "/usr/bin",
        "LD_PRELOAD": "x.so",
        "JUPYTER_RUNTIME_DIR": "/r",
    }
    argv, run_env = job.command(["jupyterhub-singleuser"], env)
    assert "s3cret" not in " ".join(argv)
    # the init inside is told where its hooks' lines go
    assert run_env[PROGRESS_ENV] == "http://10.0.0.1:8081/hub/api/hpc/progress"
    assert f"--env={PROGRESS_ENV}" in argv and PROGRESS_ENV not in env
    assert "--env=JUPYTERHUB_API_TOKEN" in argv and "--env=JUPYTER_RUNTIME_DIR" in argv
    assert "--env=PATH" not in argv and "--env=LD_PRELOAD" not in argv
    assert f"--volume={private.path}:{private.path}" in argv
    assert f"--pidfile={private.path}/container.pid" in argv
    assert argv[-4:] == ["localhost/scipy", "--image-user=jovyan", "--", "jupyterhub-singleuser"]
    state = os.path.join(private.path, "podman")
    assert run_env["XDG_RUNTIME_DIR"] == os.path.join(state, "xdg")
    assert argv[1:5] == [
        f"--root={state}/root",
        f"--runroot={state}/run",
        f"--tmpdir={state}/tmp",
        "--storage-opt=additionalimagestore=/home/alice/.local/share/containers/storage",
    ]
    assert os.stat(run_env["XDG_RUNTIME_DIR"]).st_mode & 0o777 == 0o700
    assert job.server_pids() == set()
    Path(job.pidfile).write_text(f"{os.getpid()}\n")
    assert job.server_pids() == {os.getpid()}
    # the pause process podman left: ended if it is ours (here: a sleeping child of the test)
    import subprocess

    pause = subprocess.Popen(["sleep", "60"])
    monkeypatch.setattr(launch, "_owned_by_me", lambda pid: pid == pause.pid)
    Path(state, "tmp").mkdir()
    Path(state, "tmp", "pause.pid").write_text(str(pause.pid))
    assert job.cleanup() == [f"ended podman's pause process {pause.pid}"]
    assert pause.wait(5) == -9


def hook_spec(host: Path, hook_dir: str) -> ContainerSpec:
    runtime = {
        "runtime": "charliecloud",
        "site_env": "/opt/venv",
        "binds": [{"source": str(host), "target": "/site"}],
        "hook_dir": hook_dir,
    }
    return ContainerSpec.model_validate({"image": IMAGES[0], "runtime": runtime})


def executable(path: Path, mode: int = 0o755) -> None:
    path.write_text("#!/bin/sh\n")
    path.chmod(mode)


@needs(os.getuid() == 0, "gives a hook to another uid: needs root")
def test_hooks_bound_from_the_host_are_checked_there(tmp_path: Path) -> None:
    """Inside the user namespace another user's hook looks like root's: the launcher refuses it
    on the host, where the owner is visible."""
    hooks = tmp_path / "hooks"
    hooks.mkdir()
    executable(hooks / "10-root")
    executable(hooks / "20-mine")
    os.chown(hooks / "20-mine", 2001, 2001)
    spec = hook_spec(tmp_path, "/site/hooks")
    assert launch.host_hook_problems(spec, 2001) == []
    executable(hooks / "30-open", 0o757)
    executable(hooks / "40-bobs")
    os.chown(hooks / "40-bobs", 4242, -1)
    assert launch.host_hook_problems(spec, 2001) == [
        f"{hooks}/30-open is writable by others than its owner",
        f"{hooks}/40-bobs is owned by uid 4242, neither the user nor root",
    ]
    # a hook directory inside the image is the listed image's: nothing to check on the host
    assert launch.host_hook_problems(hook_spec(tmp_path, "/etc/hooks"), 2001) == []
