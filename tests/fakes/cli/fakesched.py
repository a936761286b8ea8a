"""A fake batch scheduler behind the real command names of PBS Pro/Torque, LSF and HTCondor.

Each executable in this directory (``qsub``, ``bjobs``, ``condor_q``...) calls
:func:`main` with its own name. State is one JSON file, ``state/jobs.json`` next to
the executables (so it survives ``sudo``, which drops the environment), read and
written under an ``flock``. Submitting really runs the job script: a detached
runner process starts it at once as the submitting user (with the submit
command's environment, like ``qsub -V``, LSF's default and HTCondor's
``getenv``), then records its exit status. Cancelling sends SIGTERM to the job's
process group. The outputs follow the formats of the samples in ``tests/data``
(PBS Pro ``qstat -f -F json -x``, Torque ``qstat -x``, ``bjobs -json -o``,
``condor_q -json``/``condor_history -json``), including the error texts and exit
statuses for unknown jobs. Standard library only.
"""

from __future__ import annotations

import contextlib
import fcntl
import json
import os
import pwd
import re
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import condor_description

HERE = Path(__file__).resolve().parent
STATE = HERE / "state"
SERVER = "fakepbs"


@contextlib.contextmanager
def locked() -> Iterator[dict[str, Any]]:
    """The state, locked; written back when the block ends."""
    STATE.mkdir(mode=0o777, exist_ok=True)
    path = STATE / "jobs.json"
    with open(STATE / "lock", "a") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        data: dict[str, Any] = json.loads(path.read_text()) if path.exists() else {"next": 1, "jobs": {}}
        yield data
        tmp = STATE / f"jobs.json.{os.getpid()}"
        tmp.write_text(json.dumps(data, indent=1))
        os.chmod(tmp, 0o666)
        tmp.replace(path)


def log_call(prog: str, argv: list[str]) -> None:
    STATE.mkdir(mode=0o777, exist_ok=True)
    with open(STATE / "calls.log", "a") as f:
        f.write(json.dumps({"prog": prog, "argv": argv, "uid": os.getuid(), "time": time.time()}) + "\n")


def home() -> str:
    return pwd.getpwuid(os.getuid()).pw_dir


# -- running a job ---------------------------------------------------------------------------
def start_job(job_id: str, argv: list[str], output: str, cwd: str, env: dict[str, str]) -> None:
    """Run ``argv`` detached (double fork); record R, the pid, then the exit status."""
    if os.fork():
        return
    os.setsid()
    if os.fork():
        os._exit(0)
    devnull = os.open(os.devnull, os.O_RDWR)
    for fd in (0, 1, 2):
        os.dup2(devnull, fd)
    try:
        out = open(output, "ab") if output and output != "/dev/null" else open(os.devnull, "wb")
        proc = subprocess.Popen(
            argv, stdout=out, stderr=subprocess.STDOUT, cwd=cwd, env=env, start_new_session=True
        )
    except OSError as exc:
        with locked() as data:
            job = data["jobs"][job_id]
            job.update(state="done", status=None, error=str(exc), end=time.time())
        os._exit(0)
    with locked() as data:
        job = data["jobs"][job_id]
        job.update(state="running", pid=proc.pid, host=socket.gethostname(), start=time.time())
        cancelled_early = job.get("cancelled")
    if cancelled_early:
        os.killpg(proc.pid, signal.SIGTERM)
    status = proc.wait()
    with locked() as data:
        data["jobs"][job_id].update(state="done", status=status, end=time.time())
    os._exit(0)


def submit(kind: str, script: str, output: str, cwd: str, env: dict[str, str], extra: dict[str, Any]) -> str:
    with locked() as data:
        number = data["next"]
        data["next"] = number + 1
        job_id = {"pbs": f"{number}.{SERVER}", "lsf": str(number), "condor": f"{number}.0"}[kind]
        path = STATE / f"job-{number}.sh"
        if script:
            path.write_text(script)
            os.chmod(path, 0o755)
        data["jobs"][job_id] = {
            "kind": kind,
            "state": "queued",
            "uid": os.getuid(),
            "submit": time.time(),
            "script": str(path) if script else extra.get("executable", ""),
            **extra,
        }
        argv = ["/bin/bash", data["jobs"][job_id]["script"]]
    # what the real schedulers put in a job's environment
    env = {**env, **{"pbs": {"PBS_JOBID": job_id}, "lsf": {"LSB_JOBID": job_id}, "condor": {}}[kind]}
    start_job(job_id, argv, output.replace("%J", job_id.split(".")[0]), cwd, env)
    return job_id


def cancel(job_id: str) -> str:
    """'' when signalled, else 'unknown' or 'finished'."""
    with locked() as data:
        job = data["jobs"].get(job_id)
        if job is None:
            return "unknown"
        if job["state"] == "done":
            return "finished"
        job["cancelled"] = True
        pid = job.get("pid")
    if pid:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(pid, signal.SIGTERM)
    return ""


def snapshot() -> dict[str, Any]:
    with locked() as data:
        return dict(data["jobs"])


def wait_status(job: dict[str, Any]) -> tuple[int | None, int | None]:
    """(exit code, killing signal) of a finished job."""
    status = job.get("status")
    if status is None:
        return None, None
    if status < 0:
        return None, -status
    return status, None


# -- PBS Pro / Torque -------------------------------------------------------------------------
def pbs_state(job: dict[str, Any], torque: bool) -> dict[str, Any]:
    state = {"queued": "Q", "running": "R", "done": "C" if torque else "F"}[job["state"]]
    attrs: dict[str, Any] = {"Job_Name": job.get("name", "STDIN"), "job_state": state, "queue": "workq"}
    if job.get("host"):
        attrs["exec_host"] = f"{job['host']}/0"
    if job["state"] == "done":
        code, sig = wait_status(job)
        attrs["exit_status" if torque else "Exit_status"] = (
            256 + sig if sig else (code if code is not None else -1)
        )
    return attrs


def pbs_main(prog: str, argv: list[str]) -> int:
    if prog == "qsub":
        script = sys.stdin.read()
        name = next((m.group(1) for m in re.finditer(r"^#PBS -N (\S+)", script, re.M)), "STDIN")
        job_id = submit("pbs", script, "/dev/null", home(), dict(os.environ), {"name": name})
        print(job_id)
        return 0
    if prog == "qdel":
        rc = 0
        for job_id in argv:
            outcome = cancel(job_id)
            if outcome == "unknown":
                print(f"qdel: Unknown Job Id {job_id}", file=sys.stderr)
                rc = 153
            elif outcome == "finished":
                print(f"qdel: Job has finished {job_id}", file=sys.stderr)
                rc = 35
        return rc
    # qstat -f -F json -x IDS (PBS Pro) or qstat -x IDS (Torque)
    torque = "-F" not in argv
    ids = [a for a in argv if not a.startswith("-") and a != "json"]
    jobs = snapshot()
    rc = 0
    shown: dict[str, dict[str, Any]] = {}
    for job_id in ids:
        full = job_id if "." in job_id else f"{job_id}.{SERVER}"
        if full in jobs:
            shown[full] = pbs_state(jobs[full], torque)
        else:
            print(f"qstat: Unknown Job Id{' Error' if torque else ''} {full}", file=sys.stderr)
            rc = 153
    if torque:
        if shown:
            body = "".join(
                "<Job><Job_Id>"
                + k
                + "</Job_Id>"
                + "".join(f"<{a}>{v}</{a}>" for a, v in attrs.items())
                + "</Job>"
                for k, attrs in shown.items()
            )
            print(f"<Data>{body}</Data>")
    else:
        doc = {"timestamp": int(time.time()), "pbs_version": "fake", "pbs_server": SERVER, "Jobs": shown}
        print(json.dumps(doc, indent=4))
    return rc


# -- LSF ----------------------------------------------------------------------------------------
def lsf_record(job_id: str, job: dict[str, Any]) -> dict[str, str]:
    record = {
        "JOBID": job_id,
        "STAT": {"queued": "PEND", "running": "RUN", "done": "DONE"}[job["state"]],
        "EXEC_HOST": job.get("host", ""),
        "EXIT_CODE": "",
        "EXIT_REASON": "",
        "PEND_REASON": "",
        "QUEUE": "normal",
    }
    if job["state"] == "queued":
        record["PEND_REASON"] = "New job is waiting for scheduling;"
    if job["state"] == "done":
        code, sig = wait_status(job)
        if sig or code:
            record["STAT"] = "EXIT"
            record["EXIT_CODE"] = str(128 + sig if sig else code)
        if job.get("cancelled"):
            record["EXIT_REASON"] = "TERM_OWNER: job killed by owner"
    return record


def lsf_main(prog: str, argv: list[str]) -> int:
    if prog == "bsub":
        script = sys.stdin.read()
        output = next((m.group(1) for m in re.finditer(r"^#BSUB -o (\S+)", script, re.M)), "/dev/null")
        job_id = submit("lsf", script, output, home(), dict(os.environ), {})
        print(f"Job <{job_id}> is submitted to default queue <normal>.")
        return 0
    if prog == "bkill":
        rc = 0
        for job_id in argv:
            outcome = cancel(job_id)
            if outcome == "unknown":
                print(f"Job <{job_id}>: No matching job found", file=sys.stderr)
                rc = 255
            elif outcome == "finished":
                print(f"Job <{job_id}>: Job has already finished", file=sys.stderr)
                rc = 255
            else:
                print(f"Job <{job_id}> is being terminated")
        return rc
    # bjobs -json -o "FIELDS" IDS
    if "-json" not in argv or "-o" not in argv:
        print("fake bjobs: only -json -o is implemented", file=sys.stderr)
        return 2
    fields = argv[argv.index("-o") + 1].split()
    ids = [a for i, a in enumerate(argv) if not a.startswith("-") and argv[i - 1] != "-o"]
    jobs = snapshot()
    records: list[dict[str, str]] = []
    rc = 0
    for job_id in ids:
        if job_id in jobs:
            full = lsf_record(job_id, jobs[job_id])
            records.append({k: v for k, v in full.items() if k.lower() in fields})
        else:
            records.append({"JOBID": job_id, "ERROR": f"Job <{job_id}> is not found"})
            rc = 255
    print(json.dumps({"COMMAND": "bjobs", "JOBS": len(records), "RECORDS": records}, indent=2))
    return rc


# -- HTCondor -------------------------------------------------------------------------------
def condor_ad(job_id: str, job: dict[str, Any], attributes: list[str]) -> dict[str, Any]:
    cluster, proc = job_id.split(".")
    ad: dict[str, Any] = {
        "ClusterId": int(cluster),
        "ProcId": int(proc),
        "JobStatus": {"queued": 1, "running": 2, "done": 4}[job["state"]],
        "EnteredCurrentStatus": int(job.get("end") or job.get("start") or job["submit"]),
    }
    if job["state"] == "running":
        ad["RemoteHost"] = f"slot1@{job['host']}"
    if job["state"] == "done":
        ad["LastRemoteHost"] = f"slot1@{job.get('host', '')}"
        code, sig = wait_status(job)
        if job.get("cancelled"):
            ad["JobStatus"] = 3
            ad["RemoveReason"] = "via condor_rm (by user)"
        ad["ExitBySignal"] = bool(sig)
        if sig:
            ad["ExitSignal"] = sig
        else:
            ad["ExitCode"] = code
    return {k: v for k, v in sorted(ad.items()) if k in attributes}


def condor_submit(argv: list[str]) -> int:
    """``condor_submit [-terse] [-append COMMAND]... [VAR=VALUE]... [FILE | -]``: the
    description from FILE or standard input (``condor_description``)."""
    appended: list[str] = []
    source = "-"
    args = list(argv)
    while args:
        arg = args.pop(0)
        if arg == "-terse":
            continue
        if arg == "-append" and args:
            appended.append(args.pop(0))
        elif "=" in arg and not arg.startswith("-"):
            appended.insert(0, arg)  # parsed as if at the beginning: before -append's
        elif arg == "-" or not arg.startswith("-"):
            source = arg
        else:
            print(f"ERROR: unknown option {arg}", file=sys.stderr)
            return 1
    text = sys.stdin.read() if source == "-" else Path(source).read_text()
    with locked() as data:
        number = data["next"]
    try:
        desc = condor_description.parse(text, appended, number)
        env_vars = condor_description.environment(desc.get("environment"))
    except condor_description.DescriptionError as exc:
        print(exc, file=sys.stderr)
        return 1
    executable = desc.get("executable")
    if not executable:
        print("ERROR: No 'executable' parameter was provided", file=sys.stderr)
        return 1
    initialdir = desc.get("initialdir", os.getcwd())
    executable = os.path.join(initialdir, executable)
    if not os.path.isfile(executable):
        print(f"ERROR: Executable file {executable} does not exist", file=sys.stderr)
        return 1
    if not os.path.isdir(initialdir):
        print(f"ERROR: No such directory: {initialdir}", file=sys.stderr)
        return 1
    env = dict(os.environ) if desc.get("getenv").lower() == "true" else {}
    env.update(env_vars)
    extra = {"executable": executable, "description": desc.commands, "attributes": desc.attributes}
    job_id = submit("condor", "", "/dev/null", initialdir, env, extra)
    print(f"{job_id} - {job_id}")
    return 0


def condor_main(prog: str, argv: list[str]) -> int:
    if prog == "condor_submit":
        return condor_submit(argv)
    if prog == "condor_rm":
        rc = 0
        for job_id in argv:
            outcome = cancel(job_id)
            if outcome:
                cluster, _, proc = job_id.partition(".")
                print(
                    f"Couldn't find/remove all jobs matching constraint (ClusterId=={cluster} && "
                    f"ProcId=={proc or 0})",
                    file=sys.stderr,
                )
                rc = 1
            else:
                print(f"Job {job_id} marked for removal")
        return rc
    # condor_q / condor_history -json -attributes A,B IDS
    attributes = argv[argv.index("-attributes") + 1].split(",") if "-attributes" in argv else []
    ids = [a for i, a in enumerate(argv) if not a.startswith("-") and argv[i - 1] != "-attributes"]
    jobs = snapshot()
    history = prog == "condor_history"
    ads = [
        condor_ad(j, jobs[j], attributes)
        for j in ids
        if j in jobs and (jobs[j]["state"] == "done") == history
    ]
    if ads:  # condor_q prints nothing at all when no job matched
        print("[\n" + "\n,\n".join(json.dumps(ad, indent=2) for ad in ads) + "\n]")
    return 0


def main(prog: str, argv: list[str]) -> int:
    log_call(prog, argv)
    if prog in ("qsub", "qstat", "qdel"):
        return pbs_main(prog, argv)
    if prog in ("bsub", "bjobs", "bkill"):
        return lsf_main(prog, argv)
    return condor_main(prog, argv)
