"""Record real Slurm 24.11 outputs into this directory (run as root, with scripts/slurm24.sh's cluster up).

    flock /tmp/live-tests.lock /opt/jupyterhub-hpc/venv/bin/python tests/data/slurm/24.11/record.py

Every client command runs as ``SLURM_CONF=<root>/etc/slurm/slurm.conf <wrapper>`` (the wrappers of
scripts/slurm24.sh); ``commands.txt`` shows it by its plain name, in the layout of ../22.05/commands.txt
(``FILE  (rc=N)`` then the command). ``jobs.json`` maps each job's role to its id. Takes about 3 minutes
(the walltime kill of the timeout job); stops and restarts this cluster's slurmctld once (the outage files).
"""

from __future__ import annotations

import json
import shlex
import subprocess
import sys
import time
from pathlib import Path

from jupyterhub_hpc.backends.slurm import SlurmBackend

HERE = Path(__file__).resolve().parent
REPO = HERE.parents[3]
SLURM24_HUB = REPO / "tests" / "e2e" / "slurm24_hub.py"
BIN = "/opt/jupyterhub-hpc/slurm24-bin"
CONF = "/opt/jupyterhub-hpc/slurm24-root/etc/slurm/slurm.conf"
USER = "hpcuser1"
SQUEUE_FORMAT = (
    "JobID:|,State:|,Reason:|,BatchHost:|,NodeList:|,StartTime:|,EndTime:|,TimeLimit:|,TimeLeft:|,"
    "Partition:|,exit_code:|,UserName:|,Name:0"
)
CLIENTS = {"sbatch", "squeue", "scancel", "sacct", "sinfo", "scontrol"}

log: list[str] = [
    "# Commands that produced each file in this directory (run as root unless 'sudo -u' is shown),",
    "# written by record.py. Format: FILE  (exit code of the command)  then the exact command.",
    "# If it wrote to stderr, that text is in FILE-without-extension.stderr. Job scripts are fed on stdin.",
    "# Every Slurm command ran as `SLURM_CONF=/opt/jupyterhub-hpc/slurm24-root/etc/slurm/slurm.conf",
    "# /opt/jupyterhub-hpc/slurm24-bin/NAME` (scripts/slurm24.sh: Slurm 24.11's NAME, Debian 13 root);",
    "# behind sudo: `sudo -u USER env SLURM_CONF=... /opt/jupyterhub-hpc/slurm24-bin/NAME`.",
    "# Working directory: /home/hpcuser1. Slurm config: scripts/slurm24.sh (nodes s24n1, s24n2: CPUs=4,",
    "# RealMemory=4000 each).",
]


def real_argv(argv: list[str]) -> list[str]:
    """The plain command as it runs against the 24.11 cluster."""
    if argv[0] == "sudo":
        user, name, rest = argv[2], argv[3], argv[4:]
        return ["sudo", "-u", user, "env", f"SLURM_CONF={CONF}", f"{BIN}/{name}", *rest]
    if argv[0] in CLIENTS:
        return ["env", f"SLURM_CONF={CONF}", f"{BIN}/{argv[0]}", *argv[1:]]
    return argv


def shown(argv: list[str], script: str | None) -> str:
    text = " ".join(f"--Format='{a[9:]}'" if a.startswith("--Format=") else shlex.quote(a) for a in argv)
    if script is not None:
        text = f"printf {shlex.quote(script.replace(chr(10), chr(92) + 'n'))} | {text}"
    return text


def run(name: str | None, argv: list[str], script: str | None = None, timeout: float = 120) -> str:
    """Run one command; save its stdout as NAME (and stderr as NAME-stem.stderr) unless NAME is None."""
    try:
        done = subprocess.run(
            real_argv(argv),
            input=script,
            capture_output=True,
            text=True,
            cwd=f"/home/{USER}",
            timeout=timeout,
        )
        rc, out, err = done.returncode, done.stdout, done.stderr
    except subprocess.TimeoutExpired as e:
        rc, out, err = 124, (e.stdout or b"").decode(), (e.stderr or b"").decode()
    log.append(f"{name}  (rc={rc})" if name else f"(not saved, rc={rc})")
    log.append(f"    $ {shown(argv, script)}")
    if name:
        (HERE / name).write_text(out)
        stderr_file = HERE / (name.rsplit(".", 1)[0] + ".stderr")
        if err:
            stderr_file.write_text(err)
        else:
            stderr_file.unlink(missing_ok=True)
    print(f"{name or '-'} rc={rc} {err.strip()[:120]}", file=sys.stderr)
    return out


def submit(script: str, *args: str, name: str | None = None) -> str:
    out = run(name, ["sudo", "-u", USER, "sbatch", "--parsable", *args], script)
    job = out.strip().split(";")[0]
    assert job.isdigit(), out
    return job


def state(job: str) -> str:
    out = run_quiet(["squeue", "--noheader", "--states=all", f"--jobs={job}", "--Format=State:0"])
    return out.strip()


def run_quiet(argv: list[str]) -> str:
    return subprocess.run(real_argv(argv), capture_output=True, text=True, check=False, timeout=60).stdout


def wait_reason(job: str, wanted: str, timeout: float) -> None:
    end = time.monotonic() + timeout
    argv = ["squeue", "--noheader", "--states=all", f"--jobs={job}", "--Format=Reason:0"]
    while run_quiet(argv).strip() != wanted:
        assert time.monotonic() < end, f"job {job}: reason {run_quiet(argv).strip()}, not {wanted}"
        time.sleep(1)


def wait_state(job: str, wanted: set[str], timeout: float) -> None:
    end = time.monotonic() + timeout
    while state(job) not in wanted:
        assert time.monotonic() < end, f"job {job}: {state(job)}, not {wanted}"
        time.sleep(1)


def main() -> None:
    version = run_quiet(["sinfo", "--version"]).strip()
    assert version.split()[-1].startswith("24.11."), version
    sleep600 = "#!/bin/bash\nsleep 600\n"
    out_file = [f"-o/home/{USER}/x-%j.out"]
    log.append("")
    log.append("# --- submissions")
    jobs = {
        "completed": submit(
            "#!/bin/bash\necho hello from $(hostname)\nexit 0\n",
            "--mem=100M",
            "-J",
            "completed-job",
            *out_file,
            name="sbatch-parsable.txt",
        ),
        "failed": submit(
            "#!/bin/bash\necho failing >&2\nexit 3\n", "--mem=100M", "-J", "failed-job", *out_file
        ),
        "running": submit(
            sleep600, "--mem=100M", "-J", "jupyterhub-singleuser-hpcuser1-long-name", *out_file
        ),
        "pending-begin": submit(sleep600, "--mem=100M", "--begin=now+600", "-J", "held-begin", *out_file),
        "cancelled": submit(sleep600, "--mem=100M", "-J", "name with spaces", *out_file),
        "timeout": submit(
            "#!/bin/bash\nsleep 300\n", "--mem=100M", "-p", "short", "-t", "1", "-J", "timeout-job", *out_file
        ),
        "bigmem-running": submit(sleep600, "--mem=3500M", "-J", "bigmem-running", *out_file),
        "bigmem-running-2": submit(sleep600, "--mem=3500M", "-J", "bigmem-running-2", *out_file),
    }
    wait_state(jobs["bigmem-running-2"], {"RUNNING"}, 30)
    jobs["pending-resources"] = submit(sleep600, "--mem=3500M", "-J", "bigmem-resources", *out_file)
    jobs["pending-priority"] = submit(sleep600, "--mem=3500M", "-J", "bigmem-priority", *out_file)
    for what, args in [
        ("timelimit", ["-p", "short", "-t", "10", "--mem=100M"]),
        ("partition", ["-p", "nosuch", "--mem=100M"]),
        ("memory", ["--mem=9000M"]),
    ]:
        run(
            f"sbatch-rejected-{what}.txt",
            ["sudo", "-u", USER, "sbatch", "--parsable", *args],
            "#!/bin/bash\nsleep 1\n",
        )
    wait_reason(jobs["pending-resources"], "Resources", 30)
    wait_reason(jobs["pending-priority"], "Priority", 30)
    wait_reason(jobs["pending-begin"], "BeginTime", 30)
    wait_state(jobs["completed"], {"COMPLETED"}, 30)
    wait_state(jobs["failed"], {"FAILED"}, 30)
    wait_state(jobs["cancelled"], {"RUNNING"}, 30)
    run("scancel-cancelled.txt", ["sudo", "-u", USER, "scancel", jobs["cancelled"]])
    run("scancel-other-user.txt", ["sudo", "-u", "hpcuser2", "scancel", jobs["running"]])
    run("scancel-unknown.txt", ["sudo", "-u", USER, "scancel", "999999"])
    print("waiting for the walltime kill of the timeout job (about 75 s)", file=sys.stderr)
    wait_state(jobs["timeout"], {"TIMEOUT"}, 150)
    wait_state(jobs["cancelled"], {"CANCELLED"}, 30)
    (HERE / "jobs.json").write_text(json.dumps(jobs, indent=2) + "\n")

    order = [
        "running",
        "bigmem-running",
        "bigmem-running-2",
        "pending-begin",
        "pending-resources",
        "pending-priority",
        "completed",
        "failed",
        "cancelled",
        "timeout",
    ]
    ids = ",".join(jobs[r] for r in order)
    log.append("# --- job ids: " + " ".join(f"{r}={jobs[r]}" for r in order))
    fmt = f"--Format={SQUEUE_FORMAT}"
    run("squeue-format.txt", ["squeue", "--noheader", "--states=all", f"--jobs={ids}", fmt])
    run("squeue-format-header.txt", ["squeue", "--states=all", f"--jobs={ids}", fmt])
    run(
        "squeue-format-trailing-delim.txt",
        ["squeue", "--noheader", "--states=all", f"--jobs={ids}", fmt.removesuffix("Name:0") + "Name:|"],
    )
    run(
        "squeue-format-default-width.txt",
        [
            "squeue",
            "--noheader",
            "--states=all",
            f"--jobs={ids}",
            "--Format=" + SQUEUE_FORMAT.replace(":|", "").removesuffix(":0"),
        ],
    )
    run(
        "squeue-format-invalid-field.txt",
        [
            "squeue",
            "--noheader",
            "--states=all",
            f"--jobs={jobs['running']}",
            "--Format=JobID:|,ExitCode:|,State:0",
        ],
    )
    run(
        "squeue-format-running.txt",
        ["squeue", "--noheader", "--states=all", f"--jobs={jobs['running']}", fmt],
    )
    run("squeue-format-single-unknown.txt", ["squeue", "--noheader", "--states=all", "--jobs=999999", fmt])
    run(
        "squeue-format-all-unknown.txt", ["squeue", "--noheader", "--states=all", "--jobs=999998,999999", fmt]
    )
    run(
        "squeue-format-some-unknown.txt",
        ["squeue", "--noheader", "--states=all", f"--jobs={jobs['running']},999999", fmt],
    )
    run(
        "squeue-format-as-user.txt",
        ["sudo", "-u", "hpcuser2", "squeue", "--noheader", "--states=all", f"--jobs={ids}", fmt],
    )
    run(
        "squeue-o-percent.txt",
        [
            "squeue",
            "--noheader",
            "--states=all",
            f"--jobs={ids}",
            "-o",
            "%i|%T|%r|%B|%N|%S|%e|%l|%L|%P|%u|%j",
        ],
    )
    backend = SlurmBackend()
    run("squeue-status-argv.txt", backend.status_argv([jobs[r] for r in order]))
    run("squeue.json", ["squeue", "--json", "--states=all", f"--jobs={ids}"])
    run("squeue-unknown.json", ["squeue", "--json", "--states=all", "--jobs=999999"])
    for role in order:
        run(f"scontrol-show-job-{role}.txt", ["scontrol", "show", "job", jobs[role]])
    run("scontrol-show-job-oneliner-running.txt", ["scontrol", "show", "job", "--oneliner", jobs["running"]])
    run("scontrol-show-job-unknown.txt", ["scontrol", "show", "job", "999999"])
    limits = backend.limits_argv()
    assert limits is not None
    run("sinfo-node-format.txt", limits)
    run(
        "sinfo-format.txt",
        [
            "sinfo",
            "--noheader",
            "--Format=PartitionName:|,Partition:|,Available:|,CPUs:|,Memory:|,Gres:|,"
            "StateLong:|,Time:|,DefaultTime:|,NodeAIOT:|,Nodes:|,NodeList:0",
        ],
    )
    run("sinfo.json", ["sinfo", "--json"])
    run("scontrol-show-partition.txt", ["scontrol", "show", "partition"])
    run("scontrol-show-node.txt", ["scontrol", "show", "node"])
    accounting = backend.accounting_argv([jobs[r] for r in order])
    assert accounting is not None
    run("sacct.txt", accounting)
    run("sacct-as-user.txt", ["sudo", "-u", USER, "sacct", f"--jobs={jobs['completed']}"])
    run("scontrol-ping.txt", ["scontrol", "ping"])

    log.append("# --- scheduler outage: scripts/slurm24.sh stop-ctld")
    subprocess.run([str(REPO / "scripts" / "slurm24.sh"), "stop-ctld"], check=True)
    try:
        run("outage-squeue-format.txt", ["squeue", "--noheader", "--states=all", f"--jobs={ids}", fmt])
        run("outage-scontrol-ping.txt", ["scontrol", "ping"])
        run("outage-scontrol-show-job.txt", ["scontrol", "show", "job", jobs["running"]])
        run(
            "outage-sbatch.txt",
            ["sudo", "-u", USER, "sbatch", "--parsable", "--mem=100M"],
            "#!/bin/bash\nsleep 1\n",
        )
    finally:
        log.append("# --- scripts/slurm24.sh start-ctld")
        subprocess.run([str(REPO / "scripts" / "slurm24.sh"), "start-ctld"], check=True)
    run("after-outage-squeue-format.txt", ["squeue", "--noheader", "--states=all", f"--jobs={ids}", fmt])
    log.append("# --- cleanup")
    run(None, ["scancel", *(jobs[r] for r in order)])
    (HERE / "commands.txt").write_text("\n".join(log) + "\n")


if __name__ == "__main__":
    main()
