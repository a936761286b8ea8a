"""KubeSpawner without root (issue 17): the identity's trait values, the real KubeSpawner 7.1 pod
manifest built from them (validated offline by kubernetes-validate, strict), and the pod policy.

No Kubernetes API server is involved: the kubeconfig names an address nothing listens on, and any
request the client would make fails the test."""

from __future__ import annotations

import copy
import json
import logging
import subprocess
import sys
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import pytest

from jupyterhub_hpc.containers import kube
from jupyterhub_hpc.containers.kube import (
    INIT,
    PodPolicyError,
    check_pod_policy,
    identity_pre_spawn_hook,
    kube_identity_settings,
    policy_modify_pod_hook,
)
from jupyterhub_hpc.identity import IDENTITY_ENV, IdentityError, UserIdentity

SRC = Path(__file__).resolve().parents[2] / "src"
ALICE = UserIdentity.make(
    username="alice",
    uid=2001,
    group={"name": "alice", "gid": 2001},
    groups=[{"name": "proj-astro", "gid": 3001}],
    home="/home/alice",
)
#: the argv the container runs: the init, then the server
ARGV = [INIT, "--image-user=jovyan", "--", "jupyterhub-singleuser"]


# -- the pure settings ---------------------------------------------------------------------------
def test_the_settings_come_from_the_identity() -> None:
    settings = kube_identity_settings(ALICE, image_user="jovyan", image_uid=1000, image_gid=100)
    assert settings == {
        "uid": 2001,
        "gid": 2001,
        "supplemental_gids": [3001],
        "fs_gid": 2001,
        "allow_privilege_escalation": False,
        "privileged": False,
        "container_security_context": {
            "runAsNonRoot": True,
            "runAsUser": 2001,
            "runAsGroup": 2001,
            "allowPrivilegeEscalation": False,
            "capabilities": {"drop": ["ALL"]},
            "seccompProfile": {"type": "RuntimeDefault"},
        },
        "pod_security_context": {
            "runAsNonRoot": True,
            "runAsUser": 2001,
            "runAsGroup": 2001,
            "fsGroup": 2001,
            "supplementalGroups": [3001],
            "seccompProfile": {"type": "RuntimeDefault"},
        },
        "cmd": ["jupyterhub-singleuser"],
        "extra_container_config": {"command": [INIT, "--image-user=jovyan", "--"]},
        "environment": {
            "NB_USER": "alice",
            "NB_UID": "2001",
            "NB_GID": "2001",
            "HOME": "/home/alice",
            # braces doubled: KubeSpawner formats environment values
            IDENTITY_ENV: ALICE.to_env().replace("{", "{{").replace("}", "}}"),
        },
    }
    assert set(settings) <= kube.IDENTITY_TRAITS


def test_the_settings_without_an_image_user_or_groups() -> None:
    bob = UserIdentity.make(username="bob", uid=2002, group={"name": "staff", "gid": 50}, home="/h/{bob}")
    settings = kube_identity_settings(bob, image_user=None, init="/opt/site/bin/jupyterhub-hpc-init")
    assert settings["extra_container_config"] == {"command": ["/opt/site/bin/jupyterhub-hpc-init", "--"]}
    assert settings["supplemental_gids"] == []
    assert "supplementalGroups" not in settings["pod_security_context"]
    assert settings["fs_gid"] == 50 and settings["pod_security_context"]["runAsGroup"] == 50
    # KubeSpawner formats environment values with the user's properties: the braces stay literal
    assert settings["environment"]["HOME"] == "/h/{{bob}}"


@pytest.mark.parametrize(
    "bad",
    [{"image_uid": 0}, {"image_gid": 0}, {"image_uid": True}, {"server_cmd": []}, {"init": ""}],
)
def test_bad_image_settings_are_refused(bad: dict[str, Any]) -> None:
    with pytest.raises(ValueError):
        kube_identity_settings(ALICE, **{"image_user": "jovyan", **bad})
    with pytest.raises(ValueError):
        identity_pre_spawn_hook("nss", **bad)  # when the configuration loads


def test_the_module_imports_without_kubespawner() -> None:
    code = (
        "import sys\n"
        "for name in ('kubespawner', 'kubernetes_asyncio', 'kubernetes', 'kubernetes_validate'):\n"
        "    sys.modules[name] = None\n"
        "import jupyterhub_hpc.containers.kube as k\n"
        "print(k.check_pod_policy({}))\n"
    )
    done = subprocess.run(
        [sys.executable, "-c", code], env={"PYTHONPATH": str(SRC)}, capture_output=True, text=True
    )
    assert done.returncode == 0, done.stderr
    assert "no containers" in done.stdout


# -- the policy on manifests written here --------------------------------------------------------
GOOD_CONTAINER_CONTEXT = {
    "runAsNonRoot": True,
    "runAsUser": 2001,
    "runAsGroup": 2001,
    "allowPrivilegeEscalation": False,
    "capabilities": {"drop": ["ALL"]},
    "seccompProfile": {"type": "RuntimeDefault"},
}
GOOD = {
    "apiVersion": "v1",
    "kind": "Pod",
    "metadata": {"name": "jupyter-alice"},
    "spec": {
        "securityContext": {
            "runAsNonRoot": True,
            "runAsUser": 2001,
            "runAsGroup": 2001,
            "fsGroup": 2001,
            "supplementalGroups": [3001],
            "seccompProfile": {"type": "RuntimeDefault"},
        },
        "containers": [
            {"name": "notebook", "image": "x", "securityContext": copy.deepcopy(GOOD_CONTAINER_CONTEXT)}
        ],
        "initContainers": [
            {"name": "prep", "image": "x", "securityContext": copy.deepcopy(GOOD_CONTAINER_CONTEXT)}
        ],
    },
}


def _set(manifest: dict[str, Any], path: str, value: Any) -> None:
    """Set (or with ``...`` delete) the field at a dotted path; digits index lists."""
    *parents, last = path.split(".")
    node: Any = manifest
    for part in parents:
        node = node[int(part)] if part.isdigit() else node[part]
    if value is ...:
        del node[last]
    else:
        node[last] = value


C = "spec.containers.0.securityContext"
P = "spec.securityContext"
VIOLATIONS = [
    # (changes, the problems found: each a substring of one problem, as many as found)
    ({f"{C}.runAsUser": 0}, ["container 'notebook': runAsUser is 0"]),
    ({f"{C}.runAsUser": ..., f"{P}.runAsUser": 0}, ["pod: runAsUser is 0", "'notebook': runAsUser is 0"]),
    ({f"{C}.runAsUser": ..., f"{P}.runAsUser": ...}, ["'notebook': no runAsUser"]),
    ({"spec.initContainers.0.securityContext.runAsUser": 0}, ["initContainer 'prep': runAsUser is 0"]),
    ({f"{C}.runAsNonRoot": False}, ["'notebook': runAsNonRoot is not true"]),
    ({f"{P}.runAsNonRoot": ...}, ["pod: runAsNonRoot is not true"]),
    ({f"{C}.privileged": True}, ["'notebook': privileged is true"]),
    ({f"{C}.allowPrivilegeEscalation": True}, ["'notebook': allowPrivilegeEscalation is not false"]),
    ({f"{C}.allowPrivilegeEscalation": ...}, ["'notebook': allowPrivilegeEscalation is not false"]),
    ({f"{C}.capabilities": ...}, ["'notebook': capabilities do not drop ALL"]),
    ({f"{C}.capabilities": {"drop": ["NET_RAW"]}}, ["'notebook': capabilities do not drop ALL"]),
    ({f"{C}.capabilities": {"drop": ["ALL"], "add": ["SYS_ADMIN"]}}, ["capabilities add ['SYS_ADMIN']"]),
    ({"spec.hostPID": True}, ["pod: hostPID is true"]),
    ({"spec.hostIPC": True}, ["pod: hostIPC is true"]),
    ({"spec.hostNetwork": True}, ["pod: hostNetwork is true"]),
    ({f"{C}.seccompProfile": {"type": "Unconfined"}}, ["'notebook': seccomp profile is Unconfined"]),
    ({f"{C}.seccompProfile": ..., f"{P}.seccompProfile": ...}, ["'notebook': seccomp profile is none"]),
    ({f"{C}.runAsGroup": 0}, ["'notebook': runAsGroup is 0"]),
    ({f"{C}.runAsGroup": ..., f"{P}.runAsGroup": 0}, ["pod: runAsGroup is 0", "'notebook': runAsGroup is 0"]),
    ({f"{C}.runAsGroup": ..., f"{P}.runAsGroup": ...}, ["'notebook': no runAsGroup"]),
    ({f"{P}.supplementalGroups": [3001, 0]}, ["pod: supplementalGroups contains 0"]),
    ({f"{P}.fsGroup": 0}, ["pod: fsGroup is 0"]),
    ({f"{C}.procMount": "Unmasked"}, ["'notebook': procMount is Unmasked"]),
]


def test_the_good_manifest_passes() -> None:
    assert check_pod_policy(GOOD) == []
    # the pod's defaults stand for a container that sets nothing itself, except what is container-only
    inherited = copy.deepcopy(GOOD)
    inherited["spec"]["containers"][0]["securityContext"] = {
        "allowPrivilegeEscalation": False,
        "capabilities": {"drop": ["all"]},
    }
    assert check_pod_policy(inherited) == []
    localhost = copy.deepcopy(GOOD)
    _set(localhost, f"{C}.seccompProfile", {"type": "Localhost", "localhostProfile": "jupyter.json"})
    assert check_pod_policy(localhost) == []


@pytest.mark.parametrize(("changes", "expected"), VIOLATIONS, ids=[str(v[0]) for v in VIOLATIONS])
def test_each_violation_alone_is_found(changes: dict[str, Any], expected: list[str]) -> None:
    manifest = copy.deepcopy(GOOD)
    for path, value in changes.items():
        _set(manifest, path, value)
    problems = check_pod_policy(manifest)
    assert len(problems) == len(expected), problems
    for text in expected:
        assert any(text in p for p in problems), (text, problems)


async def test_the_modify_pod_hook_refuses_a_privileged_manifest() -> None:
    spawner = SimpleNamespace(log=logging.getLogger("test_kube"))
    assert await policy_modify_pod_hook(spawner, GOOD) is GOOD
    bad = copy.deepcopy(GOOD)
    _set(bad, f"{C}.privileged", True)
    with pytest.raises(PodPolicyError, match="'notebook': privileged is true") as caught:
        await policy_modify_pod_hook(spawner, bad)
    assert caught.value.problems == ["container 'notebook': privileged is true"]


# -- the real KubeSpawner ------------------------------------------------------------------------
@pytest.fixture
def kubespawner(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Any:
    """KubeSpawner with a kubeconfig naming an address nothing listens on (https://127.0.0.1:1);
    every request the Kubernetes client could send fails the test."""
    import kubespawner as ks  # the test extra has it: missing, the test fails
    from kubernetes_asyncio.client import api_client, rest
    from kubernetes_asyncio.config import kube_config

    path = tmp_path / "kubeconfig"
    path.write_text(
        json.dumps(
            {
                "apiVersion": "v1",
                "kind": "Config",
                "clusters": [{"name": "none", "cluster": {"server": "https://127.0.0.1:1"}}],
                "users": [{"name": "none", "user": {"token": "none"}}],
                "contexts": [{"name": "none", "context": {"cluster": "none", "user": "none"}}],
                "current-context": "none",
            }
        )
    )
    monkeypatch.setenv("KUBECONFIG", str(path))
    # kubernetes_asyncio read $KUBECONFIG when it was imported
    monkeypatch.setattr(kube_config, "KUBE_CONFIG_DEFAULT_LOCATION", str(path))

    def no_request(*args: Any, **kwargs: Any) -> Any:
        raise AssertionError("a Kubernetes API request was attempted")

    monkeypatch.setattr(api_client.ApiClient, "call_api", no_request)
    monkeypatch.setattr(rest.RESTClientObject, "request", no_request)
    return ks.KubeSpawner


class HubUser(SimpleNamespace):
    async def get_auth_state(self) -> Any:
        return self.auth_state


def _hub_user(name: str = "alice", auth_state: Any = None) -> HubUser:
    return HubUser(name=name, id=7, url=f"/user/{name}/", groups=[], auth_state=auth_state)


async def _serialize(pod: Any) -> dict[str, Any]:
    """The V1Pod as a manifest dict (``ApiClient.sanitize_for_serialization``, no request)."""
    return await kube._serialize(pod)


def _validate(manifest: dict[str, Any]) -> None:
    import kubernetes_validate  # the test extra has it

    version = kubernetes_validate.utils.latest_version()
    assert version.startswith("1.37"), version  # the newest schemas kubernetes-validate 1.37 ships
    kubernetes_validate.validate(manifest, version, strict=True)


def _argv(manifest: dict[str, Any]) -> list[str]:
    container = manifest["spec"]["containers"][0]
    return [*container.get("command", []), *container.get("args", [])]


async def test_the_real_kubespawner_builds_the_pod_from_the_hook(kubespawner: Any) -> None:
    logs: list[str] = []
    log = logging.getLogger("test_kube.hook")
    log.addHandler(handler := logging.Handler())
    handler.emit = lambda record: logs.append(record.getMessage())  # type: ignore[method-assign]
    log.setLevel(logging.INFO)
    identity = {"identity": {"uid": 2001, "gid": 2001, "groups": [{"name": "proj-astro", "gid": 3001}]}}
    identity["identity"]["home"] = "/home/alice"  # type: ignore[index]
    spawner = kubespawner(
        _mock=True,
        user=_hub_user(auth_state=identity),
        image="localhost/scipy-notebook:2026-11",
        environment={"SITE": "x"},
        extra_container_config={"workingDir": "/home/alice"},
    )
    spawner.log = log
    await identity_pre_spawn_hook("auth_state")(spawner)
    assert logs == ["starting as alice (uid 2001, gid 2001 alice), groups proj-astro (3001)"]
    assert spawner.environment["SITE"] == "x" and spawner.environment["NB_USER"] == "alice"

    pod = await spawner.get_pod_manifest()
    assert await policy_modify_pod_hook(spawner, pod) is pod  # unchanged
    manifest = await _serialize(pod)
    _validate(manifest)
    assert check_pod_policy(manifest) == []

    psc = manifest["spec"]["securityContext"]
    assert psc["runAsUser"] == 2001 and psc["runAsGroup"] == 2001 and psc["runAsNonRoot"] is True
    assert psc["supplementalGroups"] == [3001] and psc["fsGroup"] == 2001
    assert psc["seccompProfile"] == {"type": "RuntimeDefault"}
    container = manifest["spec"]["containers"][0]
    csc = container["securityContext"]
    assert csc["runAsUser"] == 2001 and csc["runAsNonRoot"] is True
    assert csc["allowPrivilegeEscalation"] is False and "privileged" not in csc
    assert csc["capabilities"] == {"drop": ["ALL"]} and csc["seccompProfile"] == {"type": "RuntimeDefault"}
    assert container["workingDir"] == "/home/alice"  # the admin's extra_container_config is kept
    assert _argv(manifest)[:4] == ARGV  # the init is the entrypoint, the server after it
    env = {e["name"]: e.get("value") for e in container["env"]}
    assert env["NB_USER"] == "alice" and env["NB_UID"] == "2001" and env["NB_GID"] == "2001"
    assert env["HOME"] == "/home/alice" and env["SITE"] == "x"

    # the hook runs again at the next start: the same pod, nothing wrapped twice
    await identity_pre_spawn_hook("auth_state")(spawner)
    assert await _serialize(await spawner.get_pod_manifest()) == manifest


async def test_build_pod_manifest_is_the_hooks_pod(kubespawner: Any) -> None:
    manifest = await kube.build_pod_manifest(ALICE, image="localhost/scipy-notebook:2026-11")
    _validate(manifest)
    assert check_pod_policy(manifest) == []
    assert _argv(manifest) == ARGV
    assert manifest["spec"]["securityContext"]["supplementalGroups"] == [3001]


async def test_the_default_kubespawner_pod_is_refused(kubespawner: Any) -> None:
    spawner = kubespawner(_mock=True, user=_hub_user(), image="localhost/scipy-notebook:2026-11")
    pod = await spawner.get_pod_manifest()
    manifest = await _serialize(pod)
    _validate(manifest)  # a valid pod, but one that may run as root
    problems = check_pod_policy(manifest)
    for text in (
        "pod: runAsNonRoot is not true",
        "'notebook': no runAsUser",
        "'notebook': no runAsGroup",
        "'notebook': capabilities do not drop ALL",
        "'notebook': seccomp profile is none",
    ):
        assert any(text in p for p in problems), (text, problems)
    with pytest.raises(PodPolicyError, match="no runAsUser"):
        await policy_modify_pod_hook(spawner, pod)


async def test_the_modify_pod_hook_refuses_a_privileged_v1pod(kubespawner: Any) -> None:
    spawner = kubespawner(_mock=True, user=_hub_user(), image="localhost/scipy-notebook:2026-11")
    kube.apply_settings(spawner, kube_identity_settings(ALICE, image_user="jovyan"))
    spawner.privileged = True
    pod = await spawner.get_pod_manifest()
    with pytest.raises(PodPolicyError, match="'notebook': privileged is true") as caught:
        await policy_modify_pod_hook(spawner, pod)
    assert caught.value.problems == ["container 'notebook': privileged is true"]


async def test_the_hook_refuses_root_and_sets_nothing(kubespawner: Any) -> None:
    spawner = kubespawner(_mock=True, user=_hub_user("root"), image="x")
    hook = identity_pre_spawn_hook(lambda sp: {**ALICE.model_dump(), "uid": 0})
    with pytest.raises(IdentityError, match="uid"):
        await hook(spawner)
    assert spawner.uid is None and spawner.cmd is None


def test_apply_settings_sets_only_identity_traits() -> None:
    target = SimpleNamespace(environment={"A": "1"})
    kube.apply_settings(target, {"uid": 2001, "environment": {"B": "2"}})
    assert target.uid == 2001 and target.environment == {"A": "1", "B": "2"}
    with pytest.raises(ValueError, match="'image'"):
        kube.apply_settings(target, {"image": "evil"})
