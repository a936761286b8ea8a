"""``jupyterhub-hpc migrate`` on the 13 HPC site configurations of ``../shared/compat/cases/40-52``.

For every case a ``jupyterhub_config.py`` is written from the case's data (:func:`write_config`:
its class sections, its wrapspawner profiles, its moss partitions, its slurmformspawner
widgets), the real CLI translates it in a subprocess, and the printed configuration is
loaded with traitlets (it ends in ``check_profiles(c)``). Then each profile's default start
is resolved into the project's :class:`~jupyterhub_hpc.request.JobRequest` and compared with
what batchspawner would have submitted from the original (:func:`batchspawner_job`, written
here from batchspawner's own script, independently of the translation). The cases are other
projects' config data, read from ``../shared/compat`` and never copied into the repository.
"""

from __future__ import annotations

import json
import math
import os
from importlib.metadata import entry_points
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import pytest
from traitlets.config import Config
from traitlets.config.loader import PyFileConfigLoader

from jupyterhub_hpc.profiles import check_profiles
from jupyterhub_hpc.profiles.limits import ClusterLimits
from jupyterhub_hpc.profiles.model import parse_profile_list
from jupyterhub_hpc.profiles.validate import Context, profile_target, resolve
from jupyterhub_hpc.request import JobRequest
from migrate_cli import run_migrate

REPO = Path(__file__).resolve().parents[2]
COMPAT = REPO.parent / "shared" / "compat"
CASES = COMPAT / "cases"
if not CASES.is_dir():
    MISSING = (
        f"{CASES} is missing: the HPC site cases live in ../shared/compat beside the repository "
        "(other projects' config data, never copied into it); CI always has it"
    )
    if os.environ.get("CI"):
        pytest.fail(MISSING, pytrace=False)
    pytest.skip(MISSING, allow_module_level=True)

CASE_FILES = sorted(p for p in CASES.iterdir() if p.name[:2].isdigit() and 40 <= int(p.name[:2]) <= 52)

#: fields that batchspawner leaves to the scheduler's default when the configuration sets
#: nothing, and that a JobRequest always carries (1 GiB, 8 h): compared only when asked for
ALWAYS_ASKED = ("partition", "cpus", "gpus", "nodes", "ntasks", "ntasks_per_node")


def load_case(path: Path) -> dict[str, Any]:
    return json.loads(path.read_text())  # type: ignore[no-any-return]


def short(name: str) -> str:
    return name.split(" ", 1)[0].rsplit(".", 1)[-1]


def write_config(case: dict[str, Any], path: Path) -> Path:
    """A ``jupyterhub_config.py`` with the case's settings, as the site would write them.

    Class sections whose names are classes (``SlurmSpawner``) are written as ``c.X.key``;
    a section the case labels as a wrapped child's (``"SlurmSpawner (child_config)"``) is
    the wrapper's ``child_config``; sections describing a subclass's code defaults are not
    configuration and are left out. Profiles go under the spawner's own class
    (``c.ProfilesSpawner.profiles``), moss partitions under ``c.MOSlurmSpawner.partitions``,
    slurmformspawner's widget defaults under ``c.SbatchForm``.
    """
    spawner = short(case["spawner"])
    lines = ["c = get_config()  # noqa: F821", f"c.JupyterHub.spawner_class = {spawner!r}"]
    child: dict[str, Any] | None = None
    for section, values in case.get("class_config", {}).items():
        if section.endswith("(child_config)"):
            child = values
            continue
        if not section.isidentifier():
            continue
        for key, value in values.items():
            if key == "child_config" and child is None:
                continue
            lines.append(f"c.{section}.{key} = {value!r}")
    if child is not None:
        lines.append(f"c.{spawner}.child_config = {child!r}")
    if "profiles" in case:
        rows = [(p["display"], p["key"], p["class"], p["config"]) for p in case["profiles"]]
        lines.append(f"c.{spawner}.profiles = {rows!r}")
    if "partitions" in case:
        lines.append(f"c.MOSlurmSpawner.partitions = {case['partitions']!r}")
    for field in case.get("user_fields", []):
        if str(field.get("sets", "")).startswith("SbatchForm."):
            widget = {
                theirs: field[ours]
                for ours, theirs in (("default", "def"), ("min", "min"), ("max", "max"))
                if ours in field
            }
            lines.append(f"c.SbatchForm.{field['name']} = {widget!r}")
    path.write_text("\n".join(lines) + "\n")
    return path


# -- what batchspawner would have asked for ---------------------------------------------------
def slurm_time(text: str) -> int:
    """Seconds of Slurm's ``--time`` (``MM``, ``MM:SS``, ``HH:MM:SS``, ``D-HH[:MM[:SS]]``)."""
    days = 0
    if "-" in text:
        day, text = text.split("-", 1)
        days = int(day)
        parts = [int(p) for p in text.split(":")] + [0, 0]
        return days * 86400 + parts[0] * 3600 + parts[1] * 60 + parts[2]
    parts = [int(p) for p in text.split(":")]
    if len(parts) == 1:
        return parts[0] * 60
    if len(parts) == 2:
        return parts[0] * 60 + parts[1]
    return parts[0] * 3600 + parts[1] * 60 + parts[2]


def torque_time(text: str) -> int:
    """Seconds of Torque's ``walltime`` (``[[HH:]MM:]SS``)."""
    total = 0
    for part in text.split(":"):
        total = total * 60 + int(part)
    return total


def memory_mib(text: str, bare_unit: float) -> int:
    """MiB of ``--mem``/``mem=``: a number with K/M/G/T (optional B), or bare in ``bare_unit`` MiB."""
    text = text.strip().lower().removesuffix("b")
    units = {"k": 1 / 1024, "m": 1, "g": 1024, "t": 1024**2}
    if text[-1] in units:
        return math.ceil(float(text[:-1]) * units[text[-1]])
    return max(1, math.ceil(int(text) * bare_unit))


def merged_settings(case: dict[str, Any], profile: dict[str, Any] | None) -> dict[str, Any]:
    """batchspawner's trait values for a job: class sections in inheritance order, then the
    wrapped child's config or the profile's config on top."""
    sections = case.get("class_config", {})
    order = [
        "Spawner",
        "BatchSpawnerBase",
        "SlurmSpawner",
        "TorqueSpawner",
        "MOSlurmSpawner",
        "SlurmFormSpawner",
    ]
    values: dict[str, Any] = {}
    for name in order + [n for n in sections if n.isidentifier() and n not in order]:
        values.update(sections.get(name, {}))
    for name, section in sections.items():
        if name.endswith("(child_config)"):
            values.update(section)
    if profile is not None:
        values.update(profile["config"])
    return values


def batchspawner_job(
    case: dict[str, Any], profile: dict[str, Any] | None, partition: str | None = None
) -> dict[str, Any]:
    """What batchspawner's own script submits for the default start.

    Slurm (``SlurmSpawner``'s script): ``--partition={req_partition}``, ``--cpus-per-task={req_nprocs}``,
    ``--mem={req_memory}`` (a bare number is MB), ``--time={req_runtime}``, GPUs from
    ``req_ngpus`` or ``--gres=gpu[:type]:N``; subclasses' ``req_nodes``/``req_ntasks``.
    Torque: ``-q {req_queue}``, ``ppn={req_nprocs}``, ``mem={req_memory}`` (bare: bytes),
    ``walltime`` (bare: seconds). moss: the partition chosen, its form's 1 core and 0 GPUs;
    slurmformspawner: its widgets' defaults. Unset: the scheduler's default (1 core,
    1 node, 0 GPUs, the default partition; memory and time are then not compared).
    """
    values = merged_settings(case, profile)
    torque = profile is not None and short(profile["class"]) in ("TorqueSpawner", "PBSSpawner")
    job: dict[str, Any] = {
        "partition": None,
        "cpus": 1,
        "gpus": 0,
        "nodes": 1,
        "ntasks": None,
        "ntasks_per_node": None,
    }
    queue = values.get("req_queue" if torque else "req_partition") or None
    job["partition"] = partition or queue
    if values.get("req_nprocs"):
        job["cpus"] = int(values["req_nprocs"])
    if values.get("req_memory"):
        job["memory"] = memory_mib(str(values["req_memory"]), 1 / 1024**2 if torque else 1)
    if values.get("req_runtime"):
        text = str(values["req_runtime"])
        job["walltime"] = torque_time(text) if torque else slurm_time(text)
    if values.get("req_ngpus"):
        job["gpus"] = int(values["req_ngpus"])
    for item in str(values.get("req_gres") or "").split(","):
        parts = item.split(":")
        if parts[0] == "gpu" and parts[-1].isdigit():
            job["gpus"] = int(parts[-1])
    for key in ("nodes", "ntasks", "ntasks_per_node"):
        if values.get(f"req_{key}"):
            job[key] = int(values[f"req_{key}"])
    for field in case.get("user_fields", []):
        if str(field.get("sets", "")).startswith("SbatchForm.") and "default" in field:
            kind, value = field["kind"], field["default"]
            if kind == "cpus":
                job["cpus"] = int(value)
            elif kind == "walltime-hours":
                job["walltime"] = round(float(value) * 3600)
            elif kind == "memory":
                job["memory"] = int(value)
            elif kind == "partition":
                job["partition"] = value
    return job


def expected_profiles(case: dict[str, Any]) -> dict[str, dict[str, Any] | None]:
    """slug -> the expected job (None: a local server, no batch job), for the profiles that
    have a counterpart: batchspawner classes (and their subclasses) and LocalProcessSpawner."""
    result: dict[str, dict[str, Any] | None] = {}
    for profile in case.get("profiles", []):
        name = short(profile["class"])
        if name == "LocalProcessSpawner":
            result[profile["key"]] = None
        elif name.endswith(("SlurmSpawner", "TorqueSpawner")):
            result[profile["key"]] = batchspawner_job(case, profile)
    for name in case.get("partitions", {}):
        result[name] = batchspawner_job(case, None, partition=name)
    if not result:
        result["default"] = batchspawner_job(case, None)
    return result


def spawner_class(name: str) -> Any:
    return next(ep for ep in entry_points(group="jupyterhub.spawners") if ep.name == name).load()


def test_all_13_cases_are_there() -> None:
    assert [int(p.name[:2]) for p in CASE_FILES] == list(range(40, 53))


@pytest.mark.parametrize("path", CASE_FILES, ids=[p.stem for p in CASE_FILES])
def test_migrated_config_loads_and_asks_for_the_same_jobs(path: Path, tmp_path: Path) -> None:
    case = load_case(path)
    config = write_config(case, tmp_path / "jupyterhub_config.py")
    extra = ["--scheduler", "slurm"] if "Slurm" in case["spawner"] else []
    done = run_migrate(str(config), *extra)
    assert done.returncode == 0, done.stderr
    out = tmp_path / "migrated" / "jupyterhub_config.py"
    out.parent.mkdir()
    out.write_text(done.stdout)
    c = PyFileConfigLoader(out.name, path=str(out.parent)).load_config()  # runs check_profiles(c)
    assert isinstance(c, Config)
    check_profiles(c)
    assert "# Not carried over:" in done.stdout

    cls = spawner_class(c.JupyterHub.spawner_class)
    spawner = cls(config=c, user=SimpleNamespace(name="alice", groups=[], url="/user/alice/"))
    expected = expected_profiles(case)
    if not spawner.profile_list:
        assert list(expected) == ["default"]
        jobs = {"default": JobRequest.from_mapping(spawner.profile_base_job())}
    else:
        profiles = parse_profile_list(spawner.profile_list, frozenset(spawner.trait_names()))
        base = Context(user="alice", base_job=spawner.profile_base_job(), base_backend=spawner.backend)
        limits = {
            profile_target(p, base).key: ClusterLimits().with_config(spawner.partition_limits)
            for p in profiles.profiles
        }
        ctx = Context(user="alice", base_job=base.base_job, base_backend=spawner.backend, limits=limits)
        jobs = {p.slug: resolve(profiles, {"profile": p.slug}, ctx).job_request() for p in profiles.profiles}
    assert sorted(jobs) == sorted(expected), done.stdout
    for slug, want in expected.items():
        if want is None:
            continue
        got = jobs[slug]
        for name, value in want.items():
            assert getattr(got, name) == value, (
                f"{slug}.{name}: {getattr(got, name)!r} != {value!r}\n{done.stdout}"
            )
    # every profile without a counterpart is in the table, by its key
    for profile in case.get("profiles", []):
        if profile["key"] not in expected:
            assert f"`profiles[{profile['key']}]`" in done.stdout
