"""The user's own image by path, only where the admin allows a pattern (issue 17)."""

from __future__ import annotations

from typing import Any

import pytest
from traitlets import TraitError

from jupyterhub_hpc.containers.options import ContainerOptions
from jupyterhub_hpc.containers.runtimes import CONTAINER_ENV, ContainerPlanError, ContainerSpec
from jupyterhub_hpc.containers.userimages import USER_IMAGE_NAME, ImagePattern, user_image
from jupyterhub_hpc.identity import UserIdentity

SQUASH = ImagePattern(pattern="{home}/images/*.sqfs", kind="squashfs")
SCRATCH = ImagePattern(pattern="/scratch/{username}/ch/*", kind="directory")
PODMAN = ImagePattern(
    pattern="localhost/{username}-*", kind="podman", image_user="jovyan", image_uid=1000, image_gid=100
)
ALL = [SQUASH, SCRATCH, PODMAN]


def own(path: str, username: str = "alice", home: str = "/home/alice") -> Any:
    return user_image(path, ALL, username, home)


def test_a_path_in_the_users_own_place_is_an_image() -> None:
    image = own("/home/alice/images/nb-2026.sqfs")
    assert (image.name, image.kind, image.location) == (
        USER_IMAGE_NAME,
        "squashfs",
        "/home/alice/images/nb-2026.sqfs",
    )
    assert own("/scratch/alice/ch/deb12").kind == "directory"
    mapped = own("localhost/alice-scipy:2026")
    assert (mapped.kind, mapped.image_user, mapped.image_uid) == ("podman", "jovyan", 1000)


@pytest.mark.parametrize(
    ("path", "why"),
    [
        ("/home/bob/images/nb.sqfs", "not one this site allows"),
        ("/home/alice/images/sub/nb.sqfs", "not one this site allows"),  # '*' does not cross '/'
        ("/home/alice/images/nb.sif", "not one this site allows"),
        ("/scratch/alice/ch/..", "'..' component"),
        ("/scratch/alice/ch/.", "'.' or '..' component"),
        ("images/nb.sqfs", "not one this site allows"),
        ("localhost/bob-scipy", "not one this site allows"),
        ("/home/alice/images/nb\n.sqfs", "control character"),
        ("", "1 to 1024 characters"),
        ("/" + "x" * 1100, "1 to 1024 characters"),
    ],
)
def test_anything_else_is_refused_saying_why(path: str, why: str) -> None:
    with pytest.raises(ContainerPlanError, match=why):
        own(path)


def test_the_refusal_names_what_is_allowed_for_this_user() -> None:
    with pytest.raises(ContainerPlanError) as info:
        own("/tmp/x.sqfs")
    assert "allowed: /home/alice/images/*.sqfs, /scratch/alice/ch/*, localhost/alice-*" in str(info.value)


def test_the_placeholders_are_literal_text() -> None:
    # a name with a regex character matches itself only
    assert own("/scratch/a.b/ch/x", username="a.b").location == "/scratch/a.b/ch/x"
    with pytest.raises(ContainerPlanError):
        own("/scratch/aXb/ch/x", username="a.b")


def test_without_patterns_users_choose_listed_images_only() -> None:
    with pytest.raises(ContainerPlanError, match="listed images only"):
        user_image("/home/alice/images/nb.sqfs", [], "alice", "/home/alice")


@pytest.mark.parametrize(
    ("entry", "why"),
    [
        ({"pattern": "/images/[ab]*", "kind": "directory"}, "only '\\*', '\\?'"),
        ({"pattern": "/images/**", "kind": "directory"}, "only '\\*', '\\?'"),
        ({"pattern": "/images/{user}/*", "kind": "directory"}, "only '\\*', '\\?'"),
        ({"pattern": "images/*", "kind": "squashfs"}, "absolute path or starts at"),
        ({"pattern": "/images/*", "kind": "docker"}, "kind"),
        ({"pattern": "/images/*", "kind": "sif", "extra": 1}, "extra"),
    ],
)
def test_a_bad_pattern_fails_when_the_config_loads(entry: dict[str, Any], why: str) -> None:
    with pytest.raises(TraitError, match=why):
        ContainerOptions(container_image_patterns=[entry])


ALICE = UserIdentity.make(
    username="alice", uid=2001, group={"name": "alice", "gid": 2001}, home="/home/alice"
)


def test_the_spawner_uses_the_typed_path_over_the_listed_image() -> None:
    spawner = ContainerOptions(
        container_images=[{"name": "deb12", "kind": "directory", "location": "/srv/images/deb12"}],
        container_image="deb12",
        container_image_patterns=[SQUASH.model_dump()],
        container_runtime={"runtime": "charliecloud", "site_env": "/opt/venv"},
        container_image_path="/home/alice/images/nb.sqfs",
    )
    with pytest.raises(ContainerPlanError, match="identity"):
        spawner.container_spec()
    spawner.job_identity = ALICE
    env = spawner.container_environment()
    assert ContainerSpec.from_env(env[CONTAINER_ENV]).image.location == "/home/alice/images/nb.sqfs"
    spawner.container_image_path = "/home/bob/images/nb.sqfs"
    with pytest.raises(ContainerPlanError, match="not one this site allows"):
        spawner.container_spec()
    spawner.container_image_path = ""
    assert spawner.container_spec().image.name == "deb12"  # type: ignore[union-attr]
