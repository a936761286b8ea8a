"""Parsers of the non-Slurm backends on the outputs under ``tests/data/<scheduler>/<version>/``.

Grid Engine 8.1.9 and OAR 2.5.9 were recorded live on this machine; PBS Pro,
Torque, LSF, HTCondor and Univa GE are hand-written from their documented formats
(each data directory's README says where from). The expected values are written
out by hand from what each sample says.
"""

from __future__ import annotations

from datetime import datetime
from pathlib import Path

import pytest

from jupyterhub_hpc.backends.base import Backend, JobScript, QueryError, SubmitError
from jupyterhub_hpc.backends.htcondor import HTCondorBackend
from jupyterhub_hpc.backends.lsf import LSFBackend
from jupyterhub_hpc.backends.oar import OARBackend
from jupyterhub_hpc.backends.pbs import PBSBackend, TorqueBackend, pbs_exit_code
from jupyterhub_hpc.backends.sge import SGEBackend, parse_sge_state
from jupyterhub_hpc.backends.slurm import SlurmBackend
from jupyterhub_hpc.commands import CommandResult
from jupyterhub_hpc.request import JobRequest
from jupyterhub_hpc.states import JobState

DATA = Path(__file__).resolve().parents[1] / "data"


def recorded(path: str, stdout_name: str | None = None) -> CommandResult:
    """A CommandResult from ``<path>.txt``/``.json``/``.xml`` (stdout), ``.stderr`` and ``.rc``."""
    base = DATA / path
    out = ""
    for suffix in (".txt", ".json", ".xml"):
        candidate = base.with_name(base.name + suffix)
        if candidate.exists():
            out = candidate.read_text()
            break
    err_path = base.with_name(base.name + ".stderr")
    rc_path = base.with_name(base.name + ".rc")
    return CommandResult(
        argv=("recorded",),
        returncode=int(rc_path.read_text()) if rc_path.exists() else 0,
        stdout=out,
        stderr=err_path.read_text() if err_path.exists() else "",
        duration=0.0,
    )


def states(backend: Backend, path: str, ids: list[str]) -> dict[str, tuple[JobState, str | None, int | None]]:
    parsed = backend.parse_status(recorded(path), ids)
    assert sorted(parsed) == sorted(ids)
    return {j: (s.state, s.host, s.exit_code) for j, s in parsed.items()}


# -- Grid Engine (recorded live: Son of Grid Engine 8.1.9) ---------------------------------
SGE = SGEBackend()


def test_sge_qstat_xml_mixed() -> None:
    got = states(SGE, "sge/8.1.9/qstat-xml-mixed", ["1", "2", "3", "5", "6", "4"])
    assert got == {
        "1": (JobState.RUNNING, "vm", None),
        "5": (JobState.RUNNING, "vm", None),
        "6": (JobState.PENDING, None, None),
        "3": (JobState.FAILED, None, None),  # Eqw: never starts without help
        "2": (JobState.PENDING, None, None),  # hqw
        "4": (JobState.NOT_FOUND, None, None),  # ended: Grid Engine forgets at once
    }
    parsed = SGE.parse_status(recorded("sge/8.1.9/qstat-xml-mixed"), ["2", "3"])
    assert parsed["2"].reason == "held" and "held" in (SGE.describe_reason("held") or "")
    assert parsed["3"].reason == "error" and parsed["3"].native_state == "Eqw"


def test_sge_deleting_and_suspended_and_empty() -> None:
    path = DATA / "sge/8.1.9/qstat-xml-deleting-suspended.xml"
    result = CommandResult(("x",), 0, path.read_text(), "", 0.0)
    parsed = SGE.parse_status(result, ["5", "7"])
    assert parsed["5"].state is JobState.PENDING and parsed["5"].reason == "suspended"
    assert parsed["7"].state is JobState.NOT_FOUND  # deleted within the same second
    empty = CommandResult(("x",), 0, (DATA / "sge/8.1.9/qstat-xml-empty.xml").read_text(), "", 0.0)
    assert SGE.parse_status(empty, ["9"])["9"].state is JobState.NOT_FOUND


@pytest.mark.parametrize(
    ("letters", "state"),
    [
        ("r", JobState.RUNNING),
        ("t", JobState.RUNNING),
        ("Rr", JobState.RUNNING),
        ("dr", JobState.COMPLETING),
        ("qw", JobState.PENDING),
        ("hqw", JobState.PENDING),
        ("hRwq", JobState.PENDING),
        ("Eqw", JobState.FAILED),
        ("S", JobState.PENDING),
        ("", JobState.UNKNOWN),
    ],
)
def test_sge_state_letters(letters: str, state: JobState) -> None:
    assert parse_sge_state(letters)[0] is state


def test_sge_univa_layout_and_times() -> None:
    got = states(SGE, "univa/8.6/qstat-xml", ["5001", "5002", "5003"])
    assert got == {
        "5001": (JobState.RUNNING, "node01.example.org", None),
        "5002": (JobState.PENDING, None, None),
        "5003": (JobState.FAILED, None, None),
    }


def test_sge_submit_cancel_and_failures() -> None:
    assert SGE.parse_submit(recorded("sge/8.1.9/qsub-terse")) == "7"
    with pytest.raises(SubmitError, match=r"unknown queue \"nosuch\.q\""):
        SGE.parse_submit(recorded("sge/8.1.9/qsub-rejected-queue"))
    with pytest.raises(SubmitError, match="parallel environment"):
        SGE.parse_submit(recorded("sge/8.1.9/qsub-rejected-pe"))
    for ok in ("qdel-pending", "qdel-running", "qdel-unknown"):
        SGE.parse_cancel(recorded(f"sge/8.1.9/{ok}"))
    with pytest.raises(SubmitError, match="necessary privileges"):
        SGE.parse_cancel(recorded("sge/8.1.9/qdel-other-user"))
    with pytest.raises(QueryError):
        SGE.parse_status(CommandResult(("x",), 1, "", "error: commlib error", 0.0), ["1"])


# -- OAR (recorded live: 2.5.9) -----------------------------------------------------------
OAR = OARBackend()


def test_oar_status_mixed() -> None:
    got = states(OAR, "oar/2.5.9/oarstat-fJ-mixed", ["1", "2", "3", "4", "5", "77"])
    assert got == {
        "1": (JobState.RUNNING, "localhost", None),
        "2": (JobState.FAILED, "localhost", 3),  # Terminated, exit_code 768 = exit 3
        "3": (JobState.FAILED, "localhost", None),  # Error: node not responding
        "4": (JobState.PENDING, None, None),
        "5": (JobState.PENDING, None, None),
        "77": (JobState.NOT_FOUND, None, None),
    }
    parsed = OAR.parse_status(recorded("oar/2.5.9/oarstat-fJ-mixed"), ["4", "3"])
    assert parsed["4"].reason == "No enough matching resources (no_matching_slot)"
    assert parsed["3"].reason == "One or several nodes are not responding correctly"


def test_oar_cancelled_job_is_cancelled_not_failed() -> None:
    parsed = OAR.parse_status(recorded("oar/2.5.9/oarstat-fJ-after-oardel"), ["1", "9999"])
    assert parsed["1"].state is JobState.CANCELLED and parsed["1"].native_state == "Error"
    assert parsed["9999"].state is JobState.NOT_FOUND
    assert (
        OAR.parse_status(recorded("oar/2.5.9/oarstat-fJ-unknown"), ["9999"])["9999"].state
        is JobState.NOT_FOUND
    )


def test_oar_submit_and_cancel() -> None:
    assert OAR.parse_submit(recorded("oar/2.5.9/oarsub-S")) == "5"
    with pytest.raises(SubmitError, match="Oarsub failed"):
        OAR.parse_submit(recorded("oar/2.5.9/oarsub-no-pwd"))
    with pytest.raises(SubmitError, match="queue nosuchqueue does not exist"):
        OAR.parse_submit(recorded("oar/2.5.9/oarsub-rejected-queue"))
    OAR.parse_cancel(recorded("oar/2.5.9/oardel-running"))
    OAR.parse_cancel(recorded("oar/2.5.9/oardel-already-killed"))
    with pytest.raises(SubmitError, match="not the right user"):
        OAR.parse_cancel(recorded("oar/2.5.9/oardel-other-user"))


# -- PBS Pro / OpenPBS and Torque (hand-written from the documented formats) ---------------
def test_pbspro_json() -> None:
    pbs = PBSBackend()
    ids = ["101.pbs01", "102", "103.pbs01", "104.pbs01", "105.pbs01", "106.pbs01", "999.pbs01"]
    got = states(pbs, "pbspro/2021.1/qstat-f-F-json-x", ids)
    assert got == {
        "101.pbs01": (JobState.RUNNING, "node01", None),
        "102": (JobState.PENDING, None, None),  # short id matches 102.pbs01
        "103.pbs01": (JobState.FAILED, "node02", 3),
        "104.pbs01": (JobState.TIMEOUT, "node03", None),  # -29: JOB_EXEC_KILL_WALLTIME
        "105.pbs01": (JobState.CANCELLED, "node03", 143),  # 271 = 256 + SIGTERM
        "106.pbs01": (JobState.PENDING, None, None),
        "999.pbs01": (JobState.NOT_FOUND, None, None),  # "Unknown Job Id" on stderr, rc 153
    }
    parsed = pbs.parse_status(recorded("pbspro/2021.1/qstat-f-F-json-x"), ["102", "104.pbs01"])
    assert parsed["102"].reason and "Insufficient amount of resource" in parsed["102"].reason
    assert parsed["102"].expected_start == datetime(2026, 11, 26, 9, 41, 25)
    assert pbs.describe_reason(parsed["104.pbs01"].reason) == "the job reached its time limit"
    assert pbs.parse_submit(recorded("pbspro/2021.1/qsub")) == "101.pbs01"
    with pytest.raises(SubmitError, match="Unknown queue"):
        pbs.parse_submit(recorded("pbspro/2021.1/qsub-rejected-queue"))
    pbs.parse_cancel(recorded("pbspro/2021.1/qdel-unknown"))
    pbs.parse_cancel(recorded("pbspro/2021.1/qdel-finished"))
    with pytest.raises(QueryError):
        pbs.parse_status(CommandResult(("x",), 1, "", "pbs_iff: cannot connect to host", 0.0), ["1"])


def test_torque_xml() -> None:
    got = states(TorqueBackend(), "torque/6.1/qstat-x", ["201", "202.torque01", "203", "204", "205", "299"])
    assert got == {
        "201": (JobState.RUNNING, "node01", None),
        "202.torque01": (JobState.PENDING, None, None),
        "203": (JobState.FAILED, "node02", 3),
        "204": (JobState.TIMEOUT, "node03", None),  # -11: JOB_EXEC_OVERLIMIT_WT
        "205": (JobState.CANCELLED, "node03", 143),
        "299": (JobState.NOT_FOUND, None, None),
    }


def test_pbs_exit_codes() -> None:
    assert [pbs_exit_code(v) for v in (0, 3, 271, 265, -29, "x")] == [0, 3, 143, 137, None, None]


# -- LSF (hand-written from the documented format) -----------------------------------------
def test_lsf_bjobs_json() -> None:
    lsf = LSFBackend()
    got = states(lsf, "lsf/10.1/bjobs-json", ["3001", "3002", "3003", "3004", "3005", "3999"])
    assert got == {
        "3001": (JobState.RUNNING, "node01", None),
        "3002": (JobState.PENDING, None, None),
        "3003": (JobState.FAILED, "node02", 3),
        "3004": (JobState.TIMEOUT, "node03", 140),
        "3005": (JobState.COMPLETED, "node03", 0),
        "3999": (JobState.NOT_FOUND, None, None),
    }
    parsed = lsf.parse_status(recorded("lsf/10.1/bjobs-json"), ["3002"])
    assert (
        parsed["3002"].reason == "Job's requirements for resource reservation not satisfied (Resource: mem)"
    )
    assert lsf.parse_submit(recorded("lsf/10.1/bsub")) == "3001"
    assert lsf.parse_submit(recorded("lsf/10.1/bsub-default-queue")) == "3006"
    with pytest.raises(SubmitError, match="No such queue"):
        lsf.parse_submit(recorded("lsf/10.1/bsub-rejected-queue"))
    for ok in ("bkill", "bkill-finished", "bkill-unknown"):
        lsf.parse_cancel(recorded(f"lsf/10.1/{ok}"))
    with pytest.raises(QueryError):
        lsf.parse_status(CommandResult(("x",), 255, "", "LSF is down. Please wait ...", 0.0), ["1"])


# -- HTCondor (hand-written from the documented format) ------------------------------------
def test_htcondor_queue_and_history() -> None:
    condor = HTCondorBackend()
    got = states(condor, "htcondor/23.0/condor_q-json", ["4001.0", "4002.0", "4003.0", "4004.0"])
    assert got == {
        "4001.0": (JobState.RUNNING, "node01.example.org", None),
        "4002.0": (JobState.PENDING, None, None),
        "4003.0": (JobState.FAILED, "node02.example.org", None),  # held
        "4004.0": (JobState.NOT_FOUND, None, None),
    }
    assert "Permission denied" in (
        condor.parse_status(recorded("htcondor/23.0/condor_q-json"), ["4003.0"])["4003.0"].reason or ""
    )
    history = condor.parse_accounting(
        recorded("htcondor/23.0/condor_history-json"), ["4004.0", "4005.0", "4006.0", "4007.0", "4008.0"]
    )
    assert {j: (s.state, s.exit_code) for j, s in history.items()} == {
        "4004.0": (JobState.FAILED, 3),
        "4005.0": (JobState.TIMEOUT, None),
        "4006.0": (JobState.CANCELLED, None),
        "4007.0": (JobState.FAILED, 137),
        "4008.0": (JobState.COMPLETED, 0),
    }
    empty = CommandResult(("x",), 0, "", "", 0.0)
    assert condor.parse_status(empty, ["1.0"])["1.0"].state is JobState.NOT_FOUND
    assert condor.parse_submit(recorded("htcondor/23.0/condor_submit-terse")) == "4001.0"
    with pytest.raises(SubmitError, match="Unknown command"):
        condor.parse_submit(recorded("htcondor/23.0/condor_submit-rejected"))
    condor.parse_cancel(recorded("htcondor/23.0/condor_rm"))
    condor.parse_cancel(recorded("htcondor/23.0/condor_rm-unknown"))


# -- scripts ------------------------------------------------------------------------------
JOB = JobScript(workdir="/home/a b", output_path="/home/a b/out-{job_id}.log", command=["launch", "--x"])


@pytest.mark.parametrize(
    "backend",
    [SGEBackend(), PBSBackend(), TorqueBackend(), LSFBackend(), HTCondorBackend(), OARBackend()],
    ids=lambda b: b.name,
)
def test_rendered_scripts(backend: Backend) -> None:
    request = JobRequest(cpus=2, memory="2G", walltime="01:30:00", partition="gpuq", gpus=1)
    job = JobScript(
        workdir=JOB.workdir,
        output_path=backend.output_path(JOB.output_path),
        command=JOB.command,
        environment={"JUPYTERHUB_USER": "a'b"},
    )
    script = backend.render(request, job)
    lines = script.splitlines()
    assert lines[0] == "#!/bin/bash"
    directives = [ln for ln in lines if ln.startswith(backend.directive_prefix + " ")]
    assert "cd '/home/a b' || exit 1" in lines
    assert "export JUPYTERHUB_USER='a'\"'\"'b'" in lines
    assert "launch --x" in lines
    if not backend.directives_in_script:
        # HTCondor: the commands are the submit description's (test_htcondor_submit.py)
        assert directives == [] and backend.submit_input(request, job).endswith(script)
        return
    assert len(directives) >= 5, script
    # every directive precedes the first command
    assert max(lines.index(d) for d in directives) < lines.index("cd '/home/a b' || exit 1")
    if backend.job_id_variable:
        redirect = f"exec >>'/home/a b/out-'\"${{{backend.job_id_variable}}}\".log 2>&1"
        assert redirect in lines, script
    else:
        assert any(backend.job_id_placeholder in d for d in directives), script


def test_slurm_multi_cluster_submit() -> None:
    slurm = SlurmBackend(cluster="a,b")
    result = CommandResult(("sbatch",), 0, "1234;b\n", "", 0.0)
    assert slurm.parse_submit(result) == "1234"
    assert slurm.parse_submit_cluster(result) == "b"
    assert slurm.parse_submit_cluster(CommandResult(("sbatch",), 0, "1234\n", "", 0.0)) is None
    placed = SlurmBackend(cluster="b")
    assert "--clusters=b" in placed.status_argv(["1234"]) and placed.cancel_argv("1234") == [
        "scancel",
        "--clusters=b",
        "1234",
    ]
    assert placed.key() != slurm.key()  # one watcher per cluster: ids are per cluster
