"""KubeSpawner without root (issue 17): the pod runs as the user's real identity, and a policy
check refuses any pod that could regain privileges.

Two hooks for ``jupyterhub_config.py``::

    from jupyterhub_hpc.containers.kube import identity_pre_spawn_hook, policy_modify_pod_hook

    c.KubeSpawner.pre_spawn_hook = identity_pre_spawn_hook("nss")
    c.KubeSpawner.modify_pod_hook = policy_modify_pod_hook

:func:`identity_pre_spawn_hook` resolves the user's :class:`~jupyterhub_hpc.identity.UserIdentity`
(:func:`~jupyterhub_hpc.identity.resolve_identity`, as the batch spawners do) and sets KubeSpawner's
own traits from it (:func:`kube_identity_settings`): ``runAsUser``/``runAsGroup`` at pod and
container level, ``supplementalGroups``, ``fsGroup``, ``runAsNonRoot``, no privilege escalation,
every capability dropped, seccomp ``RuntimeDefault``, and ``jupyterhub-hpc-init`` as the container's
entrypoint in front of ``jupyterhub-singleuser``. :func:`policy_modify_pod_hook` checks the finished
pod (:func:`check_pod_policy`) and fails the spawn when anything lets it run as root or regain
privileges.

KubeSpawner and the Kubernetes client are optional (the ``kubernetes`` extra): they are imported only
when a hook or :func:`build_pod_manifest` runs.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Mapping, Sequence
from typing import Any

from ..identity import IDENTITY_ENV, UserIdentity, resolve_identity

__all__ = [
    "INIT",
    "SERVER_CMD",
    "PodPolicyError",
    "build_pod_manifest",
    "check_pod_policy",
    "identity_pre_spawn_hook",
    "kube_identity_settings",
    "policy_modify_pod_hook",
]

#: the init that names the uid inside the container (nss_wrapper) and execs the server
INIT = "jupyterhub-hpc-init"
#: the server the init starts (KubeSpawner appends ``get_args()`` after it)
SERVER_CMD = ("jupyterhub-singleuser",)
#: seccomp profile types that confine the container
SECCOMP_CONFINED = frozenset({"RuntimeDefault", "Localhost"})
#: every KubeSpawner trait :func:`kube_identity_settings` may return; the hook sets no other name
IDENTITY_TRAITS = frozenset(
    {
        "uid",
        "gid",
        "supplemental_gids",
        "fs_gid",
        "allow_privilege_escalation",
        "privileged",
        "container_security_context",
        "pod_security_context",
        "cmd",
        "extra_container_config",
        "environment",
    }
)
#: traits whose value is merged into the spawner's own (the admin's entries are kept, ours win)
MERGED_TRAITS = frozenset({"environment", "extra_container_config"})


class PodPolicyError(RuntimeError):
    """A pod manifest that could run as root or regain privileges; ``problems`` lists why."""

    def __init__(self, problems: Sequence[str]) -> None:
        self.problems = list(problems)
        super().__init__(
            "refusing the pod: it could run as root or regain privileges: " + "; ".join(self.problems)
        )


def _template_safe(value: str) -> str:
    """KubeSpawner formats ``environment`` values with the user's properties: keep braces literal."""
    return value.replace("{", "{{").replace("}", "}}")


def _image_id(value: int | None, what: str) -> None:
    if value is not None and (isinstance(value, bool) or not isinstance(value, int) or value < 1):
        raise ValueError(f"{what} must be a positive integer (not root), got {value!r}")


def kube_identity_settings(
    identity: UserIdentity,
    *,
    image_user: str | None,
    image_uid: int | None = None,
    image_gid: int | None = None,
    init: str = INIT,
    server_cmd: Sequence[str] = SERVER_CMD,
) -> dict[str, Any]:
    """KubeSpawner (7.1) trait values that run the pod as ``identity``, without root.

    KubeSpawner puts ``cmd + get_args()`` in the container's ``args``, which Kubernetes hands to the
    image's ``ENTRYPOINT``. So that the init really is the entrypoint (an image's own entrypoint may
    expect root), the init goes in the container's ``command`` (``extra_container_config``) and
    ``cmd`` is the server: the container runs ``init [--image-user=NAME] -- jupyterhub-singleuser
    ARGS...``. ``image_uid``/``image_gid`` (the image's own user, e.g. 1000/100 for ``jovyan``)
    are only checked here: Kubernetes cannot map the real uid onto them as podman's ``keep-id``
    does, so the pod runs as the real uid and the init renames ``image_user`` to the real name."""
    _image_id(image_uid, "image_uid")
    _image_id(image_gid, "image_gid")
    if not init or not server_cmd or not all(isinstance(a, str) and a for a in server_cmd):
        raise ValueError("the init and the server command must be non-empty strings")
    entrypoint = [init]
    if image_user:
        entrypoint.append(f"--image-user={image_user}")
    entrypoint.append("--")
    seccomp = {"type": "RuntimeDefault"}
    supplementary = [g.gid for g in identity.groups]
    pod_context: dict[str, Any] = {
        "runAsNonRoot": True,
        "runAsUser": identity.uid,
        "runAsGroup": identity.gid,
        "fsGroup": identity.gid,
        "seccompProfile": dict(seccomp),
    }
    if supplementary:
        pod_context["supplementalGroups"] = list(supplementary)
    return {
        "uid": identity.uid,
        "gid": identity.gid,
        "supplemental_gids": list(supplementary),
        "fs_gid": identity.gid,
        "allow_privilege_escalation": False,
        "privileged": False,
        "container_security_context": {
            "runAsNonRoot": True,
            "runAsUser": identity.uid,
            "runAsGroup": identity.gid,
            "allowPrivilegeEscalation": False,
            "capabilities": {"drop": ["ALL"]},
            "seccompProfile": dict(seccomp),
        },
        "pod_security_context": pod_context,
        "cmd": list(server_cmd),
        "extra_container_config": {"command": entrypoint},
        "environment": {
            "NB_USER": identity.username,
            "NB_UID": str(identity.uid),
            "NB_GID": str(identity.gid),
            "HOME": _template_safe(identity.home),
            # the init names the real user from it (no secret in it)
            IDENTITY_ENV: _template_safe(identity.to_env()),
        },
    }


def apply_settings(spawner: Any, settings: Mapping[str, Any]) -> None:
    """Set :func:`kube_identity_settings`' values on ``spawner`` (only names of
    :data:`IDENTITY_TRAITS`; ``environment`` and ``extra_container_config`` are merged)."""
    for name, value in settings.items():
        if name not in IDENTITY_TRAITS:
            raise ValueError(f"{name!r} is not a trait the identity sets")
        if name in MERGED_TRAITS:
            value = {**(getattr(spawner, name, None) or {}), **value}
        setattr(spawner, name, value)


def identity_pre_spawn_hook(
    source: Any = "nss",
    *,
    image_user: str | None = "jovyan",
    image_uid: int | None = 1000,
    image_gid: int | None = 100,
    init: str = INIT,
    server_cmd: Sequence[str] = SERVER_CMD,
) -> Callable[[Any], Awaitable[None]]:
    """A ``c.KubeSpawner.pre_spawn_hook``: resolves the identity from ``source`` (``"nss"``,
    ``"auth_state"`` or a callable, as ``identity_source`` of the batch spawners), logs it and sets
    the spawner's traits from :func:`kube_identity_settings`. Raises
    :class:`~jupyterhub_hpc.identity.IdentityError` (the spawn fails) when there is no usable
    identity, e.g. root."""
    # checked when the configuration loads, not at the first spawn
    kube_identity_settings(
        UserIdentity.make(username="check", uid=1, group={"name": "check", "gid": 1}, home="/"),
        image_user=image_user,
        image_uid=image_uid,
        image_gid=image_gid,
        init=init,
        server_cmd=server_cmd,
    )

    async def pre_spawn_hook(spawner: Any) -> None:
        identity = await resolve_identity(source, spawner)
        spawner.log.info("starting as %s", identity.describe())
        settings = kube_identity_settings(
            identity,
            image_user=image_user,
            image_uid=image_uid,
            image_gid=image_gid,
            init=init,
            server_cmd=server_cmd,
        )
        apply_settings(spawner, settings)

    return pre_spawn_hook


# -- the policy ----------------------------------------------------------------------------------
def _mapping(value: Any) -> Mapping[str, Any]:
    return value if isinstance(value, Mapping) else {}


def _effective(key: str, container: Mapping[str, Any], pod: Mapping[str, Any]) -> Any:
    """A field set on the container, else on the pod (Kubernetes' precedence)."""
    return container[key] if container.get(key) is not None else pod.get(key)


def _container_problems(where: str, sc: Mapping[str, Any], psc: Mapping[str, Any]) -> list[str]:
    problems: list[str] = []
    uid = _effective("runAsUser", sc, psc)
    if uid is None:
        problems.append(f"{where}: no runAsUser (pod or container): it runs as the image's user, maybe root")
    elif uid == 0:
        problems.append(f"{where}: runAsUser is 0 (root)")
    gid = _effective("runAsGroup", sc, psc)
    if gid is None:
        problems.append(f"{where}: no runAsGroup (pod or container): the primary group may be 0")
    elif gid == 0:
        problems.append(f"{where}: runAsGroup is 0 (root's group)")
    if _effective("runAsNonRoot", sc, psc) is not True:
        problems.append(f"{where}: runAsNonRoot is not true")
    if sc.get("privileged") is True:
        problems.append(f"{where}: privileged is true")
    if sc.get("allowPrivilegeEscalation") is not False:
        problems.append(f"{where}: allowPrivilegeEscalation is not false (setuid binaries regain privileges)")
    caps = _mapping(sc.get("capabilities"))
    if "ALL" not in [str(c).upper() for c in caps.get("drop") or ()]:
        problems.append(f"{where}: capabilities do not drop ALL")
    if caps.get("add"):
        problems.append(f"{where}: capabilities add {list(caps['add'])}")
    seccomp = _mapping(_effective("seccompProfile", sc, psc))
    if seccomp.get("type") not in SECCOMP_CONFINED:
        found = seccomp.get("type") or "none"
        problems.append(f"{where}: seccomp profile is {found}, not RuntimeDefault or Localhost")
    if sc.get("procMount") not in (None, "Default"):
        problems.append(f"{where}: procMount is {sc['procMount']}")
    return problems


def check_pod_policy(pod: Mapping[str, Any]) -> list[str]:
    """Every reason ``pod`` (a Pod manifest with camelCase keys, as
    ``ApiClient.sanitize_for_serialization`` gives it) could run as root or regain privileges;
    empty when there is none. Each container, init container and ephemeral container is checked
    with the pod's ``securityContext`` as its default, as Kubernetes does."""
    spec = _mapping(pod.get("spec"))
    psc = _mapping(spec.get("securityContext"))
    problems: list[str] = []
    for field in ("hostPID", "hostIPC", "hostNetwork"):
        if spec.get(field) is True:
            problems.append(f"pod: {field} is true")
    if psc.get("runAsNonRoot") is not True:
        problems.append("pod: runAsNonRoot is not true")
    if psc.get("runAsUser") == 0:
        problems.append("pod: runAsUser is 0 (root)")
    if psc.get("runAsGroup") == 0:
        problems.append("pod: runAsGroup is 0 (root's group)")
    if 0 in (psc.get("supplementalGroups") or ()):
        problems.append("pod: supplementalGroups contains 0 (root's group)")
    if psc.get("fsGroup") == 0:
        problems.append("pod: fsGroup is 0 (root's group)")
    containers = [
        (kind, _mapping(c))
        for kind in ("containers", "initContainers", "ephemeralContainers")
        for c in spec.get(kind) or ()
    ]
    if not containers:
        problems.append("pod: no containers")
    for kind, container in containers:
        where = f"{kind[:-1]} {container.get('name', '?')!r}"
        problems.extend(_container_problems(where, _mapping(container.get("securityContext")), psc))
    return problems


async def _serialize(pod: Any) -> dict[str, Any]:
    """``pod`` (a kubernetes_asyncio ``V1Pod``, as KubeSpawner 7.1 builds it, or a dict) as a
    manifest dict with camelCase keys."""
    if isinstance(pod, Mapping):
        return dict(pod)
    from kubernetes_asyncio.client import ApiClient

    async with ApiClient() as api:  # no request is made: the client only serializes
        found: dict[str, Any] = api.sanitize_for_serialization(pod)
    return found


async def policy_modify_pod_hook(spawner: Any, pod: Any) -> Any:
    """A ``c.KubeSpawner.modify_pod_hook``: the pod unchanged when :func:`check_pod_policy` finds
    nothing, else :class:`PodPolicyError` listing every problem (KubeSpawner then fails the spawn
    and the pod is never created)."""
    problems = check_pod_policy(await _serialize(pod))
    if problems:
        error = PodPolicyError(problems)
        spawner.log.error("%s", error)
        raise error
    return pod


async def build_pod_manifest(identity: UserIdentity, **kubespawner_traits: Any) -> dict[str, Any]:
    """The pod manifest (a dict) the real KubeSpawner builds for ``identity`` with the settings of
    :func:`identity_pre_spawn_hook` (keywords ``image_user``, ``image_uid``, ``image_gid``,
    ``init``, ``server_cmd`` go to :func:`kube_identity_settings`, every other one is a KubeSpawner
    trait). Makes no API call, but KubeSpawner loads a kubeconfig when it is built: point
    ``KUBECONFIG`` at one (any address). The manifest can be run by ``podman kube play
    --userns=keep-id``."""
    from kubespawner import KubeSpawner

    settings_args = {
        key: kubespawner_traits.pop(key)
        for key in ("image_user", "image_uid", "image_gid", "init", "server_cmd")
        if key in kubespawner_traits
    }
    settings_args.setdefault("image_user", "jovyan")
    user = _User(identity.username)
    spawner = KubeSpawner(_mock=True, user=user, **kubespawner_traits)
    apply_settings(spawner, kube_identity_settings(identity, **settings_args))
    pod = await spawner.get_pod_manifest()
    return await _serialize(pod)


class _User:
    """The fields of a JupyterHub user KubeSpawner reads to build a pod."""

    def __init__(self, name: str) -> None:
        self.name = name
        self.id = 1
        self.url = f"/user/{name}/"
        self.groups: list[Any] = []

    async def get_auth_state(self) -> None:
        return None
