"""One form, two Slurm clusters (what sites used wrapspawner for), live: the single-node Slurm of
scripts/slurm.sh and the multi-node one of scripts/slurm-multinode.sh, which a profile selects
with ``scheduler_environment={"SLURM_CONF": ...}``. Both are started by ``make services``; the
second has accounting (scripts/slurmdbd.sh: hpcuser3 in accounts physics and chemistry with QoS
normal and long, hpcuser4 in physics with QoS normal; associations enforced by Slurm).

Checked with each cluster's own ``scontrol``/``squeue``: the limits shown are each cluster's own;
accounts and QoS offered are the caller's own associations, from ``sacctmgr``; a job lands on the
cluster its profile names, with the account and QoS asked for; after a hub crash the hub still
follows (and later cancels) the job on the cluster it was submitted to, not on the default one.
"""

from __future__ import annotations

import os
import re
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from hub import Hub, wait_for

from .hubs import FAST, as_user, make_hub, options_body, token_for, wait_ready

pytestmark = [pytest.mark.slurm, pytest.mark.hub]

USER = "hpcuser3"
MULTI_CONF = "/var/lib/jupyterhub-hpc-slurm-multi/etc/slurm.conf"
CPUS = {"type": "integer", "display_name": "CPU cores", "job_field": "cpus", "min": 1, "max": 8}
PROFILES: list[dict[str, Any]] = [
    {
        "display_name": "Main cluster",
        "slug": "main",
        "default": True,
        "spawner_override": {"partition": "debug"},
        "profile_options": {"cpus": CPUS},
    },
    {
        "display_name": "Cluster B, GPU",
        "slug": "b-gpu",
        "spawner_override": {
            "scheduler_environment": {"SLURM_CONF": MULTI_CONF},
            # job ids of the two clusters overlap: their output files must not
            "job_output": "{home}/.jupyterhub-hpc-b-{job_id}.log",
            "partition": "gpu",
            "walltime": "01:00:00",  # the gpu partition's MaxTime is 4 hours
        },
        "profile_options": {
            "gpus": {"type": "integer", "display_name": "GPUs", "job_field": "gpus", "min": 1, "max": 2},
            "cpus": CPUS,
            "account": {"type": "account", "display_name": "Account"},
            "qos": {"type": "qos", "display_name": "QoS"},
        },
    },
]


def slurm(cluster: str, *argv: str) -> str:
    """A Slurm client command, as root, on cluster "a" (the default one) or "b"."""
    env = dict(os.environ)
    env.pop("SLURM_CONF", None)
    if cluster == "b":
        env["SLURM_CONF"] = MULTI_CONF
    result = subprocess.run(argv, env=env, capture_output=True, text=True, check=False, timeout=30)
    assert result.returncode == 0, (cluster, argv, result.stderr)
    return result.stdout


def jobs_of(cluster: str) -> dict[str, str]:
    out = slurm(
        cluster, "squeue", "--noheader", f"--user={USER}", "--states=PENDING,RUNNING", "--format=%i|%T"
    )
    return dict(line.split("|", 1) for line in out.split())


@pytest.fixture(scope="module")
def hub(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Hub]:
    assert "is UP" in slurm("b", "scontrol", "ping")
    for cluster in ("a", "b"):
        slurm(cluster, "scancel", f"--user={USER}")
    config = {"SlurmSpawner": {"profile_list": PROFILES, "profile_limits_ttl": 30.0}}
    hub = make_hub(tmp_path_factory.mktemp("two-clusters"), "slurm", config, **FAST)
    hub.start()
    try:
        yield hub
    finally:
        hub.kill_all()
        for cluster in ("a", "b"):
            slurm(cluster, "scancel", f"--user={USER}")


def test_each_profile_submits_to_its_cluster_and_the_job_is_followed_there_after_a_crash(hub: Hub) -> None:
    token = token_for(hub, USER)
    doc = as_user(hub, "GET", "/hpc/profiles", token).json()
    keys = {p["slug"]: p["limits_key"] for p in doc["profiles"]}
    assert keys["main"] == "slurm/" and keys["b-gpu"].startswith("slurm/+"), keys
    gpu_a = next(p for p in doc["limits"][keys["main"]]["partitions"] if p["name"] == "gpu")
    gpu_b = next(p for p in doc["limits"][keys["b-gpu"]]["partitions"] if p["name"] == "gpu")
    # each cluster's own sinfo: one 8-CPU node here, the 2-CPU node gpu1 there
    assert (gpu_a["cpus_per_node"], gpu_b["cpus_per_node"], gpu_b["nodes"]) == (8, 2, 1), (gpu_a, gpu_b)
    assert doc["limits"][keys["b-gpu"]]["live"] is True
    # so the same request is valid for one cluster and refused for the other, with the reason
    ok = as_user(hub, "POST", "/hpc/profiles/validate", token, json={"profile": "main", "cpus": 4})
    assert ok.status_code == 200, ok.text
    refused = as_user(hub, "POST", "/hpc/profiles/validate", token, json={"profile": "b-gpu", "cpus": 4})
    assert refused.status_code == 400 and refused.json()["field"] == "cpus", refused.text

    r = hub.api("POST", f"/users/{USER}/server", json=options_body({"profile": "b-gpu", "gpus": 1}))
    assert r.status_code in (201, 202), r.text
    server = wait_ready(hub, USER, timeout=120)
    job = str(server["state"]["job_id"])
    assert jobs_of("b") == {job: "RUNNING"} and jobs_of("a") == {}
    info = slurm("b", "scontrol", "show", "job", job)
    assert "Partition=gpu " in info and "NodeList=gpu1" in info and "gres:gpu:1" in info.replace("/", ":"), (
        info
    )
    assert Path(f"/home/{USER}/.jupyterhub-hpc-b-{job}.log").exists()
    assert hub.server_status(USER, hub.user_token(USER)).status_code == 200

    # the hub crashes and comes back: its watcher for cluster B still finds the job
    hub.kill()
    hub.start()
    wait_for(lambda: hub.user_model(USER)["servers"].get("", {}).get("ready"), 60, 0.5, "not re-adopted")
    # several 3 s status intervals: a watcher asking the wrong cluster would have reported the job
    # gone after two answers, and the hub would have dropped the server
    time.sleep(10)
    assert hub.user_model(USER)["servers"][""]["ready"], hub.log_tail(40)
    assert jobs_of("b") == {job: "RUNNING"}
    assert hub.server_status(USER, hub.user_token(USER)).status_code == 200

    # stopping cancels it on cluster B; the next start of the other profile goes to the main cluster
    assert hub.api("DELETE", f"/users/{USER}/server").status_code in (202, 204)
    wait_for(lambda: not hub.user_model(USER)["servers"], 60, 0.5, "not stopped")
    wait_for(lambda: jobs_of("b") == {}, 30, 0.5, "the job of cluster B was not cancelled")
    r = hub.api("POST", f"/users/{USER}/server", json=options_body({"profile": "main", "cpus": 2}))
    assert r.status_code in (201, 202), r.text
    main_job = str(wait_ready(hub, USER, timeout=120)["state"]["job_id"])
    assert jobs_of("a") == {main_job: "RUNNING"} and jobs_of("b") == {}
    info = slurm("a", "scontrol", "show", "job", main_job)
    assert "Partition=debug " in info and "NumCPUs=2 " in info, info
    assert hub.api("DELETE", f"/users/{USER}/server").status_code in (202, 204)
    wait_for(lambda: jobs_of("a") == {}, 60, 0.5, "the main cluster's job was not cancelled")


def test_accounts_and_qos_are_the_callers_own_associations(hub: Hub) -> None:
    def b_schema(user: str) -> dict[str, Any]:
        doc = as_user(hub, "GET", "/hpc/profiles", token_for(hub, user)).json()
        profile = next(p for p in doc["profiles"] if p["slug"] == "b-gpu")
        assert doc["limits"][profile["limits_key"]]["live"] is True
        return dict(profile["schema"]["properties"])

    mine, theirs = b_schema(USER), b_schema("hpcuser4")
    assert sorted(mine["account"]["enum"]) == ["chemistry", "physics"], mine["account"]
    assert sorted(mine["qos"]["enum"]) == ["long", "normal"], mine["qos"]
    assert theirs["account"]["enum"] == ["physics"] and theirs["qos"]["enum"] == ["normal"]

    token4 = token_for(hub, "hpcuser4")
    for field, value in (("account", "chemistry"), ("qos", "long")):
        r = as_user(hub, "POST", "/hpc/profiles/validate", token4, json={"profile": "b-gpu", field: value})
        assert r.status_code == 400 and r.json()["field"] == field, r.text
    r = hub.api(
        "POST", "/users/hpcuser4/server", json=options_body({"profile": "b-gpu", "account": "chemistry"})
    )
    assert r.status_code == 400, r.text
    assert "chemistry" in r.json()["message"]

    r = hub.api(
        "POST",
        f"/users/{USER}/server",
        json=options_body({"profile": "b-gpu", "gpus": 1, "account": "chemistry", "qos": "long"}),
    )
    assert r.status_code in (201, 202), r.text
    job = str(wait_ready(hub, USER, timeout=120)["state"]["job_id"])
    info = slurm("b", "scontrol", "show", "job", job)
    assert re.search(r"\bAccount=chemistry\s", info) and re.search(r"\bQOS=long\s", info), info
    assert hub.api("DELETE", f"/users/{USER}/server").status_code in (202, 204)
    wait_for(lambda: jobs_of("b") == {}, 60, 0.5, "the job of cluster B was not cancelled")
