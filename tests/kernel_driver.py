"""Drive kernels of ``hpc-provisioner`` with jupyter_client, as the user who runs this script.

Run by the live tests as a test user (``runuser -u hpcuser1 -- python tests/kernel_driver.py
SCENARIO KERNELS_DIR NAME OUT``); it prints nothing on stdout and writes what it saw to OUT as JSON, so the
test asserts on the scheduler's queue and on these facts. Each step is also written to stderr with
its time, so a test that times out can say where the driver was. Scenarios:

- ``contract``: start, run a cell, interrupt ``time.sleep(60)`` by message, restart (the
  allocation kept), shut down;
- ``start-keep``: start, set a variable, write the provisioner info and leave the kernel running
  (the server "dies");
- ``reattach``: load that info in a new kernel manager, read the variable, shut down;
- ``fail``: start a kernel whose command fails and report the error message.
"""

from __future__ import annotations

import asyncio
import json
import logging
import os
import sys
import time
from pathlib import Path
from typing import Any

from jupyter_client.manager import AsyncKernelManager
from jupyter_client.provisioning import KernelProvisionerFactory

PROBE = (
    "import os, socket\n"
    "print(os.environ.get('SLURM_JOB_ID') or os.environ.get('JOB_ID') or os.environ.get('OAR_JOB_ID'),"
    " socket.gethostname(), os.getuid())"
)

BEGAN = time.monotonic()


def step(what: str) -> None:
    """Say on stderr (unbuffered, so a killed driver's last step is known) what the driver does now."""
    print(f"[{time.monotonic() - BEGAN:6.1f} s] {what}", file=sys.stderr, flush=True)


async def run_cell(km: AsyncKernelManager, code: str, timeout: float = 60) -> dict[str, Any]:
    client = km.client()
    client.start_channels()
    try:
        await client.wait_for_ready(timeout=timeout)
        out: list[str] = []

        def hook(msg: dict[str, Any]) -> None:
            if msg["msg_type"] == "stream":
                out.append(msg["content"]["text"])
            elif msg["msg_type"] == "error":
                out.append(f"ERROR {msg['content']['ename']}")

        reply = await client.execute_interactive(code, timeout=timeout, output_hook=hook)
        return {"status": reply["content"]["status"], "output": "".join(out)}
    finally:
        client.stop_channels()


async def interrupt_sleep(km: AsyncKernelManager) -> dict[str, Any]:
    client = km.client()
    client.start_channels()
    try:
        await client.wait_for_ready(timeout=60)
        client.execute("import time; time.sleep(60)")
        await asyncio.sleep(1.0)
        started = time.monotonic()
        await km.interrupt_kernel()
        while True:
            msg = await client.get_shell_msg(timeout=30)
            if msg["msg_type"] == "execute_reply":
                return {
                    "status": msg["content"]["status"],
                    "ename": msg["content"].get("ename"),
                    "seconds": time.monotonic() - started,
                }
    finally:
        client.stop_channels()


def job_id(km: AsyncKernelManager) -> str:
    return str(getattr(km.provisioner, "job_id", ""))


async def contract(name: str) -> dict[str, Any]:
    km = AsyncKernelManager(kernel_name=name)
    began = time.monotonic()
    step("start_kernel")
    await km.start_kernel()
    facts: dict[str, Any] = {"job": job_id(km), "ready_seconds": time.monotonic() - began}
    step(f"kernel job {facts['job']} ready; the probe cell")
    info = json.loads(Path(km.connection_file).read_text())
    facts["connection_file"] = km.connection_file
    facts["mode"] = oct(os.stat(km.connection_file).st_mode & 0o777)
    facts["ports"] = [info[p] for p in ("shell_port", "iopub_port", "stdin_port", "control_port", "hb_port")]
    facts["curve"] = bool(info.get("curve_publickey"))
    facts["cell"] = await run_cell(km, PROBE + "\nx = 41")
    step("interrupt time.sleep(60)")
    facts["interrupt"] = await interrupt_sleep(km)
    step("a cell after the interrupt")
    facts["after_interrupt"] = await run_cell(km, "print(x + 1)")
    step("restart_kernel")
    await km.restart_kernel()
    facts["job_after_restart"] = job_id(km)
    step("a cell after the restart")
    facts["after_restart"] = await run_cell(km, "print('x' in globals())\n" + PROBE)
    step("shutdown_kernel")
    await km.shutdown_kernel()
    step("shut down")
    facts["shutdown_at"] = time.time()
    return facts


async def start_keep(name: str, info_file: Path) -> dict[str, Any]:
    km = AsyncKernelManager(kernel_name=name)
    await km.start_kernel()
    facts = {"job": job_id(km), "cell": await run_cell(km, "state = 'kept-42'\nprint(state)")}
    assert km.provisioner is not None
    info = {"kernel_name": name, "provisioner": await km.provisioner.get_provisioner_info()}
    info_file.write_text(json.dumps(info))
    os.chmod(info_file, 0o600)
    return facts


async def reattach(name: str, info_file: Path) -> dict[str, Any]:
    saved = json.loads(info_file.read_text())
    provisioner_info = saved["provisioner"]
    km = AsyncKernelManager(kernel_name=name, kernel_id=provisioner_info["kernel_id"])
    km.provisioner = KernelProvisionerFactory.instance().create_provisioner_instance(
        provisioner_info["kernel_id"], km.kernel_spec, parent=km
    )
    await km.provisioner.load_provisioner_info(provisioner_info)
    km.load_connection_info(km.provisioner.connection_info)
    facts = {"job": job_id(km), "alive": await km.is_alive()}
    facts["cell"] = await run_cell(km, "print(state)")
    await km.shutdown_kernel()
    facts["shutdown_at"] = time.time()
    return facts


async def fail(name: str) -> dict[str, Any]:
    km = AsyncKernelManager(kernel_name=name)
    try:
        await km.start_kernel()
    except Exception as exc:  # the provisioner's KernelJobError, as the server sees it
        return {"error": str(exc), "type": type(exc).__name__, "job": job_id(km)}
    return {"error": None, "job": job_id(km)}


def main() -> None:
    scenario, kernels_dir, name, out = sys.argv[1:5]
    # the provisioner's own log (submission, queue states, the end) beside the steps
    logging.basicConfig(level=logging.INFO, stream=sys.stderr, format="%(asctime)s %(name)s %(message)s")
    os.environ["JUPYTER_PATH"] = kernels_dir
    info_file = Path(out).with_suffix(".info.json")
    runs = {
        "contract": lambda: contract(name),
        "start-keep": lambda: start_keep(name, info_file),
        "reattach": lambda: reattach(name, info_file),
        "fail": lambda: fail(name),
    }
    facts = asyncio.run(runs[scenario]())
    Path(out).write_text(json.dumps(facts))


if __name__ == "__main__":
    main()
