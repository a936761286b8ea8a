"""Container runtimes' argv (issue 17): the identity kept, privileges dropped, secrets out of argv."""

from __future__ import annotations

import pytest

from jupyterhub_hpc.containers.runtimes import (
    Bind,
    ContainerImage,
    ContainerPlanError,
    RuntimeSettings,
    container_command,
)
from jupyterhub_hpc.identity import UserIdentity

ALICE = UserIdentity.make(
    username="alice",
    uid=2001,
    group={"name": "alice", "gid": 2001},
    groups=[{"name": "proj-astro", "gid": 3001}],
    home="/home/alice",
)
LONER = UserIdentity.make(username="bob", uid=2002, group={"name": "bob", "gid": 2002}, home="/home/bob")
SERVER = ["jupyterhub-singleuser", "--port=51234"]
ENV = {"JUPYTERHUB_API_TOKEN": "s3cret-token", "JUPYTERHUB_USER": "alice"}
SITE = "/opt/jupyterhub-hpc/venv"
INIT = f"{SITE}/bin/jupyterhub-hpc-init"
DEB = ContainerImage(name="debian12", kind="directory", location="/srv/images/deb12")
JUPYTER = ContainerImage(
    name="scipy",
    kind="podman",
    location="localhost/scipy-notebook:2026-11",
    image_user="jovyan",
    image_uid=1000,
    image_gid=100,
    has_jupyterhub=True,
)


def command(
    image: ContainerImage, settings: RuntimeSettings, who: UserIdentity = ALICE
) -> tuple[list[str], dict[str, str]]:
    made = container_command(image, settings, who, SERVER, init=[INIT], env_names=list(ENV), environment=ENV)
    assert not any("s3cret-token" in arg for arg in made.argv), made.argv
    return made.argv, made.env


def test_charliecloud_runs_the_directory_as_the_user_with_the_site_environment() -> None:
    argv, env = command(DEB, RuntimeSettings(runtime="charliecloud", site_env=SITE))
    assert (
        argv
        == [
            "ch-run",
            "--home",
            f"--bind={SITE}:{SITE}",
            "--cd=/home/alice",
            "/srv/images/deb12",
            "--",
            INIT,
            "--",
            f"{SITE}/bin/jupyterhub-singleuser",  # the image has no JupyterHub: the site environment's
            *SERVER[1:],
        ]
    )
    assert env == {}


def test_podman_maps_the_real_user_onto_jovyan_keeps_groups_and_drops_privileges() -> None:
    settings = RuntimeSettings(
        runtime="podman",
        oci_runtime="crun",
        binds=(Bind(source="/scratch"), Bind(source="/data", target="/d", writable=True)),
    )
    argv, env = command(JUPYTER, settings.model_copy(update={"hook_dir": "/site/hooks"}))
    assert argv[:3] == ["podman", "--runtime=crun", "run"]
    for flag in (
        "--rm",
        "--network=host",
        "--pull=never",
        "--userns=keep-id:uid=1000,gid=100",
        "--security-opt=no-new-privileges",
        "--cap-drop=all",
        "--group-add=keep-groups",
        "--volume=/home/alice:/home/jovyan",
        "--workdir=/home/jovyan",
        "--volume=/scratch:/scratch:ro",
        "--volume=/data:/d",
        "--env=JUPYTERHUB_API_TOKEN",
        "--env=JUPYTERHUB_USER",
        f"--entrypoint={INIT}",
    ):
        assert flag in argv, flag
    assert argv[argv.index("localhost/scipy-notebook:2026-11") :] == [
        "localhost/scipy-notebook:2026-11",
        "--image-user=jovyan",
        "--hook-dir=/site/hooks",
        "--",
        *SERVER,
    ]
    assert env == {}


def test_podman_with_runc_refuses_a_user_with_project_groups_but_not_one_without() -> None:
    settings = RuntimeSettings(runtime="podman", oci_runtime="runc")
    with pytest.raises(ContainerPlanError, match=r"runc drops supplementary groups.*proj-astro"):
        command(JUPYTER, settings)
    argv, _ = command(JUPYTER, settings, LONER)
    assert "--runtime=runc" in argv


def test_apptainer_passes_values_through_its_own_environment() -> None:
    sif = ContainerImage(name="pytorch", kind="sif", location="/srv/images/pytorch.sif", has_jupyterhub=True)
    argv, env = command(sif, RuntimeSettings(runtime="apptainer", binds=(Bind(source="/scratch"),)))
    assert argv == [
        "apptainer",
        "exec",
        "--containall",
        "--no-privs",
        "--home=/home/alice",
        "--bind=/scratch:/scratch:ro",
        "/srv/images/pytorch.sif",
        INIT,
        "--",
        *SERVER,
    ]
    assert env == {
        "APPTAINERENV_JUPYTERHUB_API_TOKEN": "s3cret-token",
        "APPTAINERENV_JUPYTERHUB_USER": "alice",
    }


@pytest.mark.parametrize(
    ("image", "runtime", "message"),
    [
        (JUPYTER, "charliecloud", "podman image; charliecloud starts directory or squashfs"),
        (DEB, "podman", "directory image; podman starts podman"),
        (DEB, "apptainer", "no JupyterHub and this cluster binds no site environment"),
    ],
)
def test_what_a_runtime_cannot_start_is_refused_with_why(
    image: ContainerImage, runtime: str, message: str
) -> None:
    with pytest.raises(ContainerPlanError, match=message):
        container_command(image, RuntimeSettings(runtime=runtime), ALICE, SERVER, init=[INIT])  # type: ignore[arg-type]


@pytest.mark.parametrize(
    "fields",
    [
        {"name": "x", "kind": "directory", "location": "relative/dir"},
        {"name": "x", "kind": "directory", "location": "/srv/../etc"},
        {"name": "x", "kind": "podman", "location": "--privileged"},
        {"name": "x", "kind": "podman", "location": "img --cap-add=all"},
        {"name": "../x", "kind": "podman", "location": "img"},
        {"name": "x", "kind": "podman", "location": "img", "image_uid": 0},
    ],
)
def test_image_entries_that_could_smuggle_options_are_refused(fields: dict[str, object]) -> None:
    with pytest.raises(ValueError):
        ContainerImage.model_validate(fields)


def test_bind_paths_and_variable_names_are_checked() -> None:
    for bad in ("relative", "/a:/b", "/a,b", "/x/../etc"):
        with pytest.raises(ValueError):
            Bind(source=bad)
    with pytest.raises(ContainerPlanError, match="not an environment variable name"):
        container_command(
            JUPYTER, RuntimeSettings(runtime="podman"), ALICE, SERVER, init=[INIT], env_names=["A=B"]
        )
