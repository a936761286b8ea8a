"""Record real ``scontrol -o show reservation`` outputs (and a job pending behind a MAINT reservation).

Run as root, one cluster at a time, under the live-test lock:

    flock /tmp/live-tests.lock python tests/data/slurm/record_reservations.py 22.05
    flock /tmp/live-tests.lock python tests/data/slurm/record_reservations.py 24.11

``22.05`` is the private multi-node cluster of ``scripts/slurm-multinode.sh`` (Slurm 22.05.8, nodes
``cpu[1-3]``, ``gpu1``; never the main 22.05 cluster, where other jobs run), ``24.11`` the cluster of
``scripts/slurm24.sh`` (nodes ``s24n[1-2]``). Writes ``reservations-*.txt`` into ``22.05/`` or
``24.11/`` and appends the commands to ``reservations-commands.txt`` there. Every reservation and job
it makes is removed in a ``finally`` (about 30 s).
"""

from __future__ import annotations

import subprocess
import sys
import time
from datetime import datetime, timedelta
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parents[2] / "src"))

from jupyterhub_hpc.backends.slurm import SQUEUE_FIELDS  # noqa: E402

CLUSTERS = {
    "22.05": {
        "env": {"SLURM_CONF": "/var/lib/jupyterhub-hpc-slurm-multi/etc/slurm.conf"},
        "bin": "/usr/bin",
        "user": "hpcuser4",
        "all": "cpu[1-3]",
        "one": "cpu1",
        "active_nodes": "gpu1",
        "active_partition": "gpu",
        "pending_args": ["-p", "debug", "-N", "3", "-t", "01:00:00"],
    },
    "24.11": {
        "env": {"SLURM_CONF": "/opt/jupyterhub-hpc/slurm24-root/etc/slurm/slurm.conf"},
        "bin": "/opt/jupyterhub-hpc/slurm24-bin",
        "user": "hpcuser1",
        "all": "s24n[1-2]",
        "one": "s24n1",
        "active_nodes": "s24n2",
        "active_partition": "short",
        "pending_args": ["-p", "debug", "-N", "2", "-t", "01:00:00"],
    },
}
#: the backend's own status fields, so the recording parses with today's parser
SQUEUE = "--Format=" + ",".join(f"{field}:|" for field in SQUEUE_FIELDS)


def main(version: str) -> None:
    c = CLUSTERS[version]
    out_dir = HERE / version
    env_args = [f"{k}={v}" for k, v in c["env"].items()]
    log = [f"# reservations, recorded {datetime.now():%Y-%m-%dT%H:%M:%S} by ../record_reservations.py"]

    def run(name: str | None, argv: list[str], user: str | None = None, stdin: str | None = None) -> str:
        full = ["env", *env_args, f"{c['bin']}/{argv[0]}", *argv[1:]]
        if user:
            full = ["sudo", "-u", user, *full]
        done = subprocess.run(full, input=stdin, capture_output=True, text=True, timeout=60, check=False)
        shown = " ".join(([f"sudo -u {user}"] if user else []) + argv)
        log.append(f"{name or '(not saved)'}  (rc={done.returncode})\n    $ {shown}")
        if name:
            (out_dir / name).write_text(done.stdout)
            if done.stderr:
                (out_dir / (name.rsplit(".", 1)[0] + ".stderr")).write_text(done.stderr)
        print(f"{name or '-'} rc={done.returncode} {done.stderr.strip()[:200]}", file=sys.stderr)
        return done.stdout

    version_text = run(None, ["sinfo", "--version"])
    assert version_text.split()[-1].startswith(version), version_text
    now = datetime.now().replace(microsecond=0)
    stamp = "%Y-%m-%dT%H:%M:%S"
    made: list[str] = []
    job = ""
    try:
        run("reservations-none.txt", ["scontrol", "-o", "show", "reservation"])
        specs = {
            "rec_maint": [
                f"StartTime={(now + timedelta(minutes=30)).strftime(stamp)}",
                "Duration=01:00:00",
                f"Nodes={c['all']}",
                "Users=root",
                "Flags=MAINT,IGNORE_JOBS",
            ],
            "rec_maint_now": [
                f"StartTime={now.strftime(stamp)}",
                "Duration=00:10:00",
                f"PartitionName={c['active_partition']}",
                f"Nodes={c['active_nodes']}",
                "Users=root",
                "Flags=MAINT,IGNORE_JOBS",
            ],
            "rec_daily": [
                f"StartTime={(now + timedelta(hours=2)).strftime(stamp)}",
                "Duration=00:30:00",
                f"Nodes={c['one']}",
                f"Users={c['user']},root",
                "Flags=DAILY,IGNORE_JOBS",
            ],
        }
        for name, args in specs.items():
            run(None, ["scontrol", "create", "reservation", f"ReservationName={name}", *args])
            made.append(name)
        time.sleep(2)
        run("reservations.txt", ["scontrol", "-o", "show", "reservation"])
        run("reservations-as-user.txt", ["scontrol", "-o", "show", "reservation"], user=c["user"])
        run("reservations-multiline.txt", ["scontrol", "show", "reservation", "rec_maint"])
        job = run(
            None,
            ["sbatch", "--parsable", *c["pending_args"], "-o", "/dev/null"],
            user=c["user"],
            stdin="#!/bin/bash\nsleep 60\n",
        ).strip()
        deadline = time.monotonic() + 40
        while time.monotonic() < deadline:
            reason = run(None, ["squeue", "--noheader", f"--jobs={job}", "--Format=Reason:0"]).strip()
            if reason.startswith("ReqNodeNotAvail"):
                break
            time.sleep(2)
        run(
            "squeue-format-pending-maintenance.txt",
            ["squeue", "--noheader", "--states=all", f"--jobs={job}", SQUEUE],
        )
        run("scontrol-show-job-pending-maintenance.txt", ["scontrol", "-o", "show", "job", job])
    finally:
        if job:
            run(None, ["scancel", job])
        for name in made:
            run(None, ["scontrol", "delete", f"ReservationName={name}"])
        with (out_dir / "reservations-commands.txt").open("w") as f:
            f.write("\n".join(log) + "\n")


if __name__ == "__main__":
    main(sys.argv[1])
