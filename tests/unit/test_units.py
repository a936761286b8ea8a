"""The unit trait types (memory, walltime, port range): parsed once when set, into canonical
units, by the same functions as a user's request and the launcher's ``--port-range``."""

from __future__ import annotations

import argparse
import copy
from types import SimpleNamespace
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from traitlets import HasTraits, TraitError
from traitlets.config import Config

from jupyterhub_hpc.request import MAX_WALLTIME, JobRequest, RequestError, Seconds
from jupyterhub_hpc.singleuser.launcher import parse_range
from jupyterhub_hpc.singleuser.portrange import PortRange, parse_port_range
from jupyterhub_hpc.spawner import SlurmSpawner
from jupyterhub_hpc.units import MemoryTrait, PortRangeTrait, UnitTraitError, WalltimeTrait

USER = SimpleNamespace(name="hpcuser1", groups=[], url="/user/hpcuser1/")


class Job(HasTraits):
    memory = MemoryTrait("1G", help="memory")
    walltime = WalltimeTrait("08:00:00", help="walltime")
    port_range = PortRangeTrait("", help="ports")


# -- good values, canonical units ----------------------------------------------------------------


@pytest.mark.parametrize(
    ("value", "mib"),
    [("8G", 8192), ("512M", 512), (2048, 2048), ("1.5GiB", 1536), ("1T", 1024**2), (" 4g ", 4096), ("1K", 1)],
)
def test_memory_is_stored_as_whole_mib(value: object, mib: int) -> None:
    job = Job(memory=value)
    assert job.memory == mib and type(job.memory) is int


@pytest.mark.parametrize(
    ("value", "seconds"),
    [
        ("08:00:00", 8 * 3600),
        ("1-00:00:00", 86400),
        (90, 5400),  # a bare number is minutes, as for Slurm --time
        ("90", 5400),
        ("30:00", 1800),
        ("1-2", 93600),
        ("100:00:00", 360_000),
        (Seconds(61), 61),  # already seconds: kept
    ],
)
def test_walltime_is_stored_as_seconds(value: object, seconds: int) -> None:
    job = Job(walltime=value)
    assert job.walltime == seconds and isinstance(job.walltime, Seconds)


@pytest.mark.parametrize(
    ("value", "expected"),
    [("9000-9100", PortRange(9000, 9100)), ("1-65535", PortRange(1, 65535)), ("", None), (None, None)],
)
def test_port_range_is_stored_as_a_range(value: object, expected: PortRange | None) -> None:
    job = Job(port_range=value)
    assert job.port_range == expected
    if expected is not None:
        assert str(job.port_range) == value
        assert expected.low in job.port_range and expected.high + 1 not in job.port_range


def test_defaults_are_canonical_and_shown_as_an_admin_writes_them() -> None:
    job = Job()
    assert (job.memory, job.walltime, job.port_range) == (1024, 8 * 3600, None)
    traits = SlurmSpawner.class_traits()
    assert [traits[n].default_value_repr() for n in ("memory", "walltime", "port_range")] == [
        "'1G'",
        "'08:00:00'",
        "''",
    ]


# -- bad values: a TraitError naming the trait and the value -----------------------------------


@pytest.mark.parametrize(
    ("name", "value", "reason"),
    [
        ("memory", "4gigs", "not a memory size: '4gigs'"),
        ("memory", "0", "at least 1 MiB (got '0')"),
        ("memory", "\uff14G", "not a memory size"),  # fullwidth 4: ASCII digits only
        ("memory", True, "not true/false"),
        ("memory", "2000T", "at most 1024T"),
        ("walltime", "25:99", "seconds must be below 60 (got '25:99')"),
        ("walltime", "00:99:99", "minutes must be below 60"),
        ("walltime", "1-24:00:00", "hours must be below 24"),
        ("walltime", "\u0663\u0660", "in the digits 0-9"),  # Arabic-Indic 30
        ("walltime", "366-00:00:00", "at most 365-00:00:00"),
        ("walltime", 0.5, "whole minutes"),
        ("walltime", "8 hours", "not a walltime: '8 hours'"),
        ("port_range", "9000", "not a port range: '9000'"),
        ("port_range", "9100-9000", "not a port range: '9100-9000'"),
        ("port_range", "0-10", "not a port range"),
        ("port_range", " 9000-9100", "not a port range"),
        ("port_range", "9000-65536", "not a port range"),
        ("port_range", 9000, "must be text LOW-HIGH"),
    ],
)
def test_a_bad_value_names_the_trait_and_the_value(name: str, value: object, reason: str) -> None:
    with pytest.raises(UnitTraitError) as info:
        SlurmSpawner(**{name: value})
    error = info.value
    assert isinstance(error, TraitError)
    assert str(error).startswith(f"SlurmSpawner.{name}: ") and reason in str(error)
    assert error.trait == f"SlurmSpawner.{name}" and error.value == value


def test_a_bad_config_value_fails_the_spawner_construction() -> None:
    """What JupyterHub does for each user: SlurmSpawner(config=c) raises, naming it."""
    c = Config()
    c.HPCSpawner.walltime = "8h"
    with pytest.raises(TraitError, match=r"SlurmSpawner\.walltime: not a walltime: '8h'"):
        SlurmSpawner(config=c)


# -- one parser for the admin, the user and the job --------------------------------------------

numbers_and_text = st.one_of(
    st.text(alphabet="0123456789:-.GMKTiB \t\uff13\u0663", max_size=12),
    st.integers(min_value=-10, max_value=2**42),
    st.floats(allow_nan=True, allow_infinity=True),
    st.booleans(),
)


def _outcome(parse: Any, value: object) -> object:
    try:
        return parse(value)
    except (ValueError, TraitError, RequestError):
        return "refused"


@settings(max_examples=400, deadline=None)
@given(field=st.sampled_from(["memory", "walltime"]), value=numbers_and_text)
def test_the_trait_accepts_what_a_request_accepts_and_reads_it_alike(field: str, value: object) -> None:
    as_trait = _outcome(lambda v: getattr(Job(**{field: v}), field), value)
    as_request = _outcome(lambda v: getattr(JobRequest.from_mapping({field: v}), field), value)
    assert as_trait == as_request


@settings(max_examples=400, deadline=None)
@given(text=st.one_of(st.from_regex(r"[0-9]{1,6}-[0-9]{1,6}", fullmatch=True), st.text(max_size=12)))
def test_the_hub_and_the_launcher_read_a_port_range_alike(text: str) -> None:
    def launcher(t: str) -> object:
        try:
            return parse_range(t)
        except argparse.ArgumentTypeError:
            return "refused"

    def hub(t: str) -> object:
        if t == "":
            return "refused"  # the hub's "no range": the launcher is then given no --port-range
        ports = _outcome(lambda v: Job(port_range=v).port_range, t)
        return ports if ports == "refused" else (ports.low, ports.high)  # type: ignore[union-attr]

    assert launcher(text) == hub(text) == _outcome(lambda v: astuple(parse_port_range(v)), text)


def astuple(ports: PortRange) -> tuple[int, int]:
    return ports.low, ports.high


# -- a stored value set again means the same -------------------------------------------------------


@settings(max_examples=200, deadline=None)
@given(
    memory=st.integers(min_value=1, max_value=2**30),
    walltime=st.integers(min_value=60, max_value=MAX_WALLTIME),
    low=st.integers(min_value=1, max_value=65535),
    width=st.integers(min_value=0, max_value=200),
)
def test_setting_a_stored_value_again_changes_nothing(
    memory: int, walltime: int, low: int, width: int
) -> None:
    ports = PortRange(low, min(low + width, 65535))
    job = Job(memory=memory, walltime=Seconds(walltime), port_range=str(ports))
    before = (job.memory, job.walltime, job.port_range)
    job.memory, job.walltime, job.port_range = copy.deepcopy(before)
    assert (job.memory, job.walltime, job.port_range) == before == (memory, walltime, ports)
    assert isinstance(copy.deepcopy(job.walltime), Seconds)


def test_a_profile_override_is_undone_to_the_same_seconds() -> None:
    """apply_profile_overrides saves the trait's value and sets it back: seconds must stay seconds."""
    spawner = SlurmSpawner(user=USER, walltime="1-02:03:04", memory="3G", port_range="9000-9100")
    spawner.apply_profile_overrides([("walltime", "01:00:00"), ("memory", 512), ("port_range", "")])
    assert (spawner.walltime, spawner.memory, spawner.port_range) == (3600, 512, None)
    spawner.undo_profile_overrides()
    assert (spawner.walltime, spawner.memory) == (86400 + 2 * 3600 + 3 * 60 + 4, 3072)
    assert spawner.port_range == PortRange(9000, 9100)


def test_command_line_text_is_parsed_like_config() -> None:
    c = Config()
    trait = SlurmSpawner.class_traits()["memory"]
    c.SlurmSpawner.memory = trait.from_string("4G")
    assert SlurmSpawner(config=c).memory == 4096


# -- what the spawner does with them -------------------------------------------------------------------


def test_the_spawner_uses_the_parsed_units() -> None:
    spawner = SlurmSpawner(user=USER, memory="2G", walltime="1-00:00:30", port_range="20000-20999")
    request = spawner.job_request()
    assert (request.memory, request.walltime) == (2048, 86430)  # seconds, not minutes
    argv = spawner.launcher_argv()
    assert argv[argv.index("--port-range") + 1] == "20000-20999"
    assert spawner.port_bounds() == (20000, 20999)
    plain = SlurmSpawner(user=USER)
    assert "--port-range" not in plain.launcher_argv() and plain.port_bounds() == (1024, 65535)
    assert plain.job_request().walltime == 8 * 3600
