"""The user's server in a container without uid 0 (issue 17), live: a real JupyterHub on the real
Slurm starts hpcuser2's server in the image of scripts/containers.sh (Debian 12, debootstrapped
here), chosen through a profile, once with Charliecloud and once with rootless podman (crun),
the image's ``jovyan`` mapped onto the real user. A kernel in each reports who it is; the host
says who owns what it wrote; nothing of the container outlives the job.

The image has no JupyterHub: the site environment (this venv) is bound read-only and runs the
server and the init (``jupyterhub-hpc-init``) inside.
"""

from __future__ import annotations

import grp
import json
import os
import pwd
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import requests

from e2e.test_kernel_jobs_live import kernel_cell
from hub import Hub
from profiles.hubs import FAST, cancel, make_hub, options_body, stop_all, wait_ready

pytestmark = [pytest.mark.slurm, pytest.mark.hub]

USER = "hpcuser2"
SCRIPT = Path(__file__).resolve().parents[2] / "scripts" / "containers.sh"
SITE_ENV = str(Path(sys.executable).parent.parent)
#: what the kernel reports, as JSON on one line
PROBE = r"""
import grp, json, os, pwd, subprocess
status = dict(line.split(":\t", 1) for line in open("/proc/self/status").read().splitlines() if ":\t" in line)
def name_of_group(gid):
    try:
        return grp.getgrgid(gid).gr_name
    except KeyError:
        return str(gid)
written = os.path.join(os.environ["HOME"], "written-in-container-%s" % os.environ["JUPYTERHUB_HPC_TEST_TAG"])
open(written, "w").write("x")
try:
    project = open(os.environ["JUPYTERHUB_HPC_TEST_PROJECT"]).read().strip()
except OSError as exc:
    project = "ERROR " + str(exc)
try:
    open("/etc/jupyterhub-hpc-probe", "w").close()
    etc_writable = True
except OSError:
    etc_writable = False
print(json.dumps({
    "whoami": subprocess.run(["whoami"], capture_output=True, text=True).stdout.strip(),
    "getent": subprocess.run(
        ["getent", "passwd", os.environ["USER"]], capture_output=True, text=True
    ).stdout.strip(),
    "id": subprocess.run(["id"], capture_output=True, text=True).stdout.strip(),
    "rootid": subprocess.run(["/usr/local/bin/rootid", "-u"], capture_output=True, text=True).stdout.strip(),
    "pw_name": pwd.getpwuid(os.getuid()).pw_name, "uid": os.getuid(), "gid": os.getgid(),
    "group": name_of_group(os.getgid()), "groups": os.getgroups(), "user": os.environ["USER"],
    "home": os.environ["HOME"], "nonewprivs": status["NoNewPrivs"].strip(),
    "capeff": status["CapEff"].strip(),
    "project": project, "written": written, "etc_writable": etc_writable,
    "in_image": os.path.exists("/.jupyterhub-hpc-image"), "pid": os.getpid(),
}))
"""


def facts() -> dict[str, str]:
    out = subprocess.run([str(SCRIPT), "env"], capture_output=True, text=True, check=True).stdout
    return dict(line.split("=", 1) for line in out.splitlines() if "=" in line)


@pytest.fixture(scope="module")
def hub(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Hub]:
    subprocess.run([str(SCRIPT), "setup"], check=True, timeout=900, env={**os.environ, "SITE_ENV": SITE_ENV})
    known = facts()
    images = [
        {"name": "deb12", "kind": "directory", "location": known["IMAGE"]},
        {
            "name": "deb12-podman",
            "kind": "podman",
            "location": known["PODMAN_REF"],
            "image_user": "jovyan",
            "image_uid": 1000,
            "image_gid": 100,
        },
    ]
    project = {"source": str(Path(known["PROJECT_FILE"]).parent)}
    hooks = {"source": known["HOOK_DIR"]}
    profiles = [
        {
            "display_name": "Debian 12 (Charliecloud)",
            "slug": "charliecloud",
            "default": True,
            "container": "deb12",
            "spawner_override": {
                "container_runtime": {
                    "runtime": "charliecloud",
                    "site_env": SITE_ENV,
                    "binds": [project, hooks],
                    "hook_dir": known["HOOK_DIR"],
                },
            },
        },
        {
            "display_name": "Debian 12 as jovyan (podman)",
            "slug": "podman",
            "spawner_override": {
                "container_image": "deb12-podman",
                "container_runtime": {
                    "runtime": "podman",
                    "oci_runtime": "crun",
                    "site_env": SITE_ENV,
                    "binds": [project, hooks],
                    "hook_dir": known["HOOK_DIR"],
                    "nss_wrapper": "/usr/lib/x86_64-linux-gnu/libnss_wrapper.so",
                },
            },
        },
        {
            "display_name": "Your own image (Charliecloud)",
            "slug": "own",
            "spawner_override": {
                "container_runtime": {"runtime": "charliecloud", "site_env": SITE_ENV, "binds": [project]},
            },
            "profile_options": {
                "image": {
                    "display_name": "Image",
                    "choices": {
                        "deb12": {
                            "display_name": "Debian 12",
                            "spawner_override": {"container_image": "deb12"},
                        }
                    },
                    "unlisted_choice": {
                        "enabled": True,
                        "display_name": "Image directory",
                        "validation_regex": "/[^\\s]+",
                        "spawner_override": {"container_image_path": "{value}"},
                    },
                }
            },
        },
    ]
    # users may name their own image directories, here: the images' cache directory
    patterns = [{"pattern": str(Path(known["IMAGE"]).parent) + "/*", "kind": "directory"}]
    config = {
        "SlurmSpawner": {
            "container_images": images,
            "container_image_patterns": patterns,
            "profile_list": profiles,
        }
    }
    root: Path = tmp_path_factory.mktemp("containers")
    hub = make_hub(root, "slurm", config, **FAST)
    hub.start()
    try:
        hub.ensure_user(USER)
        yield hub
    finally:
        cancel(stop_all(hub, [USER]))
        hub.kill_all()


def container_processes(user: str) -> list[str]:
    """What a container runtime leaves running as ``user``: ch-run, podman, conmon, its pause process."""
    listing = subprocess.run(
        ["ps", "-u", user, "-o", "pid=,stat=,args="], capture_output=True, text=True
    ).stdout
    names = ("ch-run", "podman", "conmon", "catatonit", "jupyterhub-hpc-init", "slirp4netns")
    # a zombie runs nothing (whether it is reaped is up to the machine's PID 1)
    running = [line.split(None, 2) for line in listing.splitlines() if len(line.split(None, 2)) == 3]
    return [" ".join(f) for f in running if not f[1].startswith("Z") and any(n in f[2] for n in names)]


def host_groups(pid: int) -> set[int]:
    """The supplementary gids of ``pid`` as the host sees them."""
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("Groups:"):
            return {int(g) for g in line.split()[1:]}
    return set()


def start_and_probe(
    hub: Hub, profile: str, more: dict[str, str] | None = None
) -> tuple[dict[str, Any], list[str]]:
    """Start the user's server with ``profile`` (and ``more`` options), reading the spawn progress
    as the spawn page does; run the probe in a kernel of it; (facts, the progress messages)."""
    tag = profile
    env_note = {"JUPYTERHUB_HPC_TEST_TAG": tag, "JUPYTERHUB_HPC_TEST_PROJECT": facts()["PROJECT_FILE"]}
    events = hub.spawn_with_progress(USER, options_body({"profile": profile, **(more or {})}), timeout=180)
    assert events and events[-1].get("ready"), events
    wait_ready(hub, USER, timeout=60)
    token = hub.user_token(USER)
    headers = {"Authorization": f"token {token}"}
    base = f"{hub.url}/user/{USER}/api/kernels"
    made = requests.post(base, headers=headers, json={"name": "python3"}, timeout=60)
    assert made.status_code == 201, made.text
    channels = f"{base}/{made.json()['id']}/channels".replace("http://", "ws://", 1)
    code = f"import os\nos.environ.update({env_note!r})\n" + PROBE
    out = kernel_cell(channels, headers, USER, code, timeout=90)
    line = next((ln for ln in out.splitlines() if ln.startswith("{")), None)
    assert line is not None, out
    return json.loads(line), [str(e.get("message", "")) for e in events]


def assert_hooks_shown(messages: list[str], hello: str) -> None:
    """The start hooks' lines are in the spawn progress, before Jupyter starts, and the job's
    state is said once although they come in between."""
    project = f"Start hook 20-project: project: project data of {facts()['PROJECT_GROUP']}"
    assert f"Start hook 10-hello: {hello}" in messages, messages
    assert project in messages, messages
    assert messages.index(project) < messages.index("Starting Jupyter"), messages
    assert len([m for m in messages if m.startswith("Running on node")]) == 1, messages


def assert_stopped_and_clean(hub: Hub) -> None:
    jobs = stop_all(hub, [USER])
    deadline = time.monotonic() + 30
    while container_processes(USER):
        assert time.monotonic() < deadline, f"left after the job: {container_processes(USER)}"
        time.sleep(0.5)
    cancel(jobs)


def test_charliecloud_runs_the_server_as_the_user_without_privileges(hub: Hub) -> None:
    me = pwd.getpwnam(USER)
    project = grp.getgrnam(facts()["PROJECT_GROUP"])
    seen, messages = start_and_probe(hub, "charliecloud")
    try:
        assert seen["in_image"] is True, seen
        # the real identity, names from the host (ch-run binds its passwd and group)
        assert (seen["uid"], seen["gid"], seen["pw_name"], seen["whoami"]) == (
            me.pw_uid,
            me.pw_gid,
            USER,
            USER,
        )
        assert seen["getent"].startswith(f"{USER}:x:{me.pw_uid}:{me.pw_gid}:")
        # the project group: kept (unmapped inside, the host sees it) and its 0640 file readable
        assert seen["project"] == f"project data of {project.gr_name}"
        # ch-run has no pid namespace: the kernel's pid is the host's, which sees the group itself
        assert project.gr_gid in host_groups(int(seen["pid"]))
        assert seen["nonewprivs"] == "1" and int(seen["capeff"], 16) == 0
        assert seen["rootid"] != "0" and seen["etc_writable"] is False
        written = Path(seen["written"])
        assert written.stat().st_uid == me.pw_uid and written.stat().st_gid == me.pw_gid
        starting = next(m for m in messages if m.startswith("Starting as"))
        assert starting.startswith(f"Starting as {USER} (uid {me.pw_uid}") and "groups" in starting
        assert "In container image deb12 (charliecloud)" in messages
        assert_hooks_shown(messages, f"hello {USER} (uid {me.pw_uid}), home {me.pw_dir}")
    finally:
        assert_stopped_and_clean(hub)


def test_podman_maps_the_real_user_onto_jovyan_and_leaves_nothing(hub: Hub) -> None:
    me = pwd.getpwnam(USER)
    project = grp.getgrnam(facts()["PROJECT_GROUP"])
    seen, messages = start_and_probe(hub, "podman")
    try:
        assert seen["in_image"] is True, seen
        # inside: the image user's ids under the real name (the init's nss_wrapper files)
        assert (seen["uid"], seen["gid"]) == (1000, 100)
        assert (seen["pw_name"], seen["whoami"], seen["user"]) == (USER, USER, USER)
        assert seen["getent"] == f"{USER}:x:1000:100::/home/jovyan:/bin/bash", seen["getent"]
        assert seen["home"] == "/home/jovyan"
        assert seen["id"].startswith(f"uid=1000({USER}) gid=100(")
        # project groups kept (crun, keep-groups): its 0640 root:group file is readable
        assert seen["project"] == f"project data of {project.gr_name}"
        assert seen["nonewprivs"] == "1" and int(seen["capeff"], 16) == 0
        assert seen["rootid"] != "0" and seen["etc_writable"] is False
        # what it wrote into the home is the real user's on the host
        written = Path(seen["written"].replace("/home/jovyan", me.pw_dir, 1))
        assert written.stat().st_uid == me.pw_uid, (written, written.stat())
        assert "In container image deb12-podman (podman)" in messages
        assert_hooks_shown(messages, f"hello {USER} (uid 1000), home /home/jovyan")
    finally:
        assert_stopped_and_clean(hub)


def test_an_image_path_the_user_types_is_used_only_where_the_admin_allows(hub: Hub) -> None:
    image = facts()["IMAGE"]
    refused = hub.spawn(USER, options_body({"profile": "own", "image--unlisted-choice": "/tmp"}))
    assert refused.status_code == 400, refused.text
    assert "the image path '/tmp' is not one this site allows" in refused.text
    assert f"allowed: {Path(image).parent}/*" in refused.text
    sneaky = f"{Path(image).parent}/.."
    refused = hub.spawn(USER, options_body({"profile": "own", "image--unlisted-choice": sneaky}))
    assert refused.status_code == 400 and "'..' component" in refused.text, refused.text
    assert hub.user_model(USER)["servers"] == {}
    me = pwd.getpwnam(USER)
    seen, messages = start_and_probe(hub, "own", {"image--unlisted-choice": image})
    try:
        assert f"In container image {image} (charliecloud)" in messages, messages
        assert seen["in_image"] is True and seen["uid"] == me.pw_uid and seen["nonewprivs"] == "1", seen
    finally:
        assert_stopped_and_clean(hub)


def test_the_audit_lists_the_images_setuid_binary() -> None:
    done = subprocess.run(
        [sys.executable, "-m", "jupyterhub_hpc.cli", "audit", "--image", facts()["IMAGE"], "--json"],
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert done.returncode == 2, done.stderr
    report = json.loads(done.stdout)
    findings = [f for image in report["images"] for f in image["findings"]]
    assert any(
        f["check"] == "image.setuid-root" and f["subject"] == "/usr/local/bin/rootid" for f in findings
    )
    assert any(f["check"] == "image.singleuser" and f["severity"] == "low" for f in findings)


KUBECONFIG = """apiVersion: v1
kind: Config
clusters: [{name: none, cluster: {server: "https://127.0.0.1:1"}}]
users: [{name: none, user: {token: none}}]
contexts: [{name: none, context: {cluster: none, user: none, namespace: default}}]
current-context: none
"""
#: builds the pod with the real KubeSpawner and the integration, validates it offline, prints it
BUILD_POD = """
import asyncio, json, sys
import kubernetes_validate
from jupyterhub_hpc.containers.kube import build_pod_manifest, check_pod_policy
from jupyterhub_hpc.identity import identity_from_nss
pod = asyncio.run(build_pod_manifest(identity_from_nss(sys.argv[1]), image=sys.argv[2]))
kubernetes_validate.validate(pod, "1.33", strict=True)
print(json.dumps({"pod": pod, "policy": check_pod_policy(pod)}))
"""
POD_PROBE = (
    "import grp, json, os, pwd, subprocess\n"
    "s = dict(l.split(':\\t', 1) for l in open('/proc/self/status').read().splitlines() if ':\\t' in l)\n"
    "print('PROBE', json.dumps({'id': subprocess.run(['id'], capture_output=True, text=True).stdout.strip(),"
    " 'name': pwd.getpwuid(os.getuid()).pw_name, 'uid': os.getuid(), 'groups': sorted(os.getgroups()),"
    " 'nnp': s['NoNewPrivs'].strip(), 'cap': s['CapEff'].strip()}))\n"
)


def test_the_kubespawner_pod_runs_rootless_with_the_init(tmp_path: Path) -> None:
    """The pod the real KubeSpawner builds with the integration passes kubernetes-validate (strict)
    and the policy check, and ``podman kube play --userns=keep-id`` runs that same manifest with
    the init: the real uid, the supplementary groups, names, no privileges (no API server)."""
    me = pwd.getpwnam(USER)
    (tmp_path / "kubeconfig").write_text(KUBECONFIG)
    built = subprocess.run(
        [sys.executable, "-c", BUILD_POD, USER, facts()["PODMAN_REF"]],
        capture_output=True,
        text=True,
        timeout=120,
        env={**os.environ, "KUBECONFIG": str(tmp_path / "kubeconfig")},
        check=False,
    )
    assert built.returncode == 0, built.stderr[-3000:]
    made = json.loads(built.stdout)
    assert made["policy"] == []
    pod = made["pod"]
    container = pod["spec"]["containers"][0]
    assert container["command"] == ["jupyterhub-hpc-init", "--image-user=jovyan", "--"]
    # what podman kube play needs here: the local image, the site environment and nss_wrapper from
    # the host, the init at its path there, and the probe in place of the server
    container.update(image=facts()["PODMAN_REF"], imagePullPolicy="Never")
    container["command"] = [f"{SITE_ENV}/bin/jupyterhub-hpc-init", *container["command"][1:]]
    container["args"] = [f"{SITE_ENV}/bin/python", "-c", POD_PROBE]
    container.setdefault("env", []).append(
        {"name": "JUPYTERHUB_HPC_NSS_WRAPPER", "value": "/usr/lib/jupyterhub-hpc/libnss_wrapper.so"}
    )
    container["volumeMounts"] = [
        {"name": "site", "mountPath": SITE_ENV, "readOnly": True},
        {"name": "nss", "mountPath": "/usr/lib/jupyterhub-hpc/libnss_wrapper.so", "readOnly": True},
    ]
    pod["spec"]["volumes"] = [
        {"name": "site", "hostPath": {"path": SITE_ENV, "type": "Directory"}},
        {"name": "nss", "hostPath": {"path": "/usr/lib/x86_64-linux-gnu/libnss_wrapper.so", "type": "File"}},
    ]
    pod["spec"]["restartPolicy"] = "Never"
    work = Path(tempfile.mkdtemp(prefix="kube-play-", dir="/tmp"))
    try:
        (work / "pod.json").write_text(json.dumps(pod))
        (work / "xdg").mkdir(mode=0o700)
        subprocess.run(["chown", "-R", f"{USER}:", str(work)], check=True)
        work.chmod(0o700)
        podman = [
            "podman",
            f"--root={work}/root",
            f"--runroot={work}/run",
            f"--tmpdir={work}/tmp",
            f"--storage-opt=additionalimagestore={me.pw_dir}/.local/share/containers/storage",
            "--runtime=crun",
        ]

        def as_user(*argv: str, timeout: float = 120) -> subprocess.CompletedProcess[str]:
            env = ["env", f"XDG_RUNTIME_DIR={work}/xdg", f"HOME={me.pw_dir}"]
            return subprocess.run(
                ["runuser", "-u", USER, "--", *env, *podman, *argv],
                capture_output=True,
                text=True,
                timeout=timeout,
                cwd="/tmp",
                check=False,
            )

        played = as_user("kube", "play", "--userns=keep-id", str(work / "pod.json"))
        assert played.returncode == 0, played.stderr[-3000:]
        name = f"{pod['metadata']['name']}-{container['name']}"
        deadline = time.monotonic() + 60
        while "PROBE " not in (logs := as_user("logs", name)).stdout:
            assert time.monotonic() < deadline, logs.stdout + logs.stderr
            time.sleep(0.5)
        seen = json.loads(logs.stdout.split("PROBE ", 1)[1].splitlines()[0])
        groups = os.getgrouplist(USER, me.pw_gid)
        assert seen["uid"] == me.pw_uid and seen["name"] == USER, seen
        assert seen["id"].startswith(f"uid={me.pw_uid}({USER}) gid={me.pw_gid}("), seen
        assert seen["groups"] == sorted(groups), seen
        assert f"{grp.getgrnam(facts()['PROJECT_GROUP']).gr_gid}({facts()['PROJECT_GROUP']})" in seen["id"]
        assert seen["nnp"] == "1" and int(seen["cap"], 16) == 0
        assert as_user("kube", "down", str(work / "pod.json")).returncode == 0
    finally:
        pause = work / "tmp" / "pause.pid"
        if pause.exists():
            subprocess.run(["kill", "-9", pause.read_text().strip()], check=False)
        subprocess.run(["rm", "-rf", str(work)], check=False)
    deadline = time.monotonic() + 15
    while container_processes(USER):
        assert time.monotonic() < deadline, f"left after the pod: {container_processes(USER)}"
        time.sleep(0.5)
