"""Profiles are built into every spawner of this package (issue 12): a config written from the
README (``c.SlurmSpawner.*``) plus a ``profile_list`` submits exactly those values, and the old
``slurm-profiles`` / ``c.ProfilesSlurmSpawner`` configs still work, as the same class, with one
warning. Live on the real Slurm (jobs held in the queue: nothing starts)."""

from __future__ import annotations

import logging
from collections.abc import Iterator
from importlib.metadata import entry_points
from pathlib import Path
from typing import Any

import pytest
from traitlets.config import Config

from hub import Hub, wait_for
from jupyterhub_hpc import schedulers
from jupyterhub_hpc.local_spawner import LocalHPCSpawner
from jupyterhub_hpc.profiles import ProfileConfigError, check_profiles, compat
from jupyterhub_hpc.profiles.mixin import ProfilesMixin
from jupyterhub_hpc.spawner import HPCSpawner, SlurmSpawner

from .hubs import cancel, make_hub, scontrol, stop_all

USER = "hpcuser2"
HOLD = {"job_extra_directives": ["--begin=now+600"]}
#: the README's settings, within the test cluster's `short` partition (5 minutes at most)
README = {"partition": "short", "cpus": 2, "memory": "300M", "walltime": "00:04:00"}
PROFILES = [
    {"display_name": "Interactive", "slug": "interactive", "default": True},
    {"display_name": "GPU", "slug": "gpu", "spawner_override": {"partition": "gpu", "gpus": 1}},
]
#: issue 13, item 2: a profile's own values as the defaults of options that have none (NERSC's
#: shape), and a default brought within the partition's live limit (short: 5 minutes)
OWN_VALUES = [
    {
        "display_name": "Own values",
        "slug": "own",
        "spawner_override": {"partition": "short", "walltime": "00:03:00", "cpus": 3},
        "profile_options": {
            "walltime": {"display_name": "Time", "type": "walltime"},
            "cpus": {"display_name": "Cores", "type": "integer", "job_field": "cpus", "max": 4},
        },
    },
    {
        "display_name": "Capped",
        "slug": "capped",
        "spawner_override": {"partition": "short", "walltime": "00:09:00"},
        "profile_options": {"walltime": {"display_name": "Time", "type": "walltime"}},
    },
]
#: issue 13, item 3: the job fields sites set, fixed by profiles (Aalto's partition list,
#: MPI-style task counts, a generic resource besides GPUs, a working directory, GPUs per task)
JOB_FIELDS = [
    {
        "display_name": "Tasks",
        "slug": "tasks",
        "spawner_override": {
            "partition": "short,debug",
            "ntasks": 2,
            "ntasks_per_node": 2,
            "gres": ["nvme:10"],
            "workdir": "/tmp/{username}",
        },
    },
    {
        "display_name": "GPU per task",
        "slug": "gpu-task",
        "spawner_override": {"partition": "gpu", "ntasks": 2, "gpus_per_task": 1, "cpus": 1},
    },
]


# -- one class per scheduler, profiles built in (no hub) -----------------------------------------


@pytest.mark.parametrize(
    "cls",
    [
        HPCSpawner,
        SlurmSpawner,
        LocalHPCSpawner,
        schedulers.SGESpawner,
        schedulers.PBSSpawner,
        schedulers.TorqueSpawner,
        schedulers.LSFSpawner,
        schedulers.HTCondorSpawner,
        schedulers.OARSpawner,
    ],
)
def test_every_spawner_class_has_profiles_built_in(cls: type) -> None:
    assert issubclass(cls, ProfilesMixin) and issubclass(cls, HPCSpawner)
    assert "profile_list" in cls.class_trait_names()


def test_readme_settings_apply_with_a_profile_list() -> None:
    c = Config()
    for key, value in README.items():
        setattr(c.SlurmSpawner, key, value)
    c.SlurmSpawner.profile_list = PROFILES
    c.HPCSpawner.job_name = "from-hpcspawner"
    c.Spawner.default_url = "/lab"
    spawner = SlurmSpawner(config=c)
    assert (spawner.partition, spawner.cpus, spawner.memory) == ("short", 2, 300)  # MiB, parsed at load
    assert spawner.job_name == "from-hpcspawner" and spawner.default_url == "/lab"
    base = spawner.profile_base_job()
    assert base["partition"] == "short" and base["cpus"] == 2 and base["memory"] == 300


def test_the_deprecated_names_are_the_same_classes_with_one_warning(caplog: pytest.LogCaptureFixture) -> None:
    spawners = {ep.name: ep for ep in entry_points(group="jupyterhub.spawners")}
    compat._warned.clear()
    with caplog.at_level(logging.WARNING, logger="JupyterHub"):
        assert spawners["slurm-profiles"].load() is SlurmSpawner
        assert spawners["slurm-profiles"].load() is SlurmSpawner
        assert spawners["hpc-profiles"].load() is HPCSpawner
        assert spawners["local-hpc-profiles"].load() is LocalHPCSpawner
    warnings = [r.getMessage() for r in caplog.records if "deprecated" in r.getMessage()]
    assert len(warnings) == 3, warnings
    assert any("ProfilesSlurmSpawner is deprecated" in w and 'spawner_class = "slurm"' in w for w in warnings)


def test_a_deprecated_config_section_still_applies(caplog: pytest.LogCaptureFixture) -> None:
    c = Config()
    c.JupyterHub.spawner_class = "slurm-profiles"
    c.ProfilesSlurmSpawner.profile_list = PROFILES
    c.ProfilesSlurmSpawner.cpus = 3
    c.SlurmSpawner.cpus = 4  # the new name wins
    compat._warned.clear()
    with caplog.at_level(logging.WARNING, logger="JupyterHub"):
        spawner = SlurmSpawner(config=c)
        SlurmSpawner(config=c)
    assert spawner.profile_list == PROFILES and spawner.cpus == 4
    assert len([r for r in caplog.records if "c.ProfilesSlurmSpawner is deprecated" in r.getMessage()]) == 1
    check_profiles(c)  # reads the old section too
    c.ProfilesSlurmSpawner.profile_list = [{"display_name": "A", "spawner_override": {"image": "x"}}]
    with pytest.raises(ProfileConfigError, match=r"overrides\.image"):
        check_profiles(c)


def test_without_a_profile_list_there_is_no_form() -> None:
    import asyncio

    spawner = SlurmSpawner(config=Config())
    assert asyncio.run(spawner.render_profiles_form()) == ""


# -- live: exactly the README's values in the job Slurm holds ------------------------------------


@pytest.fixture(scope="module")
def readme_hub(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Hub]:
    config: dict[str, dict[str, Any]] = {
        "SlurmSpawner": {**README, "profile_list": PROFILES + OWN_VALUES + JOB_FIELDS}
    }
    hub = make_hub(
        tmp_path_factory.mktemp("readme"), "slurm", config, status_interval=3.0, job_name="sectest"
    )
    hub.per_user({USER: HOLD})
    hub.start()
    try:
        yield hub
    finally:
        cancel(stop_all(hub, [USER]))
        hub.kill_all()


def held_job(hub: Hub, profile: str) -> dict[str, str]:
    hub.ensure_user(USER)
    r = hub.api("POST", f"/users/{USER}/server", json={"profile": profile})
    assert r.status_code in (201, 202), r.text
    job = wait_for(lambda: (hub.user_model(USER)["servers"].get("", {}).get("state") or {}).get("job_id"), 60)
    fields = scontrol(str(job))
    cancel(stop_all(hub, [USER]))
    return fields


@pytest.mark.slurm
@pytest.mark.hub
def test_the_readme_values_are_what_slurm_holds(readme_hub: Hub) -> None:
    job = held_job(readme_hub, "interactive")
    assert job["Partition"] == "short" and job["TimeLimit"] == "00:04:00"
    assert job["MinMemoryNode"] == "300M" and job["NumCPUs"] == "2", job
    # a profile overrides only what it names: the rest stays the README's
    job = held_job(readme_hub, "gpu")
    assert job["Partition"] == "gpu" and job["TimeLimit"] == "00:04:00"
    assert job["MinMemoryNode"] == "300M" and job["NumCPUs"] == "2", job
    assert "gpu" in job.get("TresPerNode", job.get("Gres", "")), job


@pytest.mark.slurm
@pytest.mark.hub
def test_a_profiles_own_values_and_the_partitions_limit_are_the_default_start(readme_hub: Hub) -> None:
    # the options have no default: the profile's 3 minutes and 3 CPUs, not the README's 4 and 2
    job = held_job(readme_hub, "own")
    assert job["Partition"] == "short" and job["TimeLimit"] == "00:03:00" and job["NumCPUs"] == "3", job
    # 9 minutes asked by the profile, 5 allowed by the partition (sinfo): the start fits
    job = held_job(readme_hub, "capped")
    assert job["Partition"] == "short" and job["TimeLimit"] == "00:05:00", job


@pytest.mark.slurm
@pytest.mark.hub
def test_the_job_fields_sites_set_are_what_slurm_holds(readme_hub: Hub) -> None:
    job = held_job(readme_hub, "tasks")
    # Slurm keeps the whole list until the job starts (in its own order)
    assert sorted(job["Partition"].split(",")) == ["debug", "short"], job
    assert job["NumTasks"] == "2" and job["NumNodes"] in ("1", "1-1") and job["CPUs/Task"] == "2", job
    assert job["NumCPUs"] == "4", job  # 2 tasks x the README's 2 CPUs
    assert job["WorkDir"] == f"/tmp/{USER}", job
    assert job["NtasksPerN:B:S:C"].startswith("2:"), job
    assert job.get("TresPerNode") == "gres:nvme:10", job
    job = held_job(readme_hub, "gpu-task")
    assert job["Partition"] == "gpu" and job["NumTasks"] == "2" and job["CPUs/Task"] == "1", job
    assert job.get("TresPerTask") == "gres:gpu:1", job


@pytest.mark.slurm
@pytest.mark.hub
def test_an_old_profiles_config_still_runs_with_one_warning(tmp_path: Path) -> None:
    config: dict[str, dict[str, Any]] = {"ProfilesSlurmSpawner": {**README, "profile_list": PROFILES}}
    hub = make_hub(tmp_path / "old", "slurm-profiles", config, status_interval=3.0, job_name="sectest")
    hub.per_user({USER: HOLD})
    hub.start()
    try:
        job = held_job(hub, "gpu")
        assert job["Partition"] == "gpu" and job["MinMemoryNode"] == "300M" and job["NumCPUs"] == "2", job
        log = hub.log_path.read_text()
        # one warning for the old name (its class and its config section), saying what to use
        warnings = [line for line in log.splitlines() if "ProfilesSlurmSpawner is deprecated" in line]
        assert len(warnings) == 1, warnings
        assert "SlurmSpawner" in warnings[0].split("deprecated", 1)[1] and '"slurm"' in warnings[0]
    finally:
        cancel(stop_all(hub, [USER]))
        hub.kill_all()
