"""Profiles through a real JupyterHub on the real Slurm: the REST API, spawn links, discovery and dry run.

One hub (SlurmSpawner, the site profiles of conftest.py) serves the module's tests; jobs
are checked with Slurm's own ``scontrol``.
"""

from __future__ import annotations

import subprocess
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import jupyterhub
import pytest

from hub import Hub

from .conftest import SITE_PROFILES
from .hubs import (
    FAST,
    as_user,
    cancel,
    job_id,
    login,
    make_hub,
    options_body,
    scontrol,
    stop_all,
    token_for,
    wait_ready,
)

pytestmark = [pytest.mark.slurm, pytest.mark.hub]

USERS = ["hpcuser1", "hpcuser2", "hpcuser3"]


@pytest.fixture(scope="module")
def hub(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Hub]:
    root: Path = tmp_path_factory.mktemp("profiles-api")
    config = {
        "SlurmSpawner": {"profile_list": SITE_PROFILES, "profile_limits_ttl": 30.0},
        "JupyterHub": {"load_groups": {"hpc-staff": {"users": ["hpcuser3"]}}},
    }
    hub = make_hub(root, "slurm", config, **FAST)
    hub.start()
    try:
        yield hub
    finally:
        cancel(stop_all(hub, USERS))
        hub.kill_all()


def start(hub: Hub, user: str, body: Any) -> Any:
    hub.ensure_user(user)
    return hub.api("POST", f"/users/{user}/server", json=body)


@pytest.mark.parametrize(
    ("body", "field", "reason"),
    # the options as JupyterHub 6 ({"user_options": ...}) or 5.x (the whole body) expects them
    [
        ({"profile": "staff"}, "profile", "no profile 'staff' is available to you"),
        (
            {"profile": "gpu", "walltime": "05:00:00"},
            "walltime",
            "05:00:00 is more than the gpu partition's limit of 04:00:00",
        ),
        ({"profile": "cpu", "cpus": 9}, "cpus", "must be at most 4"),
        (
            {"profile": "cpu", "colour": "blue"},
            "colour",
            "unknown option for profile 'cpu'",
        ),
        (
            {"profile": "gpu", "gpus": 0, "gpu_type": "tesla"},
            "gpu_type",
            "only applies when gpus is at least 1",
        ),
    ],
)
def test_rest_api_refuses_invalid_options_with_400(hub: Hub, body: Any, field: str, reason: str) -> None:
    r = start(hub, "hpcuser1", options_body(body))
    assert r.status_code == 400, (r.status_code, r.text)
    message = r.json()["message"]
    assert f"Invalid option '{field}'" in message and reason in message, message
    assert hub.user_model("hpcuser1")["servers"] == {}  # nothing was submitted


def test_members_see_the_hidden_profile_and_others_cannot_use_it(hub: Hub) -> None:
    staff, other = token_for(hub, "hpcuser3"), token_for(hub, "hpcuser2")
    r = as_user(hub, "GET", "/hpc/profiles", staff)
    assert r.status_code == 200, r.text
    assert [p["slug"] for p in r.json()["profiles"]] == ["cpu", "bigmem", "gpu", "staff"]
    r = as_user(hub, "GET", "/hpc/profiles", other)
    assert [p["slug"] for p in r.json()["profiles"]] == ["cpu", "bigmem", "gpu"]
    ok = as_user(hub, "POST", "/hpc/profiles/validate", staff, json={"profile": "staff"})
    assert ok.status_code == 200 and ok.json()["job"]["partition"] == "debug", ok.text
    refused = as_user(hub, "POST", "/hpc/profiles/validate", other, json={"profile": "staff"})
    assert refused.status_code == 400
    assert refused.json()["field"] == "profile" and "no profile 'staff'" in refused.json()["reason"]


def test_discovery_api_returns_schema_and_live_limits(hub: Hub) -> None:
    token = token_for(hub, "hpcuser2")
    doc = as_user(hub, "GET", "/hpc/profiles", token).json()
    gpu = next(p for p in doc["profiles"] if p["slug"] == "gpu")
    assert gpu["defaults"] == {
        "profile": "gpu",
        "gpus": 1,
        "gpu_type": "tesla",
        "cpus": 2,
        "walltime": "01:00:00",
    }
    props = gpu["schema"]["properties"]
    assert props["gpus"] == {**props["gpus"], "type": "integer", "minimum": 0, "maximum": 2}
    assert props["walltime"]["x-maximum-seconds"] == 4 * 3600
    assert props["walltime"]["x-partition-maximum"]["short"] == "00:05:00"
    assert props["gpu_type"]["x-when"] == {"gpus": {"min": 1}}
    assert gpu["schema"]["additionalProperties"] is False
    limits = doc["limits"]["slurm/"]
    assert limits["live"] is True and limits["default_partition"] == "debug"
    short = next(p for p in limits["partitions"] if p["name"] == "short")
    assert short["max_walltime"] == "00:05:00" and short["cpus_per_node"] == 8
    assert len(doc["schema"]["oneOf"]) == 3
    # a token without read:servers may not look; an admin may look at any user's view
    weak = token_for(hub, "hpcuser2", ["access:servers!user=hpcuser2"])
    assert as_user(hub, "GET", "/hpc/profiles", weak).status_code == 403
    admin_view = hub.api("GET", "/hpc/users/hpcuser3/profiles")
    assert admin_view.status_code == 200 and admin_view.json()["user"] == "hpcuser3"
    assert "staff" in [p["slug"] for p in admin_view.json()["profiles"]]


def test_dry_run_normalises_without_starting(hub: Hub) -> None:
    token = token_for(hub, "hpcuser2")
    r = as_user(
        hub,
        "POST",
        "/hpc/profiles/validate",
        token,
        json={"user_options": {"profile": "bigmem", "memory": "2048M", "walltime": 3}},
    )
    assert r.status_code == 200, r.text
    body = r.json()
    assert body["user_options"] == {"profile": "bigmem", "memory": "2G", "walltime": "00:03:00"}
    assert (body["job"]["partition"], body["job"]["memory"], body["job"]["walltime_text"]) == (
        "short",
        2048,
        "00:03:00",
    )
    bad = as_user(
        hub, "POST", "/hpc/profiles/validate", token, json={"profile": "bigmem", "walltime": "00:10:00"}
    )
    assert bad.status_code == 400
    assert bad.json()["field"] == "walltime" and "00:05:00" in bad.json()["reason"]
    assert hub.user_model("hpcuser2")["servers"] == {}


def test_spawn_link_with_opt_parameters(hub: Hub) -> None:
    """``/hub/spawn?opt-...`` links (JupyterHub 6's form; 5.x passes the prefix on and the
    profiles layer strips it): refused with the reason, or started as asked."""
    session = login(hub, "hpcuser2")
    r = session.get(f"{hub.url}/hub/spawn?opt-profile=gpu&opt-walltime=05:00:00", timeout=60)
    # the form again, with the reason; JupyterHub 6 also sets the status (5.x answers 200)
    assert r.status_code == (400 if jupyterhub.version_info >= (6,) else 200)
    assert "Invalid option &#39;walltime&#39;" in r.text or "Invalid option 'walltime'" in r.text
    assert hub.user_model("hpcuser2")["servers"] == {}
    r = session.get(f"{hub.url}/hub/spawn?opt-profile=bigmem&opt-memory=300M&opt-walltime=3", timeout=60)
    assert r.status_code == 200, r.status_code
    server = wait_ready(hub, "hpcuser2")
    assert server["user_options"] == {"profile": "bigmem", "memory": "300M", "walltime": "00:03:00"}
    job = scontrol(job_id(hub, "hpcuser2"))
    assert (job["Partition"], job["MinMemoryNode"], job["TimeLimit"], job["NumCPUs"]) == (
        "short",
        "300M",
        "00:03:00",
        "1",
    )
    cancel(stop_all(hub, ["hpcuser2"]))


def test_rest_start_submits_exactly_the_validated_request(hub: Hub) -> None:
    body = options_body({"profile": "cpu", "cpus": "2", "memory": "512M", "walltime": "10", "env": "ml"})
    r = start(hub, "hpcuser1", body)
    assert r.status_code in (201, 202), r.text
    server = wait_ready(hub, "hpcuser1")
    assert server["user_options"] == {
        "profile": "cpu",
        "cpus": 2,
        "memory": "512M",
        "walltime": "00:10:00",
        "env": "ml",
    }
    jid = job_id(hub, "hpcuser1")
    job = scontrol(jid)
    assert (job["Partition"], job["NumCPUs"], job["MinMemoryNode"], job["TimeLimit"]) == (
        "debug",
        "2",
        "512M",
        "00:10:00",
    )
    assert job.get("TresPerNode", "N/A") in ("N/A", "(null)")  # no GPU asked for
    script = subprocess.run(
        ["scontrol", "write", "batch_script", jid, "-"], capture_output=True, text=True
    ).stdout
    assert "HPC_PROFILE_ENV" in script and "ml" in script.split("HPC_PROFILE_ENV", 1)[1].splitlines()[0]
    cancel(stop_all(hub, ["hpcuser1"]))
