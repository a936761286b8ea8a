"""What a kernel job runs: ``python -m jupyterhub_hpc.kernels.node``.

::

    python -m jupyterhub_hpc.kernels.node --connection-file FILE [--address ADDR] \\
        [--linger SECONDS] -- <kernel argv, e.g. python -m ipykernel_launcher -f FILE>

For each kernel generation it writes the node's address into the connection file with all
five ports ``0`` (the server wrote the rest: the HMAC key, the CurveZMQ keys), starts the kernel,
which binds its ports **on this node** and writes them back into the file, and reports
``ready`` in the state file (:mod:`.files`) once they are there. While the kernel runs it
delivers the signals the server asks for. When the kernel exits it reports ``exited`` and waits
up to ``--linger`` seconds for the server to ask for the next generation (a kernel restart:
the allocation is kept, only the kernel process is new) or to stop; then the job ends with the
kernel's exit status.

The address is ``--address``, else the address the node's host name resolves to. Other users
on the node can reach the ports, not use them: every message is signed with the HMAC key and,
with CurveZMQ, encrypted; both keys are in the 0600 connection file only.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Sequence
from pathlib import Path
from types import FrameType

from .files import (
    PORT_NAMES,
    NodeRequest,
    NodeState,
    ports_bound,
    read_json,
    read_model,
    request_path,
    state_path,
    write_private,
)

__all__ = ["main", "node_address"]

#: how often the files are looked at (seconds)
TICK = 0.05


def node_address(explicit: str = "") -> str:
    """The address the kernel binds on: ``explicit``, else the host name's address."""
    if explicit:
        return explicit
    name = socket.gethostname()
    try:
        return str(socket.getaddrinfo(name, None, socket.AF_INET, socket.SOCK_STREAM)[0][4][0])
    except (OSError, IndexError):
        return "127.0.0.1"


class Node:
    """The supervisor of one kernel job (see the module docstring)."""

    def __init__(
        self, connection_file: Path, argv: Sequence[str], address: str, linger: float, cwd: str = ""
    ) -> None:
        self.connection_file = connection_file
        self.cwd = cwd or None
        self.argv = list(argv)
        self.address = address
        self.linger = linger
        self.state_file = state_path(connection_file)
        self.request_file = request_path(connection_file)
        self.job_id = next(
            (os.environ[n] for n in ("SLURM_JOB_ID", "JOB_ID", "OAR_JOB_ID", "PBS_JOBID") if n in os.environ),
            "",
        )
        self.hostname = socket.gethostname()
        self.child: subprocess.Popen[bytes] | None = None
        self.signals_done = 0
        self.terminated = False
        self.message = ""

    def report(self, generation: int, state: str, **fields: object) -> None:
        write_private(
            self.state_file,
            NodeState.model_validate(
                {
                    "generation": generation,
                    "state": state,
                    "address": self.address,
                    "hostname": self.hostname,
                    "job_id": self.job_id,
                    **fields,
                }
            ),
        )

    def request(self) -> NodeRequest:
        return read_model(self.request_file, NodeRequest) or NodeRequest()

    def prepare(self) -> None:
        """The connection file with this node's address and ports 0 (the kernel fills them)."""
        info = read_json(self.connection_file)
        if info is None:
            raise SystemExit(f"jupyterhub-hpc kernel job: cannot read {self.connection_file}")
        info.update({"ip": self.address, "transport": "tcp", **dict.fromkeys(PORT_NAMES, 0)})
        write_private(self.connection_file, info)

    def on_term(self, signum: int, frame: FrameType | None) -> None:
        """The scheduler ends the job (scancel, walltime): pass it on to the kernel."""
        self.terminated = True
        if self.child is not None and self.child.poll() is None:
            with contextlib.suppress(ProcessLookupError):
                self.child.send_signal(signum)

    def run_generation(self, generation: int) -> int:
        self.prepare()
        self.child = subprocess.Popen(self.argv, cwd=self.cwd)
        self.report(generation, "starting", pid=self.child.pid)
        ready = False
        while (returncode := self.child.poll()) is None:
            if not ready and ports_bound(read_json(self.connection_file)):
                ready = True
                self.report(generation, "ready", pid=self.child.pid)
            wanted = self.request()
            if wanted.signal_seq > self.signals_done:
                self.signals_done = wanted.signal_seq
                with contextlib.suppress(ProcessLookupError, ValueError):
                    self.child.send_signal(signal.Signals(wanted.signum))
            time.sleep(TICK)
        state = "exited" if ready else "failed"
        message = "" if ready else f"the kernel exited with status {returncode} before it bound its ports"
        self.message = message
        self.report(generation, state, returncode=returncode, message=message)
        if message:
            print(f"jupyterhub-hpc kernel job: {message}: {json.dumps(self.argv)}", file=sys.stderr)
        return returncode

    def next_generation(self, current: int) -> int | None:
        """The generation the server asks for within ``linger`` seconds; None: stop."""
        deadline = time.monotonic() + self.linger
        while time.monotonic() < deadline and not self.terminated:
            wanted = self.request()
            if wanted.stop:
                return None
            if wanted.generation > current:
                return wanted.generation
            time.sleep(TICK)
        return None

    def main(self) -> int:
        signal.signal(signal.SIGTERM, self.on_term)
        # an interrupt is a message on the control channel, never a signal to this job
        signal.signal(signal.SIGINT, signal.SIG_IGN)
        generation = max(self.request().generation, 1)
        while True:
            returncode = self.run_generation(generation)
            if self.terminated:
                # the scheduler ends the job (walltime, scancel): no restart can happen in it
                message = self.message or "the scheduler ended the job"
                self.report(generation, "stopped", returncode=returncode, message=message)
                return returncode
            following = self.next_generation(generation)
            if following is None:
                self.report(generation, "stopped", returncode=returncode, message=self.message)
                return returncode
            generation = following


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m jupyterhub_hpc.kernels.node", description=__doc__)
    parser.add_argument("--connection-file", required=True, type=Path)
    parser.add_argument("--address", default="", help="the address to bind on (default: the host name's)")
    parser.add_argument("--linger", type=float, default=120.0, help="seconds to wait for a restart")
    parser.add_argument("--cwd", default="", help="the kernel's working directory (the notebook's)")
    parser.add_argument("kernel", nargs=argparse.REMAINDER, help="-- then the kernel's argv")
    args = parser.parse_args(argv)
    kernel = args.kernel[1:] if args.kernel[:1] == ["--"] else args.kernel
    if not kernel:
        parser.error("no kernel command after --")
    node = Node(args.connection_file, kernel, node_address(args.address), args.linger, args.cwd)
    return node.main()


if __name__ == "__main__":
    raise SystemExit(main())
