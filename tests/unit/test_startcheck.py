"""The hub-start check: a bad configured value, or a bad value in a profile's overrides, stops the
hub at start with a message naming it; never a user's start with a 400 that blames the user."""

from __future__ import annotations

import subprocess
import sys
import textwrap
from pathlib import Path
from typing import Any

import pytest
from traitlets.config import Config

from jupyterhub_hpc.hubprocess import free_port
from jupyterhub_hpc.profiles import ProfileConfigError, check_profiles
from jupyterhub_hpc.profiles.model import parse_profile_list
from jupyterhub_hpc.profiles.overrides import check_override_values
from jupyterhub_hpc.request import shown
from jupyterhub_hpc.spawner import SlurmSpawner
from jupyterhub_hpc.startcheck import SpawnerConfigError, check_spawner_config
from jupyterhub_hpc.sudoers import SudoersError, load_spawner


def config(section: str = "SlurmSpawner", **values: Any) -> Config:
    c = Config()
    c.JupyterHub.spawner_class = "slurm"
    for key, value in values.items():
        setattr(c[section], key, value)
    return c


# -- the spawner's own values ---------------------------------------------------------------------


@pytest.mark.parametrize(
    ("section", "key", "value", "reason"),
    [
        ("SlurmSpawner", "memory", "4gigs", "not a memory size: '4gigs'"),
        ("HPCSpawner", "memory", "0M", "at least 1 MiB"),
        ("HPCSpawner", "walltime", "8h", "not a walltime: '8h'"),
        ("SlurmSpawner", "walltime", "00:99:00", "minutes must be below 60 (got '00:99:00')"),
        ("SlurmSpawner", "port_range", "9000", "not a port range: '9000'"),
        ("HPCSpawner", "port_range", "9100-9000", "not a port range: '9100-9000'"),
        ("Spawner", "port_range", "0-100", "not a port range: '0-100'"),  # any class of the MRO
    ],
)
def test_a_bad_unit_stops_the_start_check_naming_the_key_and_value(
    section: str, key: str, value: str, reason: str
) -> None:
    with pytest.raises(SpawnerConfigError) as info:
        check_profiles(config(section, **{key: value}))
    assert info.value.key == f"c.{section}.{key}"
    assert str(info.value).startswith(f"c.{section}.{key}: ") and reason in str(info.value)


def test_the_section_that_wins_is_the_one_named() -> None:
    c = config("HPCSpawner", memory="4G", walltime="nonsense")
    c.SlurmSpawner.walltime = "04:00:00"  # the subclass's section wins: the hub would use it
    assert check_spawner_config(c, SlurmSpawner).walltime == 4 * 3600
    c.SlurmSpawner.memory = "4 gigs"
    with pytest.raises(SpawnerConfigError, match=r"^c\.SlurmSpawner\.memory: not a memory size"):
        check_spawner_config(c, SlurmSpawner)


def test_other_traits_are_checked_too_and_good_values_pass() -> None:
    with pytest.raises(SpawnerConfigError, match=r"^c\.SlurmSpawner\.job_umask: .*'0999'"):
        check_profiles(config(job_umask="0999"))
    with pytest.raises(SpawnerConfigError, match=r"^c\.SlurmSpawner\.cpus: .*'four'"):
        check_profiles(config(cpus="four"))
    good = config(memory="8G", walltime="1-00:00:00", port_range="9000-9100", cpus=4)
    check_profiles(good)
    spawner = check_spawner_config(good, SlurmSpawner)
    assert (spawner.memory, spawner.walltime, str(spawner.port_range)) == (8192, 86400, "9000-9100")


def test_jupyterhub_stops_at_its_config_file(tmp_path: Path) -> None:
    """What `jupyterhub -f` does first: load the config file. JupyterHub raises its errors, so
    check_profiles(c) on the last line stops the hub before it serves anyone."""
    from jupyterhub.app import JupyterHub

    path = tmp_path / "jupyterhub_config.py"
    path.write_text(
        textwrap.dedent(
            """
            from jupyterhub_hpc.profiles import check_profiles
            c.JupyterHub.spawner_class = "slurm"
            c.SlurmSpawner.port_range = "9000"
            check_profiles(c)
            """
        )
    )
    with pytest.raises(SpawnerConfigError, match=r"c\.SlurmSpawner\.port_range: not a port range: '9000'"):
        JupyterHub().load_config_file(str(path))


@pytest.mark.parametrize(
    ("line", "named"),
    [
        ('c.SlurmSpawner.memory = "4gigs"', "c.SlurmSpawner.memory: not a memory size: '4gigs'"),
        ('c.HPCSpawner.walltime = "8 hours"', "c.HPCSpawner.walltime: not a walltime: '8 hours'"),
        (
            'c.SlurmSpawner.profile_list = [{"display_name": "A", "spawner_override": {"memory": "lots"}}]',
            "profile_list[0].spawner_override.memory",
        ),
    ],
)
def test_the_jupyterhub_process_exits_naming_the_bad_value(tmp_path: Path, line: str, named: str) -> None:
    """The real ``jupyterhub -f`` process: it exits at its config file, before it listens."""
    path = tmp_path / "jupyterhub_config.py"
    path.write_text(
        "from jupyterhub_hpc.profiles import check_profiles\n"
        'c.JupyterHub.spawner_class = "slurm"\n'
        f"{line}\ncheck_profiles(c)\n"
    )
    port = str(free_port())
    argv = [sys.executable, "-m", "jupyterhub", "-f", str(path), "--port", port]
    done = subprocess.run(argv, cwd=tmp_path, capture_output=True, text=True, timeout=120)
    assert done.returncode != 0
    assert named in done.stderr + done.stdout, done.stderr[-2000:]
    assert not (tmp_path / "jupyterhub.sqlite").exists()  # stopped before its database


def test_the_sudoers_and_audit_commands_name_the_bad_value(tmp_path: Path) -> None:
    path = tmp_path / "jupyterhub_config.py"
    path.write_text('c.SlurmSpawner.walltime = "forever"\n')
    with pytest.raises(SudoersError, match=r"c\.SlurmSpawner\.walltime: not a walltime: 'forever'"):
        load_spawner(str(path), "slurm")


# -- the values inside profile overrides ------------------------------------------------------------


def profiles(*overrides: dict[str, Any], **options: Any) -> list[dict[str, Any]]:
    result: list[dict[str, Any]] = [
        {"display_name": f"P{i}", "slug": f"p{i}", "spawner_override": o} for i, o in enumerate(overrides)
    ]
    if options:
        result.append({"display_name": "Options", "slug": "opts", "profile_options": options})
    return result


@pytest.mark.parametrize(
    ("override", "reason"),
    [
        ({"partition": "jupyter-long,,jupyter-overflow"}, "each partition must be 1-128 letters, digits"),
        ({"partition": "long,long"}, "a partition is named twice"),
        ({"gres": ["nvme:100", "gpu a100"]}, "each generic resource must be name[:type][:count]"),
        ({"ntasks": 0}, "between 1 and 1000000"),
        ({"workdir": "/scratch/../etc"}, "must not contain '..'"),
        ({"workdir": "scratch"}, "an absolute path"),
        ({"partition": ""}, "must be 1-128 letters"),
        ({"memory": "4gigs"}, "not a memory size: '4gigs'"),
        ({"walltime": "25:99"}, "seconds must be below 60"),
        ({"walltime": 0}, "at least one minute"),
        ({"cpus": "four"}, "must be a whole number between 1 and 100000"),
        ({"cpus": 0}, "between 1 and 100000"),
        ({"gpus": -1}, "between 0 and 1024"),
        ({"account": "a b"}, "letters, digits"),
        ({"port_range": "9000"}, "not a port range: '9000'"),
        ({"kernel_transport": "udp"}, "kernel_transport"),
        ({"memory": None}, "must be a number of MiB"),
    ],
)
def test_a_bad_override_is_an_admin_error_at_start(override: dict[str, Any], reason: str) -> None:
    c = config(profile_list=profiles({"cpus": 2}, override))
    with pytest.raises(ProfileConfigError) as info:
        check_profiles(c)
    ((key, value),) = override.items()
    assert info.value.key == f"profile_list[1].spawner_override.{key}"
    assert f"profile 'p1' sets {key} = {shown(value)}: " in info.value.reason
    assert reason in info.value.reason


def test_several_partitions_and_the_new_job_fields_pass_the_start_check() -> None:
    override = {
        "partition": "jupyter-long,jupyter-overflow",  # Aalto's
        "nodes": 2,
        "ntasks": 8,
        "ntasks_per_node": 4,
        "gpus_per_task": 1,
        "gres": ["nvme:100", "shard:1"],
        "workdir": "{home}/work",
    }
    check_profiles(config(profile_list=profiles({"cpus": 2}, override)))


def test_gpus_twice_is_an_admin_error_at_start() -> None:
    with pytest.raises(ProfileConfigError, match="GPUs are asked for by gpus"):
        check_profiles(config(profile_list=profiles({"gpus": 1, "gres": ["gpu:2"]})))


def test_kubespawner_override_and_profile_level_names_are_checked() -> None:
    c = config(profile_list=[{"display_name": "K", "kubespawner_override": {"walltime": "1 day"}}])
    with pytest.raises(ProfileConfigError, match=r"profile_list\[0\]\.kubespawner_override\.walltime: "):
        check_profiles(c)


def test_choices_substitute_value_as_a_start_does() -> None:
    option = {
        "display_name": "Partition",
        "choices": {"short": {"display_name": "Short"}, "long;overflow": {"display_name": "Both"}},
        "spawner_override": {"partition": "{value}"},
    }
    with pytest.raises(ProfileConfigError) as info:
        check_profiles(config(profile_list=profiles(where=option)))
    assert info.value.key == "profile_list[0].profile_options.where.spawner_override.partition"
    assert "option 'where' = 'long;overflow' sets partition = 'long;overflow'" in info.value.reason
    bad_choice = {"choices": {"gpu": {"spawner_override": {"gpus": "two"}}}}
    with pytest.raises(
        ProfileConfigError, match=r"where\.choices\.gpu\.spawner_override\.gpus: .*choice 'gpu'"
    ):
        check_profiles(config(profile_list=profiles(where=bad_choice)))


def test_numbers_substitute_their_bounds_and_default() -> None:
    cores = {"type": "integer", "min": 1, "max": 200_000, "spawner_override": {"cpus": "{value}"}}
    with pytest.raises(ProfileConfigError, match=r"option 'cores' = '200000' sets cpus = '200000'"):
        check_profiles(config(profile_list=profiles(cores=cores)))
    cores["max"] = 16
    check_profiles(config(profile_list=profiles(cores=cores)))


def test_what_depends_on_the_user_or_on_code_is_left_to_the_start() -> None:
    write_in = {
        "choices": {"a": {}},
        "unlisted_choice": {"enabled": True, "spawner_override": {"partition": "x-{value}"}},
    }
    text = {"type": "text", "spawner_override": {"job_name": "{value}"}}
    good = profiles({"walltime": "04:00:00", "memory": "8G", "partition": "gpu", "port_range": "9000-9100"})
    good.append({"display_name": "Code", "spawner_override": {"environment": lambda spawner: {"A": "1"}}})
    check_profiles(config(profile_list=[*good, *profiles(name=write_in, label=text)[-1:]]))


def test_job_fields_are_checked_without_a_spawner() -> None:
    parsed = parse_profile_list(profiles({"memory": "9000T"}))
    with pytest.raises(ProfileConfigError, match="at most 1024T"):
        check_override_values(parsed)


def test_a_profiles_container_must_be_a_listed_image_at_start() -> None:
    images = [{"name": "deb12", "kind": "directory", "location": "/srv/images/deb12"}]
    good = [{"display_name": "D", "container": "deb12"}]
    check_profiles(config(profile_list=good, container_images=images))
    with pytest.raises(ProfileConfigError) as info:
        check_profiles(
            config(profile_list=[{"display_name": "D", "container": "deb11"}], container_images=images)
        )
    assert info.value.key == "profile_list[0].container_image"  # the trait the field sets
    assert "sets container_image = 'deb11': not one of container_images (deb12)" in info.value.reason
    choice = {"choices": {"old": {"display_name": "Old", "spawner_override": {"container_image": "deb9"}}}}
    listed_by_choice = [{"display_name": "D", "profile_options": {"image": choice}}]
    with pytest.raises(ProfileConfigError, match="not one of container_images"):
        check_profiles(config(profile_list=listed_by_choice, container_images=images))
    # the profile field is the trait it sets
    profile = parse_profile_list(good, frozenset({"container_image"})).profiles[0]
    assert profile.all_overrides == {"container_image": "deb12"}
