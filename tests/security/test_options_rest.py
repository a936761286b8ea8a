"""Arbitrary user_options on the REST path (``POST /hub/api/users/:name/server``) of the real,
unprivileged hub with ``allowed_user_options`` set: each is refused with HTTP 400 and submits
nothing, or the job Slurm holds has exactly the validated request's settings and directives.
The payloads that rewrote batchspawner's job scripts are regression tests."""

from __future__ import annotations

import glob
import json
import pwd
import re
from collections.abc import Iterator
from typing import Any

import pytest
import secutil
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from secutil import FAST, HOLD
from test_options_validation import ALLOWED, INJECTIONS, NOT_ALLOWED, values
from tornado import web
from traitlets.config import Config

from conftest import nonroot_hubs
from hub import Hub, wait_for
from jupyterhub_hpc.backends import JobScript
from jupyterhub_hpc.request import JobRequest
from jupyterhub_hpc.spawner import SlurmSpawner

pytestmark = [pytest.mark.slurm, pytest.mark.hub]

USER = "hpcuser3"
SPAWNER = {**FAST, "allowed_user_options": ALLOWED, "partition": "debug", "walltime": "00:05:00"}
PWNED = "/tmp/sectest-pwned"


def post_options(hub: Hub, options: dict[str, Any]) -> Any:
    """POST a start with ``options`` (NaN and Infinity included: json.dumps writes them, as a
    client may, where requests' ``json=`` refuses them)."""
    body = json.dumps({"user_options": options})
    return hub.api("POST", f"/users/{USER}/server", data=body, headers={"Content-Type": "application/json"})


# values Slurm accepts on this cluster (walltime within the `short` partition's 5 minutes)
feasible = {
    "partition": st.sampled_from(["debug", "short", "gpu"]),
    "cpus": st.one_of(st.integers(1, 4), st.integers(1, 4).map(str)),
    "memory": st.sampled_from(["100M", "300M", "1G", "1.5G", 512, "2048"]),
    "walltime": st.sampled_from(["00:03:00", "4", 2, "00:05:00", "01:00"]),
    "account": st.from_regex(r"[a-z][a-z0-9_]{0,10}", fullmatch=True),
}
feasible_options = st.fixed_dictionaries({}, optional=feasible)
live_options = st.one_of(
    feasible_options,
    st.dictionaries(st.sampled_from(ALLOWED + NOT_ALLOWED), values, min_size=1, max_size=3),
    st.builds(
        lambda base, key, value: {**base, key: value}, feasible_options, st.sampled_from(ALLOWED), values
    ),
)


def validated(options: dict[str, Any]) -> JobRequest | None:
    """The request the spawner makes of ``options`` (None: refused)."""
    config = Config()
    for key, value in SPAWNER.items():
        setattr(config.SlurmSpawner, key, value)
    spawner = SlurmSpawner(config=config)
    spawner.user_options = options
    try:
        return spawner.validated_request()
    except web.HTTPError:
        return None


def mib(text: str) -> int:
    number, unit = re.fullmatch(r"([\d.]+)([KMGT]?)", text).groups()  # type: ignore[union-attr]
    return round(float(number) * {"K": 1 / 1024, "": 1, "M": 1, "G": 1024, "T": 1024**2}[unit])


def seconds(text: str) -> int:
    days, _, rest = text.rpartition("-")
    h, m, s = (int(x) for x in rest.split(":"))
    return int(days or 0) * 86400 + h * 3600 + m * 60 + s


@pytest.fixture(scope="module")
def hub(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Hub]:
    secutil.cancel_test_jobs()
    with nonroot_hubs(tmp_path_factory.mktemp("logs")) as make:
        hub = make(config={"JupyterHub": {"tornado_settings": {"slow_spawn_timeout": 1}}}, **SPAWNER)
        hub.per_user({USER: HOLD})
        hub.start()
        hub.ensure_user(USER)
        yield hub
    secutil.cancel_test_jobs()
    assert not glob.glob(PWNED + "*")


def check(hub: Hub, options: dict[str, Any]) -> None:
    expected = validated(options)
    r = post_options(hub, options)
    if expected is None:
        assert r.status_code == 400, (options, r.status_code, r.text[:300])
        assert r.json()["message"].startswith("Invalid server options: ")
        assert secutil.live_jobs(USER) == []
        wait_for(lambda: not hub.user_model(USER)["servers"], 10)
        return
    if r.status_code == 400 and r.json()["message"].startswith("The scheduler refused the job: "):
        # valid for us, refused by sbatch (e.g. a time limit over the partition's): no job either
        assert secutil.live_jobs(USER) == []
        wait_for(lambda: not hub.user_model(USER)["servers"], 10)
        return
    assert r.status_code in (201, 202), (options, r.status_code, r.text[:300])
    job = secutil.pending_job(USER)
    try:
        slurm = secutil.scontrol_job(job)
        assert slurm["JobName"] == "sectest"
        assert slurm["Partition"] == expected.partition
        assert slurm["CPUs/Task"] == str(expected.cpus) == slurm["NumCPUs"]
        assert mib(slurm["MinMemoryNode"]) == expected.memory
        assert seconds(slurm["TimeLimit"]) == expected.walltime
        assert slurm["Account"] == (expected.account or "(null)")
        home = pwd.getpwnam(USER).pw_dir
        job_script = JobScript(workdir=home, output_path=f"{home}/.jupyterhub-hpc-%j.log", command=[])
        directives = SlurmSpawner().make_backend("slurm").directives(expected, job_script)
        stored = [ln for ln in secutil.batch_script(job).splitlines() if ln.startswith("#SBATCH")]
        assert stored == [f"#SBATCH {d}" for d in [*directives, "--begin=now+600"]]
    finally:
        hub.stop_server(USER)
    assert secutil.live_jobs(USER) == []


@settings(
    max_examples=30,
    deadline=None,
    database=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture],
)
@given(options=live_options)
def test_any_options_are_refused_or_submitted_exactly(hub: Hub, options: dict[str, Any]) -> None:
    check(hub, options)


@pytest.mark.parametrize(
    "options",
    [
        {"walltime": INJECTIONS[0], "memory": "2G", "username": "root"},
        {"walltime": f"00:10:00\necho INJECTED-$(id -un) > {PWNED}-walltime-$(id -un)"},
        {"walltime": f"00:10:00 $(touch {PWNED}-directive)"},
        {"prologue": f"touch {PWNED}-prologue-$(id -un)"},
        {"cmd": "jupyterhub-hpc-singleuser /bin/false"},
        {"partition": "debug\r\n#SBATCH --mem=20000M"},
        {"partition": "debug\n#SBATCH --comment=FORM-INJECTED"},
        {"exec_prefix": "", "batch_query_cmd": f"id > {PWNED}-escalation"},
        {"account": "`id`"},
        {"memory": "1G\0--mem=20000M"},
        {"cpus": "1 --exclusive"},
    ],
)
def test_the_payloads_that_rewrote_batchspawner_scripts_are_refused(
    hub: Hub, options: dict[str, Any]
) -> None:
    assert validated(options) is None
    check(hub, options)


def test_a_valid_request_is_submitted_exactly(hub: Hub) -> None:
    options = {
        "partition": "short",
        "cpus": "2",
        "memory": "300M",
        "walltime": "00:04:00",
        "account": "proj7",
    }
    assert validated(options) is not None
    check(hub, options)


def test_a_request_slurm_refuses_is_a_400_with_slurms_words(hub: Hub) -> None:
    # valid for the hub, but over the short partition's MaxTime (5 min, EnforcePartLimits=ALL)
    options = {"partition": "short", "walltime": "00:10:00"}
    assert validated(options) is not None
    r = post_options(hub, options)
    assert r.status_code == 400, (r.status_code, r.text[:300])
    message = r.json()["message"]
    assert message.startswith("The scheduler refused the job: "), message
    assert "time limit" in message.lower(), message
    assert secutil.live_jobs(USER) == []
    wait_for(lambda: not hub.user_model(USER)["servers"], 10)
