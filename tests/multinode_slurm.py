"""The private multi-node Slurm of scripts/slurm-multinode.sh (partitions debug and short on cpu[1-3],
gpu on gpu1): its commands, and a maintenance reservation made for a test and always removed."""

from __future__ import annotations

import contextlib
import os
import subprocess
from collections.abc import Iterator
from datetime import datetime, timedelta

SLURM_CONF = "/var/lib/jupyterhub-hpc-slurm-multi/etc/slurm.conf"


def slurm(*argv: str, check: bool = True) -> str:
    """Run a Slurm command on the multi-node cluster; its standard output."""
    env = {**os.environ, "SLURM_CONF": SLURM_CONF}
    result = subprocess.run(argv, env=env, capture_output=True, text=True, check=False, timeout=30)
    assert result.returncode == 0 or not check, (argv, result.stderr)
    return result.stdout


@contextlib.contextmanager
def maint_reservation(name: str, lead: timedelta) -> Iterator[datetime]:
    """A ``Flags=MAINT,IGNORE_JOBS`` reservation ``name`` of 30 minutes on debug's nodes, starting in
    ``lead``; yields its start (local time, as Slurm's). Deleted on exit, and checked gone."""
    slurm("scontrol", "delete", f"ReservationName={name}", check=False)
    start = (datetime.now() + lead).replace(microsecond=0)
    slurm(
        "scontrol",
        "create",
        "reservation",
        f"ReservationName={name}",
        f"StartTime={start:%Y-%m-%dT%H:%M:%S}",
        "Duration=00:30:00",
        "Nodes=cpu[1-3]",
        "Users=root",
        "Flags=MAINT,IGNORE_JOBS",
    )
    try:
        yield start
    finally:
        slurm("scontrol", "delete", f"ReservationName={name}", check=False)
        assert name not in slurm("scontrol", "-o", "show", "reservation")
