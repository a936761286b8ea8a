"""Slurm parsers on outputs recorded from a real Slurm 22.05 (``tests/data/slurm/22.05``).

The ``squeue --Format`` recordings ask for more fields, in another order, than
:data:`~jupyterhub_hpc.backends.slurm.SQUEUE_FIELDS`. With ``Field:|`` Slurm prints every
value bare and followed by ``|`` whatever its position (README there), so each recorded
line is re-laid out, value for value, in the parser's field order. A parser field that was
not recorded makes these tests fail: record it before relying on it.
"""

from __future__ import annotations

import re
from datetime import datetime
from pathlib import Path
from typing import Any

import pytest

from jupyterhub_hpc.backends.base import QueryError, SubmitError
from jupyterhub_hpc.backends.slurm import (
    SQUEUE_FIELDS,
    SlurmBackend,
    parse_exit_code,
    parse_slurm_time,
    parse_wait_status,
)
from jupyterhub_hpc.commands import CommandResult
from jupyterhub_hpc.request import JobRequest
from jupyterhub_hpc.states import JobState

DATA = Path(__file__).resolve().parents[1] / "data" / "slurm" / "22.05"
ALL_IDS = ["10", "11", "15", "16", "8", "9", "12", "13", "14"]
BACKEND = SlurmBackend()

#: what the README of the recordings says about each job, written out by hand
EXPECTED: dict[str, dict[str, Any]] = {
    "10": {
        "state": JobState.RUNNING, "host": "vm", "reason": None, "exit_code": None,
        "end_time": datetime(2027, 11, 26, 1, 25, 14), "partition": "debug",
    },
    "14": {
        "state": JobState.RUNNING, "host": "vm", "reason": None, "exit_code": None,
        "end_time": None, "partition": "debug",
    },
    "11": {
        "state": JobState.PENDING, "host": None, "reason": "BeginTime", "exit_code": None,
        "expected_start": datetime(2026, 11, 26, 1, 35, 13), "end_time": None, "partition": "debug",
    },
    "15": {
        "state": JobState.PENDING, "host": None, "reason": "Resources", "exit_code": None,
        "expected_start": datetime(2027, 11, 26, 1, 25, 14), "end_time": None,
    },
    "16": {
        "state": JobState.PENDING, "host": None, "reason": "Priority", "exit_code": None,
        "expected_start": datetime(2027, 11, 26, 1, 25, 14), "end_time": None,
    },
    "8": {
        "state": JobState.COMPLETED, "host": "vm", "reason": None, "exit_code": 0,
        "end_time": datetime(2026, 11, 26, 1, 25, 14),
    },
    "9": {"state": JobState.FAILED, "host": "vm", "reason": "NonZeroExitCode", "exit_code": 3},
    "12": {
        "state": JobState.CANCELLED, "host": "vm", "reason": None, "exit_code": 128 + 15,
        "end_time": datetime(2026, 11, 26, 1, 25, 17),
    },
    "13": {
        "state": JobState.TIMEOUT, "host": "vm", "reason": "TimeLimit", "exit_code": 128 + 15,
        "end_time": datetime(2026, 11, 26, 1, 26, 27), "partition": "short",
    },
}  # fmt: skip

SCONTROL = {
    "8": "completed", "9": "failed", "10": "running", "11": "pending-begin", "12": "cancelled",
    "13": "timeout", "15": "pending-resources", "16": "pending-priority",
}  # fmt: skip


# -- reading the recordings --------------------------------------------------------------------


def recorded_command(name: str) -> tuple[str, int]:
    """The command behind recorded file ``name`` and its exit code (from commands.txt)."""
    lines = (DATA / "commands.txt").read_text().splitlines()
    for i, line in enumerate(lines):
        match = re.match(rf"{re.escape(name)}\s+\(rc=(\d+)\)", line)
        if match:
            return lines[i + 1].strip().removeprefix("$ "), int(match.group(1))
    raise LookupError(f"{name} is not in commands.txt")


def recorded_fields(name: str) -> list[str]:
    command, _ = recorded_command(name)
    spec = re.search(r"--Format='([^']*)'", command)
    assert spec, command
    return [item.split(":")[0] for item in spec.group(1).split(",")]


def in_parser_layout(name: str) -> str:
    """The recorded squeue lines, value for value, in SQUEUE_FIELDS order with ``|`` after each."""
    fields = [f.lower() for f in recorded_fields(name)]
    out = []
    for line in (DATA / name).read_text().splitlines():
        values = line.split("|", len(fields) - 1)
        assert len(values) == len(fields), line
        by_name = dict(zip(fields, values, strict=True))
        out.append("".join(by_name[f.lower()] + "|" for f in SQUEUE_FIELDS))
    return "".join(line + "\n" for line in out)


def recorded(name: str, *, relayout: bool = False) -> CommandResult:
    command, rc = recorded_command(name)
    stderr_file = DATA / (name.rsplit(".", 1)[0] + ".stderr")
    return CommandResult(
        argv=tuple(command.split()),
        returncode=rc,
        stdout=in_parser_layout(name) if relayout else (DATA / name).read_text(),
        stderr=stderr_file.read_text() if stderr_file.exists() else "",
        duration=0.0,
    )


def result(returncode: int = 0, stdout: str = "", stderr: str = "") -> CommandResult:
    return CommandResult(argv=("x",), returncode=returncode, stdout=stdout, stderr=stderr, duration=0.0)


def scontrol_field(job_id: str, field: str) -> str:
    text = (DATA / f"scontrol-show-job-{SCONTROL[job_id]}.txt").read_text()
    assert f"JobId={job_id} " in text
    match = re.search(rf"\b{field}=(\S+)", text)
    assert match, field
    return match.group(1)


# -- squeue ------------------------------------------------------------------------------------------


def test_parser_fields_were_recorded() -> None:
    recorded_names = {f.lower() for f in recorded_fields("squeue-format.txt")}
    assert {f.lower() for f in SQUEUE_FIELDS} <= recorded_names


def test_status_argv_is_one_batched_machine_readable_call() -> None:
    argv = BACKEND.status_argv(["10", "11", "15"])
    assert argv[0] == "squeue"
    assert "--jobs=10,11,15" in argv and "--states=all" in argv and "--noheader" in argv
    fmt = next(a for a in argv if a.startswith("--Format="))
    items = fmt.removeprefix("--Format=").split(",")
    assert [i.split(":")[0] for i in items] == list(SQUEUE_FIELDS)
    assert all(i.endswith(":|") for i in items), "every field unpadded, untruncated, '|' after it"
    assert "--clusters=c2" in SlurmBackend(cluster="c2").status_argv(["1"])


@pytest.mark.parametrize(
    "name", ["squeue-format.txt", "squeue-format-as-user.txt", "after-outage-squeue-format.txt"]
)
@pytest.mark.parametrize("job_id", list(EXPECTED))
def test_every_recorded_state(name: str, job_id: str) -> None:
    statuses = BACKEND.parse_status(recorded(name, relayout=True), ALL_IDS)
    assert set(statuses) == set(ALL_IDS)
    status = statuses[job_id]
    assert status.job_id == job_id
    for field, value in EXPECTED[job_id].items():
        assert getattr(status, field) == value, f"job {job_id} {field}"


@pytest.mark.parametrize("job_id", list(SCONTROL))
def test_squeue_agrees_with_scontrol(job_id: str) -> None:
    """State and exit code from squeue's layout equal what scontrol showed for the same job."""
    status = BACKEND.parse_status(recorded("squeue-format.txt", relayout=True), ALL_IDS)[job_id]
    assert status.state is BACKEND.map_state(scontrol_field(job_id, "JobState"))
    if status.state.is_final:
        assert status.exit_code == parse_exit_code(scontrol_field(job_id, "ExitCode"))
    reason = scontrol_field(job_id, "Reason")
    assert status.reason == (None if reason == "None" else reason)


def test_trailing_delimiter_layout_parses_the_same() -> None:
    plain = BACKEND.parse_status(recorded("squeue-format.txt", relayout=True), ALL_IDS)
    trailing = BACKEND.parse_status(recorded("squeue-format-trailing-delim.txt", relayout=True), ALL_IDS)
    assert plain == trailing


def test_missing_ids_are_not_found() -> None:
    statuses = BACKEND.parse_status(
        recorded("squeue-format-some-unknown.txt", relayout=True), ["10", "999999"]
    )
    assert statuses["10"].state is JobState.RUNNING
    assert statuses["999999"].state is JobState.NOT_FOUND
    full = BACKEND.parse_status(recorded("squeue-format.txt", relayout=True), [*ALL_IDS, "424242"])
    assert full["424242"].state is JobState.NOT_FOUND
    assert full["10"].state is JobState.RUNNING


def test_several_unknown_ids_answer_empty_and_are_not_found() -> None:
    answer = recorded("squeue-format-all-unknown.txt")
    assert answer.ok and answer.stdout == ""
    statuses = BACKEND.parse_status(answer, ["999998", "999999"])
    assert {s.state for s in statuses.values()} == {JobState.NOT_FOUND}
    assert set(statuses) == {"999998", "999999"}


def test_one_unknown_id_is_an_error_that_means_not_found() -> None:
    answer = recorded("squeue-format-single-unknown.txt")
    assert answer.returncode == 1 and "Invalid job id specified" in answer.stderr
    assert BACKEND.parse_status(answer, ["999999"])["999999"].state is JobState.NOT_FOUND


def test_controller_outage_is_a_query_error() -> None:
    answer = recorded("outage-squeue-format.txt")
    with pytest.raises(QueryError, match="Unable to contact slurm controller"):
        BACKEND.parse_status(answer, ALL_IDS)


@pytest.mark.parametrize(
    ("returncode", "stdout", "stderr", "message"),
    [
        (1, "", "", "squeue exited 1"),
        (2, "", "squeue: error: Invalid user: nobody\n", "Invalid user"),
        (255, "", "squeue: error: slurm_receive_msg: Socket timed out on send/recv operation\n", "timed out"),
        (0, "garbage\n", "", "unexpected squeue line"),
        (0, "10|RUNNING|None|\n", "", "unexpected squeue line"),
    ],
)
def test_other_failures_are_query_errors(returncode: int, stdout: str, stderr: str, message: str) -> None:
    with pytest.raises(QueryError, match=message):
        BACKEND.parse_status(result(returncode, stdout, stderr), ["10"])


# -- sbatch, scancel, sacct -------------------------------------------------------------------------


def test_parse_submit_recorded_id() -> None:
    assert BACKEND.parse_submit(recorded("sbatch-parsable.txt")) == "8"


@pytest.mark.parametrize(
    ("stdout", "job_id"), [("123;cluster2\n", "123"), ("  42  \n", "42"), ("\n77\n\n", "77"), ("5;c;x", "5")]
)
def test_parse_submit_variants(stdout: str, job_id: str) -> None:
    assert BACKEND.parse_submit(result(0, stdout, "sbatch: warning: something\n")) == job_id


@pytest.mark.parametrize(
    "name",
    [
        "sbatch-rejected-memory.txt",
        "sbatch-rejected-partition.txt",
        "sbatch-rejected-timelimit.txt",
        "outage-sbatch.txt",
    ],
)
def test_parse_submit_rejections_carry_slurms_words(name: str) -> None:
    answer = recorded(name)
    assert answer.returncode == 1
    with pytest.raises(SubmitError) as info:
        BACKEND.parse_submit(answer)
    assert str(info.value) == answer.stderr.strip()


@pytest.mark.parametrize("stdout", ["", "Submitted batch job 8\n", "abc\n", ";cluster\n"])
def test_parse_submit_without_an_id(stdout: str) -> None:
    with pytest.raises(SubmitError, match="no job id"):
        BACKEND.parse_submit(result(0, stdout))


def test_parse_submit_failure_without_stderr() -> None:
    with pytest.raises(SubmitError, match="sbatch exited 1"):
        BACKEND.parse_submit(result(1))


@pytest.mark.parametrize("name", ["scancel-cancelled.txt", "scancel-unknown.txt"])
def test_parse_cancel_accepts_recorded_success(name: str) -> None:
    BACKEND.parse_cancel(recorded(name))


def test_parse_cancel_already_completing() -> None:
    stderr = "scancel: error: Kill job error on job id 9: Job/step already completing or completed\n"
    BACKEND.parse_cancel(result(1, "", stderr))


def test_parse_cancel_refusal_raises() -> None:
    answer = recorded("scancel-other-user.txt")
    assert answer.returncode == 210
    with pytest.raises(SubmitError, match="Access/permission denied"):
        BACKEND.parse_cancel(answer)


def test_submit_and_cancel_argv() -> None:
    assert BACKEND.submit_argv(JobRequest()) == ["sbatch", "--parsable"]
    assert BACKEND.cancel_argv("10") == ["scancel", "10"]
    assert SlurmBackend(cluster="c2", commands={"scancel": "/usr/bin/scancel"}).cancel_argv("10") == [
        "/usr/bin/scancel",
        "--clusters=c2",
        "10",
    ]


@pytest.mark.parametrize("name", ["sacct.txt", "sacct-as-user.txt"])
def test_parse_accounting_recorded_disabled_accounting(name: str) -> None:
    with pytest.raises(QueryError, match="Slurm accounting storage is disabled"):
        BACKEND.parse_accounting(recorded(name), ["8"])


def test_parse_accounting_lines() -> None:
    """Not recorded (the test Slurm has no accounting): the documented --parsable2 layout."""
    argv = BACKEND.accounting_argv(["9", "12"])
    assert argv is not None
    assert (
        "--parsable2" in argv
        and "--jobs=9,12" in argv
        and "--format=JobID,State,ExitCode,NodeList,End" in argv
    )
    stdout = (
        "9|FAILED|3:0|c042|2026-11-26T01:25:14\n"
        "9.batch|FAILED|3:0|c042|2026-11-26T01:25:14\n"
        "12|CANCELLED by 1001|0:15|c043|2026-11-26T01:25:17\n"
        "77|COMPLETED|0:0|c044|2026-11-26T01:25:17\n"
    )
    found = BACKEND.parse_accounting(result(0, stdout), ["9", "12"])
    assert set(found) == {"9", "12"}
    assert (found["9"].state, found["9"].exit_code, found["9"].host) == (JobState.FAILED, 3, "c042")
    assert (found["12"].state, found["12"].exit_code) == (JobState.CANCELLED, 143)
    assert found["12"].end_time == datetime(2026, 11, 26, 1, 25, 17)


# -- small parsers -----------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "code"),
    [("0:0", 0), ("3:0", 3), ("0:15", 143), ("0:9", 137), ("1:0", 1), ("3", 3), ("255:0", 255), (" 2:0 ", 2),
     ("", None), ("N/A", None), ("abc", None), (":15", None)],
)  # fmt: skip
def test_parse_exit_code(text: str, code: int | None) -> None:
    assert parse_exit_code(text) == code


@pytest.mark.parametrize(
    ("text", "code"),
    [("0", 0), ("768", 3), ("256", 1), ("15", 143), ("9", 137), ("65280", 255), ("", None), ("N/A", None)],
)
def test_parse_wait_status(text: str, code: int | None) -> None:
    """squeue's exit_code column is a raw wait(2) status (README of the recordings)."""
    assert parse_wait_status(text) == code


@pytest.mark.parametrize(
    ("text", "when"),
    [
        ("2026-11-26T01:35:13", datetime(2026, 11, 26, 1, 35, 13)),
        (" 2027-11-26T01:25:14 ", datetime(2027, 11, 26, 1, 25, 14)),
        ("NONE", None),
        ("N/A", None),
        ("Unknown", None),
        ("(null)", None),
        ("INVALID", None),
        ("", None),
        ("UNLIMITED", None),
        ("365-00:00:00", None),
        ("2026-13-01T00:00:00", None),
    ],
)
def test_parse_slurm_time(text: str, when: datetime | None) -> None:
    assert parse_slurm_time(text) == when


@pytest.mark.parametrize(
    ("native", "state"),
    [
        ("PENDING", JobState.PENDING), ("RUNNING", JobState.RUNNING), ("COMPLETED", JobState.COMPLETED),
        ("FAILED", JobState.FAILED), ("CANCELLED", JobState.CANCELLED), ("TIMEOUT", JobState.TIMEOUT),
        ("COMPLETING", JobState.COMPLETING), ("OUT_OF_MEMORY", JobState.FAILED),
        ("NODE_FAIL", JobState.FAILED), ("PREEMPTED", JobState.CANCELLED), ("REQUEUED", JobState.PENDING),
        ("running", JobState.RUNNING), (" RUNNING ", JobState.RUNNING), ("SOMETHING_NEW", JobState.UNKNOWN),
        ("", JobState.UNKNOWN),
    ],
)  # fmt: skip
def test_map_state(native: str, state: JobState) -> None:
    assert BACKEND.map_state(native) is state


@pytest.mark.parametrize("reason", ["BeginTime", "Resources", "Priority", "NonZeroExitCode", "TimeLimit"])
def test_recorded_reasons_have_plain_words(reason: str) -> None:
    words = BACKEND.describe_reason(reason)
    assert words and words != reason and " " in words


def test_reason_descriptions() -> None:
    assert BACKEND.describe_reason("Priority") == "other jobs have priority"
    assert BACKEND.describe_reason("Resources") == "waiting for free resources"
    assert BACKEND.describe_reason("SomeNewReason") == "SomeNewReason"
    for nothing in [None, "", "None", "(null)", "n/a"]:
        assert BACKEND.describe_reason(nothing) is None
