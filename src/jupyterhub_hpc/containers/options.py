"""The batch spawners' identity and container settings (issue 17).

Every start resolves the user's :class:`~jupyterhub_hpc.identity.UserIdentity` once
(:attr:`ContainerOptions.identity_source`) and says it in the spawn progress ("Starting as alice
(uid 2001, gid 2001 alice), groups proj-astro (3001)"). With :attr:`ContainerOptions.container_image`
set (by the admin, or by a profile choice's ``spawner_override``), the job's server runs in that
image through the cluster's :attr:`ContainerOptions.container_runtime`: the job's environment
carries the :class:`~jupyterhub_hpc.containers.runtimes.ContainerSpec` and the identity, and the
job's launcher starts the server inside (:mod:`jupyterhub_hpc.singleuser.container`).

Users never type an image path: they choose among ``container_images`` by name (a profile option
of type ``choice`` whose choices set ``container_image``), and each entry was validated when the
configuration loaded.
"""

from __future__ import annotations

from typing import Any

from traitlets import Callable, Dict, List, TraitError, Unicode, Union, validate
from traitlets.config import Configurable

from ..identity import IDENTITY_ENV, UserIdentity, resolve_identity
from .runtimes import CONTAINER_ENV, ContainerImage, ContainerPlanError, ContainerSpec, RuntimeSettings
from .userimages import ImagePattern, user_image

__all__ = ["ContainerOptions"]


class ContainerOptions(Configurable):
    """Identity and container settings of the batch spawners (see the module docstring)."""

    identity_source = Union(
        [Unicode(), Callable()],
        default_value="nss",
        help="""
        Where the hub takes the user's identity (uid, primary group, supplementary groups
        with their names, home, shell) from at each start:

        - ``"nss"`` (default): the hub host's user database (``getpwnam``,
          ``getgrouplist``), which on a cluster is the same LDAP or files as the nodes';
        - ``"auth_state"``: the authenticator's ``auth_state["identity"]`` (``uid``, ``gid``,
          ``group``, ``groups`` as ``[{"name", "gid"}]``, ``home``, ``shell``), e.g. from
          LDAP attributes; ``enable_auth_state`` must be on;
        - a callable ``f(spawner)`` (may be async) returning such a dict or a
          :class:`jupyterhub_hpc.identity.UserIdentity`.

        The identity is shown in the spawn progress and, for a server in a container,
        given to the runtime and the init inside. uid and gid 0 are refused. The job itself
        still runs as whatever uid the scheduler gives the user: the launcher refuses to
        start a container when the node's uid differs from the hub's.
        """,
    ).tag(config=True)

    container_images = List(
        Dict(),
        help="""
        The container images users may choose, each a dict ``{"name": "scipy", "kind":
        "podman", "location": "localhost/scipy-notebook:2026-11", "image_user": "jovyan",
        "image_uid": 1000, "image_gid": 100, "has_jupyterhub": true}``. ``kind`` is
        ``directory`` or ``squashfs`` (Charliecloud, Apptainer), ``sif`` (Apptainer) or
        ``podman`` (an image in the user's rootless podman storage). ``image_user``/
        ``image_uid``/``image_gid`` name the image's default user, onto which the real user
        is mapped (podman ``--userns=keep-id:uid=…,gid=…``) and whose name the init gives the
        real username. ``has_jupyterhub``: ``jupyterhub-singleuser`` is in the image; else
        ``container_runtime``'s ``site_env`` is bound read-only and its server runs. Checked
        when the configuration loads; check the images themselves with ``jupyterhub-hpc
        audit --image``.
        """,
    ).tag(config=True)

    container_runtime = Dict(
        help="""
        This cluster's container runtime: ``{"runtime": "charliecloud" | "podman" |
        "apptainer", "program": "/usr/bin/ch-run", "oci_runtime": "crun", "binds":
        [{"source": "/scratch"}], "site_env": "/opt/jupyterhub-hpc/venv"}``. ``binds`` are
        read-only unless ``"writable": true`` (Charliecloud 0.31 cannot make them read-only).
        ``site_env`` is bound read-only at its own path for images without JupyterHub, and
        holds the init (``bin/jupyterhub-hpc-init``). With podman, ``oci_runtime`` ``runc``
        refuses users with supplementary groups (runc drops them silently); use ``crun``.
        Podman keeps each job's state in the job's private directory and reads images from
        ``image_store`` (default: the user's ``~/.local/share/containers/storage``) as an
        additional read-only store, so its pause process is the job's and ends with it.
        ``nss_wrapper``: the host's ``libnss_wrapper.so``, mounted read-only for the init, which
        names the real user with it when the image does not know the uid (podman and
        Apptainer; Charliecloud binds the host's passwd and group itself). ``hook_dir``: a
        directory inside the container (e.g. one of the ``binds``) whose executables the init
        runs as the user before the server, each with a timeout; their output, prefixed
        ``[init] hook NAME:``, is in the job's output, and the user sees it in the spawn
        progress ("Start hook NAME: ..."). Inside the container another user's file looks
        like root's, so when ``hook_dir`` is one of the ``binds`` the job's launcher checks
        the hooks on the host first (root's or the user's, writable by nobody else).
        """,
    ).tag(config=True)

    container_image_patterns = List(
        Dict(),
        help="""
        Where users may give their own image's path instead of choosing a listed one; empty
        (default): they may not. Each a dict ``{"pattern": "{home}/images/*.sqfs", "kind":
        "squashfs", "has_jupyterhub": false}`` (and, as in ``container_images``,
        ``image_user``/``image_uid``/``image_gid``/``image_home``). In ``pattern``, ``*`` is any
        characters but ``/``, ``?`` one character but ``/``, and ``{username}`` and ``{home}``
        are the user's resolved name and home; nothing else is special. The path comes from
        ``container_image_path`` (set by a profile write-in) and must match a pattern for that
        user, be absolute and plain (no ``.``, ``..`` or empty component); it only reaches the
        runtime's argv, and the server runs as the user whatever the image.
        """,
    ).tag(config=True)

    container_image_path = Unicode(
        "",
        help="""
        The path (or podman reference) of the user's own image, allowed only where it matches
        one of ``container_image_patterns``. Set by a profile option's write-in:
        ``"unlisted_choice": {"enabled": true, "display_name": "Your own image (path)",
        "spawner_override": {"container_image_path": "{value}"}}``. When set it is used
        instead of ``container_image``.
        """,
    ).tag(config=True)

    container_image = Unicode(
        "",
        help="""
        The name of the ``container_images`` entry this server runs in; empty: no container.
        Usually set by a profile: a ``choice`` option whose choices each set it through
        ``spawner_override``, so users pick an image by its display name.
        """,
    ).tag(config=True)

    #: the identity of the current start (resolved by :meth:`resolve_identity`)
    job_identity: UserIdentity | None = None

    @validate("container_images")
    def _validate_container_images(self, proposal: Any) -> Any:
        names: set[str] = set()
        for entry in proposal["value"]:
            try:
                image = ContainerImage.model_validate(entry)
            except ValueError as exc:
                raise TraitError(f"container_images: {exc}") from None
            if image.name in names:
                raise TraitError(f"container_images: {image.name!r} is listed twice")
            names.add(image.name)
        return proposal["value"]

    @validate("container_image_patterns")
    def _validate_container_image_patterns(self, proposal: Any) -> Any:
        for entry in proposal["value"]:
            try:
                ImagePattern.model_validate(entry)
            except ValueError as exc:
                raise TraitError(f"container_image_patterns: {exc}") from None
        return proposal["value"]

    @validate("container_runtime")
    def _validate_container_runtime(self, proposal: Any) -> Any:
        if proposal["value"]:
            try:
                RuntimeSettings.model_validate(proposal["value"])
            except ValueError as exc:
                raise TraitError(f"container_runtime: {exc}") from None
        return proposal["value"]

    def container_spec(self) -> ContainerSpec | None:
        """The container of this start, or None; :class:`ContainerPlanError` for a name
        that is not listed, a path no pattern allows, or a missing runtime."""
        image = self._chosen_image()
        if image is None:
            return None
        if not self.container_runtime:
            raise ContainerPlanError("this spawner has a container image but no container_runtime")
        return ContainerSpec.model_validate({"image": image, "runtime": self.container_runtime})

    def _chosen_image(self) -> ContainerImage | dict[str, Any] | None:
        """The user's own image (``container_image_path``), else the listed ``container_image``."""
        if self.container_image_path:
            identity = self.job_identity
            if identity is None:
                raise ContainerPlanError(
                    "the user's own image needs the user's identity, which is not resolved"
                )
            patterns = [ImagePattern.model_validate(entry) for entry in self.container_image_patterns]
            return user_image(self.container_image_path, patterns, identity.username, identity.home)
        if not self.container_image:
            return None
        images = {entry["name"]: entry for entry in self.container_images}
        if self.container_image not in images:
            raise ContainerPlanError(f"container image {self.container_image!r} is not one the admin lists")
        return images[self.container_image]

    async def resolve_identity(self) -> UserIdentity:
        """The user's identity for this start (:attr:`identity_source`);
        :class:`~jupyterhub_hpc.identity.IdentityError` when it cannot be resolved."""
        identity = await resolve_identity(self.identity_source, self)
        self.job_identity = identity
        return identity

    def container_environment(self) -> dict[str, str]:
        """The job's variables of the identity and the container (none without a container)."""
        if self.job_identity is None:
            return {}
        spec = self.container_spec()
        if spec is None:
            return {}
        return {CONTAINER_ENV: spec.to_env(), IDENTITY_ENV: self.job_identity.to_env()}
