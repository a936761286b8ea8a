"""The Slurm parsers on the outputs of every Slurm version tested live: 22.05 (Debian 12,
``tests/data/slurm/22.05``) and 24.11 (Debian 13's, ``tests/data/slurm/24.11``, made by ``record.py``
there on the cluster of scripts/slurm24.sh).

Both directories hold the same scenario, one job per role (running, pending for each reason, completed,
failed, cancelled, timeout); the roles' ids are in ``jobs.json`` (24.11) or the README (22.05, below).
Each test runs for each version, so a format change between versions shows up as a failing
parameter. The ``squeue --Format`` recordings ask for more fields than
:data:`~jupyterhub_hpc.backends.slurm.SQUEUE_FIELDS`: each line is re-laid out, value for value, in the
parser's field order (``Field:|`` prints every value bare with ``|`` after it, in both versions).
``squeue-status-argv.txt`` and ``sinfo-node-format.txt`` (24.11) are the backend's own argv, parsed as
recorded.
"""

from __future__ import annotations

import json
import re
from datetime import datetime
from functools import cache
from pathlib import Path
from typing import Any

import pytest

from jupyterhub_hpc.backends.base import QueryError, SubmitError
from jupyterhub_hpc.backends.slurm import (
    SQUEUE_FIELDS,
    SlurmBackend,
    expand_hostlist,
    parse_exit_code,
    parse_slurm_time,
    parse_time_limit,
    parse_wait_status,
)
from jupyterhub_hpc.backends.slurm_limits import SINFO_FIELDS, parse_sinfo_nodes
from jupyterhub_hpc.commands import CommandResult
from jupyterhub_hpc.states import JobState

DATA = Path(__file__).resolve().parents[1] / "data" / "slurm"
VERSIONS = ["22.05", "24.11"]
BACKEND = SlurmBackend()
#: the nodes each recording cluster has (what squeue reports as BatchHost)
NODES = {"22.05": {"vm"}, "24.11": {"s24n1", "s24n2"}}
#: the 22.05 recordings' job ids by role (their README's table)
ROLES_2205 = {
    "running": "10", "bigmem-running": "14", "pending-begin": "11", "pending-resources": "15",
    "pending-priority": "16", "completed": "8", "failed": "9", "cancelled": "12", "timeout": "13",
}  # fmt: skip
#: what each role's job is, in every version
EXPECTED: dict[str, dict[str, Any]] = {
    "running": {"state": JobState.RUNNING, "reason": None, "exit_code": None, "partition": "debug"},
    "bigmem-running": {"state": JobState.RUNNING, "reason": None, "exit_code": None},
    "bigmem-running-2": {"state": JobState.RUNNING, "reason": None, "exit_code": None},
    "pending-begin": {"state": JobState.PENDING, "host": None, "reason": "BeginTime", "exit_code": None},
    "pending-resources": {"state": JobState.PENDING, "host": None, "reason": "Resources", "exit_code": None},
    "pending-priority": {"state": JobState.PENDING, "host": None, "reason": "Priority", "exit_code": None},
    "completed": {"state": JobState.COMPLETED, "reason": None, "exit_code": 0},
    "failed": {"state": JobState.FAILED, "reason": "NonZeroExitCode", "exit_code": 3},
    "cancelled": {"state": JobState.CANCELLED, "reason": None, "exit_code": 128 + 15},
    "timeout": {
        "state": JobState.TIMEOUT,
        "reason": "TimeLimit",
        "exit_code": 128 + 15,
        "partition": "short",
    },
}
SCONTROL_2205 = {
    "completed": "completed", "failed": "failed", "running": "running", "pending-begin": "pending-begin",
    "cancelled": "cancelled", "timeout": "timeout", "pending-resources": "pending-resources",
    "pending-priority": "pending-priority",
}  # fmt: skip


# -- reading the recordings --------------------------------------------------------------------


@cache
def roles(version: str) -> dict[str, str]:
    if version == "22.05":
        return ROLES_2205
    return dict(json.loads((DATA / version / "jobs.json").read_text()))


def ids(version: str) -> list[str]:
    return list(roles(version).values())


def recorded_command(version: str, name: str) -> tuple[str, int]:
    lines = (DATA / version / "commands.txt").read_text().splitlines()
    for i, line in enumerate(lines):
        match = re.match(rf"{re.escape(name)}\s+\(rc=(\d+)\)", line)
        if match:
            return lines[i + 1].strip().removeprefix("$ "), int(match.group(1))
    raise LookupError(f"{name} is not in {version}/commands.txt")


def recorded_format(version: str, name: str) -> list[str]:
    """The ``--Format`` items of the command behind ``name``."""
    command, _ = recorded_command(version, name)
    spec = re.search(r"--Format='([^']*)'", command)
    assert spec, command
    return spec.group(1).split(",")


def relayout(
    version: str, name: str, fields: tuple[str, ...] = SQUEUE_FIELDS, *, missing_ok: bool = False
) -> str:
    """The recorded lines, value for value, in ``fields`` order with ``|`` after each (with
    ``missing_ok``, a field the recording did not ask for is empty)."""
    items = recorded_format(version, name)
    names = [item.split(":")[0].lower() for item in items]
    out = []
    for line in (DATA / version / name).read_text().splitlines():
        if items[-1].endswith(":|"):
            assert line.endswith("|"), line
            line = line[:-1]
        values = line.split("|", len(names) - 1)
        assert len(values) == len(names), line
        by_name = dict(zip(names, values, strict=True))
        if missing_ok:
            by_name = {f.lower(): by_name.get(f.lower(), "") for f in fields}
        out.append("".join(by_name[f.lower()] + "|" for f in fields))
    return "".join(line + "\n" for line in out)


def recorded(version: str, name: str, *, relaid: bool = False, missing_ok: bool = False) -> CommandResult:
    command, rc = recorded_command(version, name)
    stderr_file = DATA / version / (name.rsplit(".", 1)[0] + ".stderr")
    return CommandResult(
        argv=tuple(command.split()),
        returncode=rc,
        stdout=relayout(version, name, missing_ok=missing_ok)
        if relaid
        else (DATA / version / name).read_text(),
        stderr=stderr_file.read_text() if stderr_file.exists() else "",
        duration=0.0,
    )


def scontrol_text(version: str, role: str) -> str:
    suffix = SCONTROL_2205.get(role) if version == "22.05" else role
    text = (DATA / version / f"scontrol-show-job-{suffix}.txt").read_text()
    assert f"JobId={roles(version)[role]} " in text
    return text


def scontrol_field(version: str, role: str, field: str) -> str:
    match = re.search(rf"\b{field}=(\S+)", scontrol_text(version, role))
    assert match, field
    return match.group(1)


def role_cases() -> list[tuple[str, str]]:
    cases = [("22.05", role) for role in ROLES_2205]
    return cases + [("24.11", role) for role in EXPECTED]


# -- the recordings are what they say ---------------------------------------------------------------


def test_24_11_recordings_come_from_slurm_24_11() -> None:
    data = DATA / "24.11"
    ping, _ = recorded_command("24.11", "scontrol-ping.txt")
    assert ping == "scontrol ping"
    assert "hpc24" in (data / "sinfo.json").read_text() or "s24n1" in (data / "sinfo.json").read_text()
    version = json.loads((data / "squeue.json").read_text())["meta"]["slurm"]["version"]
    assert (version["major"], version["minor"]) in (("24", "11"), (24, 11)), version
    assert set(roles("24.11")) == set(EXPECTED)
    assert all(int(job) >= 2400001 for job in ids("24.11")), "the 24.11 cluster's ids start at 2400001"


@pytest.mark.parametrize("version", VERSIONS)
def test_parser_fields_were_recorded(version: str) -> None:
    recorded_names = {item.split(":")[0].lower() for item in recorded_format(version, "squeue-format.txt")}
    assert {f.lower() for f in SQUEUE_FIELDS} <= recorded_names


# -- squeue ------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "name", ["squeue-format.txt", "squeue-format-as-user.txt", "after-outage-squeue-format.txt"]
)
@pytest.mark.parametrize(("version", "role"), role_cases())
def test_every_recorded_state(version: str, role: str, name: str) -> None:
    statuses = BACKEND.parse_status(recorded(version, name, relaid=True), ids(version))
    assert set(statuses) == set(ids(version))
    status = statuses[roles(version)[role]]
    for field, value in EXPECTED[role].items():
        assert getattr(status, field) == value, f"{version} {role} {field}"
    if status.state is not JobState.PENDING:
        assert status.host in NODES[version], status.host
    if status.state is JobState.PENDING:
        assert status.expected_start is not None or role != "pending-begin"


@pytest.mark.parametrize(
    ("version", "role"), [c for c in role_cases() if c[0] != "22.05" or c[1] in SCONTROL_2205]
)
def test_squeue_agrees_with_scontrol(version: str, role: str) -> None:
    """State, reason, exit code and times from squeue's layout are what scontrol showed for the job."""
    status = BACKEND.parse_status(recorded(version, "squeue-format.txt", relaid=True), ids(version))[
        roles(version)[role]
    ]
    assert status.state is BACKEND.map_state(scontrol_field(version, role, "JobState"))
    if status.state.is_final:
        assert status.exit_code == parse_exit_code(scontrol_field(version, role, "ExitCode"))
    reason = scontrol_field(version, role, "Reason")
    assert status.reason == (None if reason == "None" else reason)
    if version == "24.11":
        assert status.end_time == parse_slurm_time(scontrol_field(version, role, "EndTime"))
        if status.state is JobState.PENDING:
            assert status.expected_start == parse_slurm_time(scontrol_field(version, role, "StartTime"))
        else:
            assert status.host == scontrol_field(version, role, "BatchHost")


@pytest.mark.parametrize(
    ("version", "role"), [c for c in role_cases() if c[0] != "22.05" or c[1] in SCONTROL_2205]
)
def test_nodes_start_and_time_limit_agree_with_scontrol(version: str, role: str) -> None:
    """The job card's fields: squeue's NodeList (expanded), StartTime and TimeLimit are what
    scontrol showed (NodeList, StartTime, TimeLimit) for the same job."""
    status = BACKEND.parse_status(recorded(version, "squeue-format.txt", relaid=True), ids(version))[
        roles(version)[role]
    ]
    assert status.time_limit_seconds == parse_time_limit(scontrol_field(version, role, "TimeLimit"))
    if status.state is JobState.RUNNING:
        assert status.nodes == expand_hostlist(scontrol_field(version, role, "NodeList"))
        assert status.nodes and status.nodes[0] == status.host
        assert status.expected_start == parse_slurm_time(scontrol_field(version, role, "StartTime"))
    if status.state is JobState.PENDING:
        assert status.nodes == ()


def test_time_limits_and_host_lists() -> None:
    assert parse_time_limit("365-00:00:00") == 365 * 86400
    assert parse_time_limit("1:00:00") == 3600
    assert parse_time_limit("30:00") == 1800
    assert parse_time_limit("UNLIMITED") is None
    assert parse_time_limit("NOT_SET") is None
    assert expand_hostlist("n[1-3,07],gpu1") == ("n1", "n2", "n3", "n07", "gpu1")
    assert expand_hostlist("vm") == ("vm",)
    assert expand_hostlist("rack[01-02]-n[1-2]") == ("rack01-n[1-2]", "rack02-n[1-2]")
    assert expand_hostlist("") == expand_hostlist("(null)") == expand_hostlist("n/a") == ()
    assert len(expand_hostlist("n[1-100000]")) == 4096


@pytest.mark.parametrize("version", VERSIONS)
def test_trailing_delimiter_layout_parses_the_same(version: str) -> None:
    plain = BACKEND.parse_status(recorded(version, "squeue-format.txt", relaid=True), ids(version))
    trailing = BACKEND.parse_status(
        recorded(version, "squeue-format-trailing-delim.txt", relaid=True), ids(version)
    )
    assert plain == trailing


def test_the_backends_own_status_argv_parses_as_recorded() -> None:
    """24.11: the backend's exact ``squeue`` argv (recorded with this package's status_argv)."""
    command, rc = recorded_command("24.11", "squeue-status-argv.txt")
    assert rc == 0
    recorded_fields = tuple(item.split(":")[0] for item in recorded_format("24.11", "squeue-status-argv.txt"))
    answer = recorded("24.11", "squeue-status-argv.txt")
    if (
        recorded_fields != SQUEUE_FIELDS
    ):  # the parser's fields changed since (NodeList, TimeLimit added): the recorded values, re-laid out
        answer = recorded("24.11", "squeue-status-argv.txt", relaid=True, missing_ok=True)
    statuses = BACKEND.parse_status(answer, ids("24.11"))
    reference = BACKEND.parse_status(recorded("24.11", "squeue-format.txt", relaid=True), ids("24.11"))
    for job in ids("24.11"):
        assert (statuses[job].state, statuses[job].reason, statuses[job].exit_code) == (
            reference[job].state,
            reference[job].reason,
            reference[job].exit_code,
        ), job
    assert "--states=all" in command and "--noheader" in command


@pytest.mark.parametrize("version", VERSIONS)
def test_missing_ids_are_not_found(version: str) -> None:
    running = roles(version)["running"]
    statuses = BACKEND.parse_status(
        recorded(version, "squeue-format-some-unknown.txt", relaid=True), [running, "999999"]
    )
    assert statuses[running].state is JobState.RUNNING
    assert statuses["999999"].state is JobState.NOT_FOUND


@pytest.mark.parametrize("version", VERSIONS)
def test_several_unknown_ids_are_not_found(version: str) -> None:
    answer = recorded(version, "squeue-format-all-unknown.txt")
    statuses = BACKEND.parse_status(answer, ["999998", "999999"])
    assert {s.state for s in statuses.values()} == {JobState.NOT_FOUND}


@pytest.mark.parametrize("version", VERSIONS)
def test_one_unknown_id_is_not_found(version: str) -> None:
    answer = recorded(version, "squeue-format-single-unknown.txt")
    assert BACKEND.parse_status(answer, ["999999"])["999999"].state is JobState.NOT_FOUND


@pytest.mark.parametrize("version", VERSIONS)
def test_controller_outage_is_a_query_error(version: str) -> None:
    answer = recorded(version, "outage-squeue-format.txt")
    assert answer.returncode != 0
    with pytest.raises(QueryError, match="Unable to contact slurm controller"):
        BACKEND.parse_status(answer, ids(version))


@pytest.mark.parametrize("version", VERSIONS)
def test_an_unknown_format_field_is_a_query_error(version: str) -> None:
    """``ExitCode`` is no ``--Format`` field: squeue says so on stderr (and exits 0 in 22.05)."""
    answer = recorded(version, "squeue-format-invalid-field.txt")
    assert "Invalid job format specification: ExitCode" in answer.stderr
    with pytest.raises(QueryError):
        BACKEND.parse_status(answer, [roles(version)["running"]])


# -- sbatch, scancel, sacct, sinfo --------------------------------------------------------------------


@pytest.mark.parametrize("version", VERSIONS)
def test_parse_submit_recorded_id(version: str) -> None:
    assert BACKEND.parse_submit(recorded(version, "sbatch-parsable.txt")) == roles(version)["completed"]


@pytest.mark.parametrize("version", VERSIONS)
@pytest.mark.parametrize(
    "name",
    [
        "sbatch-rejected-memory.txt",
        "sbatch-rejected-partition.txt",
        "sbatch-rejected-timelimit.txt",
        "outage-sbatch.txt",
    ],
)
def test_parse_submit_rejections_carry_slurms_words(version: str, name: str) -> None:
    answer = recorded(version, name)
    assert answer.returncode != 0 and answer.stderr.strip()
    with pytest.raises(SubmitError) as info:
        BACKEND.parse_submit(answer)
    assert str(info.value) == answer.stderr.strip()


@pytest.mark.parametrize("version", VERSIONS)
@pytest.mark.parametrize("name", ["scancel-cancelled.txt", "scancel-unknown.txt"])
def test_parse_cancel_accepts_recorded_success(version: str, name: str) -> None:
    BACKEND.parse_cancel(recorded(version, name))


@pytest.mark.parametrize("version", VERSIONS)
def test_parse_cancel_refusal_raises(version: str) -> None:
    answer = recorded(version, "scancel-other-user.txt")
    assert answer.returncode != 0
    with pytest.raises(SubmitError, match="Access/permission denied"):
        BACKEND.parse_cancel(answer)


@pytest.mark.parametrize("version", VERSIONS)
@pytest.mark.parametrize("name", ["sacct.txt", "sacct-as-user.txt"])
def test_parse_accounting_recorded_disabled_accounting(version: str, name: str) -> None:
    with pytest.raises(QueryError, match="Slurm accounting storage is disabled"):
        BACKEND.parse_accounting(recorded(version, name), ids(version))


def test_sinfo_node_format_gives_the_partitions() -> None:
    """24.11: the backend's own ``sinfo --Node --Format`` argv (limits_argv), as recorded."""
    command, rc = recorded_command("24.11", "sinfo-node-format.txt")
    assert rc == 0
    fields = tuple(item.split(":")[0] for item in recorded_format("24.11", "sinfo-node-format.txt"))
    text = (DATA / "24.11" / "sinfo-node-format.txt").read_text()
    if fields != SINFO_FIELDS:  # the parser's fields changed since: the recorded values, re-laid out
        text = relayout("24.11", "sinfo-node-format.txt", SINFO_FIELDS)
    partitions = parse_sinfo_nodes(text)
    assert set(partitions) == {"debug", "short"}
    debug, short = partitions["debug"], partitions["short"]
    assert debug.default and not short.default
    assert debug.up and short.up
    assert (debug.max_walltime, short.max_walltime) == (None, 300)
    assert (debug.nodes, debug.cpus_per_node, debug.memory_per_node) == (2, 4, 4000)
    assert debug.gpus_per_node == {}
    assert "--Node" in command


def test_recorded_times_parse() -> None:
    """24.11's squeue times are ISO local times like 22.05's; pending jobs have an expected start."""
    statuses = BACKEND.parse_status(recorded("24.11", "squeue-format.txt", relaid=True), ids("24.11"))
    for role in ("completed", "failed", "cancelled", "timeout"):
        assert isinstance(statuses[roles("24.11")[role]].end_time, datetime), role
    assert isinstance(statuses[roles("24.11")["pending-begin"]].expected_start, datetime)


@pytest.mark.parametrize(
    ("text", "code"),
    [("768", 3), ("15", 143), ("0", 0), ("3:0", 3), ("0:15", 143), ("0:0", 0), ("1:0", 1), ("0:9", 137)],
)
def test_squeue_exit_code_of_either_version(text: str, code: int) -> None:
    """squeue's ``exit_code``: a raw wait status in 22.05 (``768``), ``code:signal`` in 24.11 (``3:0``)."""
    assert parse_wait_status(text) == code
