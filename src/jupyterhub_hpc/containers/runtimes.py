"""How each container runtime starts the user's server as the user: pure argv builders (issue 17).

The job's launcher (``jupyterhub-hpc-singleuser``) stays outside the container: it picks the port,
reports it to the hub and supervises the server. Only the command it would run
(``jupyterhub-singleuser ...``) goes inside, behind the non-root init
(``jupyterhub-hpc-init``, :mod:`jupyterhub_hpc.containers.init`). So any Jupyter image works, and
an image without JupyterHub gets the site's environment bind-mounted read-only
(:attr:`ContainerImage.has_jupyterhub`).

:func:`container_command` turns a :class:`ContainerImage`, a :class:`RuntimeSettings` and the
user's :class:`~jupyterhub_hpc.identity.UserIdentity` into a :class:`ContainerCommand`: the argv and
the environment names the runtime must pass in. The environment's *values* (the API token among
them) never appear in the argv: podman is given ``--env NAME`` (it reads the value from its own
environment), Apptainer reads ``APPTAINERENV_NAME``, Charliecloud passes the environment through.

Per runtime, what keeps the identity and what takes privileges away:

* **Charliecloud** (``ch-run``): runs the image directory or SquashFS as the calling user in an
  unprivileged user namespace; the host's passwd and group are bind-mounted, so names and groups
  are the host's. No setuid helper exists; ``ch-run`` sets no-new-privileges itself.
* **rootless podman**: ``--userns=keep-id`` (``:uid=U,gid=G`` maps the real user onto the image's
  user, e.g. ``jovyan`` 1000:100), ``--group-add keep-groups`` for the project groups,
  ``--security-opt no-new-privileges``, ``--cap-drop all``, ``--network host`` (the server listens
  on the node's port the launcher picked), ``--rm``. With ``runc`` the supplementary groups are lost
  silently (measured on Debian 12, podman 4.3.1): a user with project groups is refused with
  :class:`ContainerPlanError` instead of starting without them.
* **Apptainer / Singularity** (``apptainer exec``): runs as the user with the host's names and
  groups (``config passwd/group``); ``--containall`` with the home bound, ``--no-privs``.
  Built and unit-tested only: Apptainer cannot be installed on the machine the tests run on.
"""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

from ..identity import UserIdentity

__all__ = [
    "CONTAINER_ENV",
    "Bind",
    "ContainerCommand",
    "ContainerImage",
    "ContainerPlanError",
    "ContainerSpec",
    "ImageFacts",
    "RuntimeSettings",
    "container_command",
]

#: where the host's nss_wrapper library is mounted for the init, and the variable telling it so
NSS_WRAPPER_INSIDE = "/usr/lib/jupyterhub-hpc/libnss_wrapper.so"
NSS_WRAPPER_ENV = "JUPYTERHUB_HPC_NSS_WRAPPER"
#: the job's environment variable with the :class:`ContainerSpec` of its server (JSON, no secret)
CONTAINER_ENV = "JUPYTERHUB_HPC_CONTAINER"
Runtime = Literal["charliecloud", "podman", "apptainer"]
ImageKind = Literal["directory", "squashfs", "sif", "podman"]
#: which image kinds each runtime can start
RUNTIME_KINDS: dict[str, tuple[str, ...]] = {
    "charliecloud": ("directory", "squashfs"),
    "podman": ("podman",),
    "apptainer": ("sif", "directory"),
}
#: a podman image reference as the admin lists it (no options, no spaces)
PODMAN_REF = re.compile(r"[a-z0-9][a-z0-9._/:@-]{0,254}")
ENV_NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_]{0,127}")


class ContainerPlanError(ValueError):
    """This image cannot be started this way; the message says why and what to do."""


def _absolute(value: str, what: str) -> str:
    if not value.startswith("/") or any(c in value for c in ":\n\r\0,") or "/../" in f"{value}/":
        raise ValueError(f"{value!r} is not an absolute {what} path (no ':', ',', '..' or newlines)")
    return value


class Bind(BaseModel):
    """A host path mounted into the container (read-only unless ``writable``)."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    source: str
    target: str = ""
    writable: bool = False

    @field_validator("source", "target")
    @classmethod
    def _paths(cls, value: str) -> str:
        return _absolute(value, "bind") if value else value

    @property
    def destination(self) -> str:
        return self.target or self.source


class ImageFacts(BaseModel):
    """What an image is inside: its ``kind``; its own default user (docker-stacks: ``jovyan``,
    1000, 100) onto which podman maps the real user; whether ``jupyterhub-singleuser`` is inside
    (else the site environment is bound read-only). Shared by a listed image and a pattern."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    kind: ImageKind
    image_user: str | None = Field(default=None, pattern=r"^[a-z_][a-z0-9_-]{0,31}$")
    image_uid: int | None = Field(default=None, ge=1)
    image_gid: int | None = Field(default=None, ge=1)
    image_home: str = ""
    has_jupyterhub: bool = False


class ContainerImage(ImageFacts):
    """An image the admin lists (users choose it by ``name``), or one a user named where the
    admin allows a pattern (:mod:`.userimages`). ``location`` is a directory or SquashFS/SIF file
    (absolute path) or a podman image reference."""

    name: str = Field(pattern=r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,63}$")
    location: str

    @property
    def home_inside(self) -> str:
        """Where the user's home is mounted when the real user is mapped onto the image's user
        (``image_home``, default ``/home/<image_user>``); '' when it is not."""
        if self.image_uid is None or not self.image_user:
            return ""
        return self.image_home or f"/home/{self.image_user}"

    @model_validator(mode="after")
    def _location(self) -> ContainerImage:
        if self.image_home:
            _absolute(self.image_home, "image home")
        if self.kind != "podman":
            _absolute(self.location, f"{self.kind} image")
        elif not PODMAN_REF.fullmatch(self.location):
            raise ValueError(f"{self.location!r} is not a podman image reference")
        return self


class RuntimeSettings(BaseModel):
    """A cluster's runtime: which one, its program, podman's OCI runtime, what every container
    of this cluster gets bound (``binds``), and the site environment ``site_env`` (bound
    read-only at the same path when an image has no JupyterHub)."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    runtime: Runtime
    program: str = ""
    oci_runtime: Literal["crun", "runc", ""] = ""
    binds: tuple[Bind, ...] = ()
    site_env: str = ""
    image_store: str = ""
    nss_wrapper: str = ""
    hook_dir: str = ""

    @field_validator("program", "site_env", "image_store", "nss_wrapper", "hook_dir")
    @classmethod
    def _paths(cls, value: str) -> str:
        return _absolute(value, "program or site environment") if value else value

    @property
    def init(self) -> list[str]:
        """The init's argv inside the container: the site environment's, else the image's own."""
        return [f"{self.site_env}/bin/jupyterhub-hpc-init" if self.site_env else "jupyterhub-hpc-init"]

    @property
    def executable(self) -> str:
        return (
            self.program
            or {"charliecloud": "ch-run", "podman": "podman", "apptainer": "apptainer"}[self.runtime]
        )


class ContainerSpec(BaseModel):
    """What a job's server runs in: the image the user chose and the cluster's runtime; travels
    to the job's launcher in :data:`CONTAINER_ENV`."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    image: ContainerImage
    runtime: RuntimeSettings

    def to_env(self) -> str:
        return self.model_dump_json()

    @classmethod
    def from_env(cls, text: str) -> ContainerSpec:
        return cls.model_validate_json(text)


@dataclass(frozen=True)
class ContainerCommand:
    """What the launcher runs instead of the bare server command: ``argv``, and ``env``: extra
    variables for the runtime's own environment (values, never in the argv)."""

    argv: list[str]
    env: dict[str, str] = field(default_factory=dict)


@dataclass(frozen=True)
class _Plan:
    binds: list[Bind]
    inner: list[str]
    env_names: list[str]
    environment: dict[str, str]
    pidfile: str
    conmon_pidfile: str
    state_dir: str


def container_command(
    image: ContainerImage,
    settings: RuntimeSettings,
    identity: UserIdentity,
    command: Sequence[str],
    *,
    init: Sequence[str],
    env_names: Sequence[str] = (),
    environment: Mapping[str, str] | None = None,
    binds: Sequence[Bind] = (),
    pidfile: str = "",
    conmon_pidfile: str = "",
    state_dir: str = "",
) -> ContainerCommand:
    """The argv that starts ``command`` (the server) in ``image`` as ``identity`` behind the
    init (``init``: its argv, e.g. ``["python3", "/…/jupyterhub-hpc-init.py"]``), with the
    variables ``env_names`` passed in (their values, from ``environment``, stay out of the
    argv), this job's ``binds`` besides the cluster's, and podman's ``pidfile`` (the container
    process's pid, so the launcher can prove the server's socket is its own) and ``state_dir``
    (podman's storage, run and tmp directories of this job, its images read from the user's
    or the site's image store: the pause process of rootless podman is then the job's own). Raises
    :class:`ContainerPlanError` for an image this runtime cannot start, or groups it would lose."""
    if image.kind not in RUNTIME_KINDS[settings.runtime]:
        raise ContainerPlanError(
            f"image {image.name} is a {image.kind} image; {settings.runtime} starts "
            + " or ".join(RUNTIME_KINDS[settings.runtime])
            + " images"
        )
    for name in env_names:
        if not ENV_NAME.fullmatch(name):
            raise ContainerPlanError(f"{name!r} is not an environment variable name")
    all_binds = [*settings.binds, *binds]
    if not image.has_jupyterhub:
        if not settings.site_env:
            raise ContainerPlanError(
                f"image {image.name} has no JupyterHub and this cluster binds no site environment "
                "(set the runtime's site_env, or list the image with has_jupyterhub)"
            )
        all_binds.append(Bind(source=settings.site_env))
        if command and "/" not in command[0]:
            # the image's PATH does not have it: the site environment's server
            command = [f"{settings.site_env}/bin/{command[0]}", *command[1:]]
    options = [f"--image-user={image.image_user}"] if image.image_user else []
    if settings.hook_dir:
        options.append(f"--hook-dir={settings.hook_dir}")
    inner = [*init, *options, "--", *command]
    plan = _Plan(
        all_binds, inner, list(env_names), dict(environment or {}), pidfile, conmon_pidfile, state_dir
    )
    builder = {"charliecloud": _charliecloud, "podman": _podman, "apptainer": _apptainer}[settings.runtime]
    return builder(image, settings, identity, plan)


def _charliecloud(
    image: ContainerImage, settings: RuntimeSettings, identity: UserIdentity, plan: _Plan
) -> ContainerCommand:
    argv = [settings.executable]
    # ch-run's --home mounts $HOME at /home/$USER (a tmpfs /home); another home is bound at its own
    # path, which must exist in the image, as every bind's target must (the image is read-only)
    if identity.home == f"/home/{identity.username}":
        argv.append("--home")
    else:
        argv.append(f"--bind={identity.home}:{identity.home}")
    for bind in plan.binds:
        # ch-run 0.31 has no read-only binds: what the user may not write stays theirs to not write
        argv.append(f"--bind={bind.source}:{bind.destination}")
    argv += [f"--cd={identity.home}", image.location, "--", *plan.inner]
    # ch-run passes its environment through: the names need nothing more
    return ContainerCommand(argv=argv)


def _podman(
    image: ContainerImage, settings: RuntimeSettings, identity: UserIdentity, plan: _Plan
) -> ContainerCommand:
    if settings.oci_runtime == "runc" and identity.groups:
        raise ContainerPlanError(
            f"podman with runc drops supplementary groups ({', '.join(g.name for g in identity.groups)} "
            f"of {identity.username}) without a word: use crun (the runtime's oci_runtime), "
            "or Charliecloud"
        )
    argv = [settings.executable]
    if plan.state_dir:
        store = settings.image_store or f"{identity.home}/.local/share/containers/storage"
        argv += [
            f"--root={plan.state_dir}/root",
            f"--runroot={plan.state_dir}/run",
            f"--tmpdir={plan.state_dir}/tmp",
            f"--storage-opt=additionalimagestore={store}",
        ]
    if settings.oci_runtime:
        argv.append(f"--runtime={settings.oci_runtime}")
    argv += ["run", "--rm", "--network=host", "--pull=never"]
    if image.image_uid is not None:
        keep = f"keep-id:uid={image.image_uid},gid={image.image_gid or identity.gid}"
    else:
        keep = "keep-id"
    argv += [
        f"--userns={keep}",
        "--security-opt=no-new-privileges",
        "--cap-drop=all",
        "--group-add=keep-groups",
        # mapped onto the image's user, the home is where that user's is (docker-stacks: /home/jovyan)
        f"--volume={identity.home}:{image.home_inside or identity.home}",
        f"--workdir={image.home_inside or identity.home}",
    ]
    if plan.pidfile:
        argv.append(f"--pidfile={plan.pidfile}")
    if plan.conmon_pidfile:
        argv.append(f"--conmon-pidfile={plan.conmon_pidfile}")
    for bind in plan.binds:
        argv.append(f"--volume={bind.source}:{bind.destination}{'' if bind.writable else ':ro'}")
    argv += [f"--env={name}" for name in plan.env_names]
    if settings.nss_wrapper:
        # the host's nss_wrapper for the init (images rarely have it): names without a writable /etc
        argv += [
            f"--volume={settings.nss_wrapper}:{NSS_WRAPPER_INSIDE}:ro",
            f"--env={NSS_WRAPPER_ENV}={NSS_WRAPPER_INSIDE}",
        ]
    # the init is the entrypoint (the image's own, e.g. tini + start.sh, is not run)
    argv += [f"--entrypoint={plan.inner[0]}", image.location, *plan.inner[1:]]
    return ContainerCommand(argv=argv)


def _apptainer(
    image: ContainerImage, settings: RuntimeSettings, identity: UserIdentity, plan: _Plan
) -> ContainerCommand:
    argv = [settings.executable, "exec", "--containall", "--no-privs", f"--home={identity.home}"]
    for bind in plan.binds:
        argv.append(f"--bind={bind.source}:{bind.destination}:{'rw' if bind.writable else 'ro'}")
    argv += [image.location, *plan.inner]
    # --containall cleans the environment; APPTAINERENV_<NAME> puts a value back in
    env = {
        f"APPTAINERENV_{name}": plan.environment[name] for name in plan.env_names if name in plan.environment
    }
    return ContainerCommand(argv=argv, env=env)
