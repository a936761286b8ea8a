"""A JupyterLab with the package's real server extension set up as a job with modules would be
(issue 15), without a scheduler: the module system and the server's modules in the environment
(JUPYTERHUB_HPC_MODULE_SYSTEM, JUPYTERHUB_HPC_MODULES; the real Lmod or Tmod tree of
scripts/modules.sh, tests/module_systems.py), and the hub's modules route answered by
:class:`ModulesHub`, a small HTTP server in the test process with the catalogue the real tool
prints for that tree (what the hub would serve)."""

from __future__ import annotations

import asyncio
import json
import socket
import subprocess
import threading
from pathlib import Path
from typing import Any

from tornado import httpserver, web
from tornado.ioloop import IOLoop

from jupyterhub_hpc.modules import (
    MODULE_SYSTEM_ENV,
    SERVER_MODULES_ENV,
    KernelPreset,
    ModuleSystem,
    ServerModules,
)
from module_systems import LMOD, TMOD

from .conftest import Lab

__all__ = ["BROKEN_MESSAGE", "LMOD", "TMOD", "ModulesHub", "modules_lab"]

USER = "alice"
TOKEN = "modules-test-token"
BROKEN_MESSAGE = "broken/1.0 cannot be loaded: its licence server is down (test)"

SERVER = ServerModules(
    modules=("gcc/12",),
    sticky=("gcc/12",),
    kernels=(KernelPreset(name="hpc-tool", display_name="HPC tool 1.0", modules=("hpctool/1.0",)),),
)


def catalogue_json(system: ModuleSystem) -> dict[str, Any]:
    """The real tool's catalogue of the test tree."""
    out = subprocess.run(system.catalogue_argv(), capture_output=True, text=True, check=True, timeout=60)
    return system.parse_catalogue(out.stdout).to_json()


class ModulesHub:
    """``GET /hub/api/hpc/modules/<user>/<server>`` with the server's token; 404 for anything else."""

    def __init__(self, system: ModuleSystem, server: ServerModules = SERVER) -> None:
        catalogue = catalogue_json(system)
        self.body: dict[str, Any] = {
            "system": catalogue["system"],
            "cluster": "hpc",
            "catalogue": catalogue["modules"],
            "server": {"modules": list(server.modules), "sticky": list(server.sticky), "purge": server.purge},
            "kernels": [k.model_dump() for k in server.kernels],
        }
        self.requests: list[str] = []
        sock = socket.socket()
        sock.bind(("127.0.0.1", 0))
        sock.listen(64)
        sock.setblocking(False)
        self.url = f"http://127.0.0.1:{sock.getsockname()[1]}/hub/api"
        self._loop: IOLoop | None = None
        ready = threading.Event()

        def serve() -> None:
            asyncio.set_event_loop(asyncio.new_event_loop())
            self._loop = IOLoop.current()
            app = web.Application([(r"/hub/api/hpc/modules/([^/]+)/([^/]*)", _Route, {"hub": self})])
            server = httpserver.HTTPServer(app)
            server.add_sockets([sock])
            ready.set()
            self._loop.start()
            server.stop()

        self._thread = threading.Thread(target=serve, daemon=True)
        self._thread.start()
        ready.wait(10)

    def stop(self) -> None:
        if self._loop is not None:
            self._loop.add_callback(self._loop.stop)
        self._thread.join(10)


class _Route(web.RequestHandler):
    def initialize(self, hub: ModulesHub) -> None:
        self.hub = hub

    def get(self, user: str, server: str) -> None:
        self.hub.requests.append(f"{user}/{server}")
        self.set_header("Content-Type", "application/json")
        if self.request.headers.get("Authorization") != f"token {TOKEN}":
            self.set_status(403)
            self.finish(json.dumps({"status": 403, "message": "forbidden"}))
            return
        if user != USER:
            self.set_status(404)
            self.finish(json.dumps({"status": 404, "message": "no such server"}))
            return
        self.finish(json.dumps(self.hub.body))


def job_environment(hub: ModulesHub, system: ModuleSystem, data_dir: Path) -> dict[str, str]:
    """What the job of a server with modules sets for its Jupyter server (and the hub's variables)."""
    return {
        MODULE_SYSTEM_ENV: system.to_env(),
        SERVER_MODULES_ENV: SERVER.to_env(),
        "JUPYTERHUB_API_TOKEN": TOKEN,
        "JUPYTERHUB_API_URL": hub.url,
        "JUPYTERHUB_USER": USER,
        "JUPYTERHUB_SERVER_NAME": "",
        "JUPYTER_DATA_DIR": str(data_dir),
    }


def modules_lab(base: Path, system: ModuleSystem = LMOD) -> tuple[Lab, ModulesHub]:
    """A started Lab with the real server extension (and no fake routes) and its hub."""
    for name in ("root", "fake", "jupyter-data"):
        (base / name).mkdir(exist_ok=True)
    hub = ModulesHub(system)
    env = job_environment(hub, system, base / "jupyter-data")
    lab = Lab(base / "root", base / "fake", extensions={"jupyterhub_hpc.lab": True}, env=env)
    try:
        lab.start()
    except BaseException:
        hub.stop()
        raise
    return lab, hub
