"""Per-kernel module sets inside the user's server (issue 15): kernelspecs, collections, failures.

At start (:func:`setup_modules`), the admin's kernel presets of this server
(``JUPYTERHUB_HPC_MODULES``'s ``kernels``) become kernelspecs in a private directory of this server
process (``mkdtemp``, node-local, 0700, removed at exit) put first on the kernel spec manager's
search path: nothing is written to the shared home for them. A user's own kernel (made in the
modules panel) is a kernelspec ``hpc-modules-<slug>`` in the user's Jupyter data dir, so it is
there in the next server too. Each runs the launcher (:mod:`jupyterhub_hpc.modules.kernel`): the
server's own environment is never changed.

Routes under ``<base_url>jupyterhub-hpc/modules`` (authenticated as every Jupyter Server API
handler, XSRF on writes):

- ``GET``: the catalogue and the server's modules (the hub's ``/hub/api/hpc/modules/<user>/<server>``,
  cached :data:`CATALOGUE_TTL` s), the kernelspecs made here, the running kernels' module sets, the
  failed module loads and the user's collections;
- ``GET status``: the running kernels and the failed loads only (what the Lab polls);
- ``POST kernels`` / ``PUT kernels/<name>`` / ``DELETE kernels/<name>``: a user's kernel; a changed
  module set restarts the running kernels of that kernelspec (the answer lists them);
- ``PUT collections/<name>`` / ``DELETE collections/<name>``: named module sets of the user's.

Module names are checked with :func:`check_module_name` and against the hub's catalogue (400
otherwise); nothing from a request reaches a shell: the launcher gets them as argv elements.
"""

from __future__ import annotations

import atexit
import json
import logging
import os
import re
import shutil
import sys
import tempfile
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import quote

from jupyter_core.paths import jupyter_data_dir
from jupyter_server.utils import url_path_join
from tornado import web

from ..modules import SERVER_MODULES_ENV, Catalogue, ServerModules, check_module_name, kernelspec
from ..modules.kernel import status_path
from .handlers import _HubRoute
from .hub import ERROR_TTL, HubClient, HubReply

__all__ = ["CATALOGUE_TTL", "USER_PREFIX", "ModulesState", "setup_modules"]

log = logging.getLogger(__name__)

#: seconds the hub's catalogue answer is kept (the hub caches the cluster's own for longer)
CATALOGUE_TTL = 300.0
#: the kernelspec names of the users' own kernels
USER_PREFIX = "hpc-modules-"
COLLECTIONS_FILE = "jupyterhub-hpc-module-collections.json"
#: a failed load is reported this long after its kernel is gone, then its status file is removed
FAILURE_KEEP_SECONDS = 600.0
MAX_MODULES = 64
MAX_COLLECTIONS = 200
SLUG = re.compile(r"\A[a-z0-9][a-z0-9-]{0,62}\Z")
USER_KERNEL = re.compile(rf"\A{USER_PREFIX}[a-z0-9][a-z0-9-]{{0,62}}\Z")
COLLECTION = re.compile(r"\A[A-Za-z0-9][A-Za-z0-9 _.+-]{0,63}\Z")
DISPLAY_NAME = re.compile(r"\A[^\x00-\x1f\x7f]{1,120}\Z")


def slugify(text: str) -> str:
    """``Python 3.11 + PyTorch`` → ``python-3-11-pytorch`` (at most 40 characters, never empty)."""
    slug = re.sub(r"[^a-z0-9]+", "-", text.lower()).strip("-")[:40].strip("-")
    return slug or "kernel"


def _bad(message: str) -> web.HTTPError:
    return web.HTTPError(400, message)


def _write_private(path: Path, text: str) -> None:
    """Write ``text`` readable by the user only, replacing the file at once."""
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.{os.getpid()}")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w") as out:
        out.write(text)
    os.replace(tmp, path)


@dataclass
class ModulesState:
    """What the modules routes share in one server process."""

    client: HubClient | None
    server: ServerModules
    #: the admin presets' kernelspecs (private to this process)
    presets_dir: Path
    #: the user's Jupyter data dir (their kernelspecs, the collections file)
    data_dir: Path
    kernel_manager: Any = None
    python: str = sys.executable
    clock: Callable[[], float] = time.monotonic
    _reply: HubReply | None = field(default=None, repr=False)
    _expires: float = 0.0
    #: requests sent to the hub (the tests count them)
    hub_requests: int = 0

    @property
    def user_kernels_dir(self) -> Path:
        return self.data_dir / "kernels"

    @property
    def collections_path(self) -> Path:
        return self.data_dir / COLLECTIONS_FILE

    # -- the hub's answer -------------------------------------------------------------------

    async def hub_modules(self) -> HubReply:
        """The hub's modules of this server, cached; 404 outside a hub or without a module system."""
        if self.client is None:
            return HubReply(404, {"error": "not running in a JupyterHub: no module catalogue here"})
        if self._reply is not None and self.clock() < self._expires:
            return self._reply
        self.hub_requests += 1
        settings = self.client.settings
        who = f"{quote(settings.user, safe='')}/{quote(settings.server_name, safe='')}"
        url = f"{settings.api_url}/hpc/modules/{who}"
        reply = await self.client.request("GET", url)
        self._reply = reply
        self._expires = self.clock() + (CATALOGUE_TTL if reply.ok else ERROR_TTL)
        return reply

    async def catalogue(self) -> Catalogue:
        reply = await self.hub_modules()
        if not reply.ok or not isinstance(reply.body, dict):
            error = reply.body.get("error") if isinstance(reply.body, dict) else None
            raise web.HTTPError(409 if reply.status == 404 else 502, error or "no module catalogue")
        if not reply.body.get("catalogue") and reply.body.get("catalogue_error"):
            # the hub could not read the cluster's catalogue: say that, not "not in the catalogue"
            raise web.HTTPError(502, f"the hub has no catalogue: {reply.body['catalogue_error']}")
        return Catalogue.from_json({"system": reply.body["system"], "modules": reply.body["catalogue"]})

    async def check_modules(self, value: object) -> list[str]:
        """Request input → module names of the catalogue (400 for anything else)."""
        if not isinstance(value, list) or not value or len(value) > MAX_MODULES:
            raise _bad(f"modules: a list of 1 to {MAX_MODULES} module names")
        names = []
        for item in value:
            try:
                names.append(check_module_name(item))
            except ValueError as exc:
                raise _bad(f"modules: {exc}") from None
        catalogue = await self.catalogue()
        unknown = [n for n in names if catalogue.find(n) is None]
        if unknown:
            raise _bad(f"modules not in this server's catalogue: {', '.join(unknown)}")
        return list(dict.fromkeys(names))

    # -- kernelspecs ------------------------------------------------------------------------

    def install_presets(self) -> list[str]:
        """The admin presets as kernelspecs in :attr:`presets_dir` (their names)."""
        names = []
        for preset in self.server.kernels:
            spec = kernelspec(preset.display_name, preset.modules, purge=preset.purge, python=self.python)
            spec["metadata"]["jupyterhub_hpc"]["preset"] = True
            _write_private(self.presets_dir / preset.name / "kernel.json", json.dumps(spec, indent=1))
            names.append(preset.name)
        return names

    def specs(self) -> list[dict[str, Any]]:
        """Every kernelspec made by this package: the presets, then the user's own."""
        found = []
        for kind, root in (("preset", self.presets_dir), ("user", self.user_kernels_dir)):
            for path in sorted(root.glob("*/kernel.json")) if root.is_dir() else []:
                if kind == "user" and not USER_KERNEL.match(path.parent.name):
                    continue
                spec = _read_json(path)
                meta = spec.get("metadata", {}).get("jupyterhub_hpc") if isinstance(spec, dict) else None
                if isinstance(meta, dict):
                    found.append(
                        {
                            "name": path.parent.name,
                            "display_name": spec.get("display_name", path.parent.name),
                            "modules": list(meta.get("modules", [])),
                            "purge": bool(meta.get("purge", False)),
                            "kind": kind,
                        }
                    )
        return found

    def write_user_kernel(
        self, name: str, display_name: str, modules: list[str], purge: bool
    ) -> dict[str, Any]:
        spec = kernelspec(display_name, modules, purge=purge, python=self.python)
        _write_private(self.user_kernels_dir / name / "kernel.json", json.dumps(spec, indent=1))
        return {
            "name": name,
            "display_name": display_name,
            "modules": modules,
            "purge": purge,
            "kind": "user",
        }

    # -- kernels and their status files ------------------------------------------------------

    def kernels(self) -> list[dict[str, Any]]:
        """The running kernels of our kernelspecs with their module sets (the launcher's status)."""
        specs = {s["name"]: s for s in self.specs()}
        out = []
        for model in self.kernel_manager.list_kernels() if self.kernel_manager is not None else []:
            spec = specs.get(model.get("name", ""))
            if spec is None:
                continue
            status = self._status_of(model["id"]) or {}
            out.append(
                {
                    "id": model["id"],
                    "kernelspec": spec["name"],
                    "display_name": spec["display_name"],
                    "execution_state": model.get("execution_state"),
                    "modules": status.get("modules", spec["modules"]),
                    "loaded": status.get("loaded", []),
                    "ok": status.get("ok"),
                }
            )
        return out

    def _status_file(self, kernel_id: str) -> Path:
        km = self.kernel_manager
        connection_dir = getattr(km, "connection_dir", "") or tempfile.gettempdir()
        return status_path(Path(connection_dir) / f"kernel-{kernel_id}.json")

    def _status_of(self, kernel_id: str) -> dict[str, Any] | None:
        status = _read_json(self._status_file(kernel_id))
        return status if isinstance(status, dict) else None

    def failures(self) -> list[dict[str, Any]]:
        """Failed module loads (running kernels or kernels gone for less than 10 minutes); older
        status files of kernels that are gone are removed."""
        km = self.kernel_manager
        if km is None:
            return []
        running = set(km.list_kernel_ids())
        connection_dir = Path(getattr(km, "connection_dir", "") or tempfile.gettempdir())
        prefix = status_path(connection_dir / "kernel-").name
        out = []
        for path in sorted(connection_dir.glob(f"{prefix}*.json")):
            kernel_id = path.name[len(prefix) : -len(".json")]
            try:
                mtime = path.stat().st_mtime
            except OSError:  # removed meanwhile (another request's clean-up)
                continue
            age = time.time() - mtime
            status = _read_json(path)
            failed = isinstance(status, dict) and status.get("ok") is False
            if kernel_id not in running and (not failed or age > FAILURE_KEEP_SECONDS):
                path.unlink(missing_ok=True)
                continue
            if failed:
                assert isinstance(status, dict)
                out.append(
                    {
                        "kernel_id": kernel_id,
                        "running": kernel_id in running,
                        "modules": status.get("modules", []),
                        "message": str(status.get("message", "")),
                        "time": mtime,
                    }
                )
        return out

    async def restart_kernels(self, spec_name: str) -> list[str]:
        """Restart the running kernels of ``spec_name`` with its (new) kernel.json."""
        km = self.kernel_manager
        restarted = []
        for model in km.list_kernels() if km is not None else []:
            if model.get("name") != spec_name:
                continue
            kernel = km.get_kernel(model["id"])
            # jupyter_client keeps the kernelspec it read at the start: read the new one
            kernel._kernel_spec = None
            if getattr(kernel, "provisioner", None) is not None:
                kernel.provisioner.kernel_spec = kernel.kernel_spec
            await km.restart_kernel(model["id"])
            restarted.append(model["id"])
        return restarted

    # -- collections ------------------------------------------------------------------------

    def collections(self) -> dict[str, dict[str, Any]]:
        data = _read_json(self.collections_path)
        items = data.get("collections") if isinstance(data, dict) else None
        return dict(items) if isinstance(items, dict) else {}

    def save_collections(self, items: Mapping[str, Any]) -> None:
        _write_private(
            self.collections_path, json.dumps({"version": 1, "collections": dict(items)}, indent=1)
        )


def _read_json(path: Path) -> Any:
    try:
        return json.loads(path.read_text())
    except (OSError, ValueError):
        return None


class _ModulesRoute(_HubRoute):
    mstate: ModulesState

    def initialize(self, state: Any, modules: ModulesState | None = None) -> None:
        super().initialize(state)
        assert modules is not None
        self.mstate = modules

    def body(self) -> dict[str, Any]:
        try:
            value = json.loads(self.request.body or b"{}")
        except ValueError:
            raise _bad("the body is not JSON") from None
        if not isinstance(value, dict):
            raise _bad("the body must be a JSON object")
        return value

    def send(self, value: Any, status: int = 200) -> None:
        self._answer(HubReply(status, value))


class ModulesRoute(_ModulesRoute):
    @web.authenticated
    async def get(self) -> None:
        m = self.mstate
        reply = await m.hub_modules()
        body: dict[str, Any] = {"available": reply.ok and isinstance(reply.body, dict)}
        if body["available"]:
            body.update(
                {
                    k: reply.body.get(k)
                    for k in ("system", "cluster", "catalogue", "catalogue_error", "server", "kernels")
                }
            )
            body["presets"] = body.pop("kernels")
        else:
            error = reply.body.get("error") if isinstance(reply.body, dict) else None
            body["error"] = error or f"the hub answered {reply.status}"
            body["server"] = {
                "modules": list(m.server.modules),
                "sticky": list(m.server.sticky),
                "purge": m.server.purge,
            }
        body.update(
            kernelspecs=m.specs(),
            running=m.kernels(),
            failures=m.failures(),
            collections=m.collections(),
        )
        self.send(body)


class StatusRoute(_ModulesRoute):
    @web.authenticated
    def get(self) -> None:
        self.send({"running": self.mstate.kernels(), "failures": self.mstate.failures()})


class KernelsRoute(_ModulesRoute):
    async def _fields(self, body: Mapping[str, Any]) -> tuple[str, list[str], bool]:
        display_name = body.get("display_name")
        if not isinstance(display_name, str) or not DISPLAY_NAME.match(display_name.strip()):
            raise _bad("display_name: 1 to 120 characters, no control characters")
        purge = body.get("purge", False)
        if not isinstance(purge, bool):
            raise _bad("purge: true or false")
        return display_name.strip(), await self.mstate.check_modules(body.get("modules")), purge

    @web.authenticated
    async def post(self, name: str | None = None) -> None:
        if name is not None:
            raise web.HTTPError(405, "POST to jupyterhub-hpc/modules/kernels, PUT to change one")
        display_name, modules, purge = await self._fields(self.body())
        base = USER_PREFIX + slugify(display_name)
        taken = {s["name"] for s in self.mstate.specs()} | {
            p.name for p in self.mstate.user_kernels_dir.glob("*")
        }
        name = base
        for n in range(2, 100):
            if name not in taken:
                break
            name = f"{base}-{n}"
        else:
            raise web.HTTPError(409, f"too many kernels named like {base}")
        spec = self.mstate.write_user_kernel(name, display_name, modules, purge)
        self.log.info("jupyterhub-hpc: kernel %s with modules %s", name, " ".join(modules))
        self.send(spec, 201)

    def _existing(self, name: str | None) -> dict[str, Any]:
        if name is None or not USER_KERNEL.match(name):
            raise web.HTTPError(404, "no such kernel of yours (admin presets cannot be changed)")
        spec = next((s for s in self.mstate.specs() if s["name"] == name and s["kind"] == "user"), None)
        if spec is None:
            raise web.HTTPError(404, f"no kernel {name} of yours")
        return spec

    @web.authenticated
    async def put(self, name: str | None = None) -> None:
        old = self._existing(name)
        body = self.body()
        body.setdefault("display_name", old["display_name"])
        display_name, modules, purge = await self._fields(body)
        spec = self.mstate.write_user_kernel(old["name"], display_name, modules, purge)
        changed = (modules, purge) != (old["modules"], old["purge"])
        spec["restarted"] = await self.mstate.restart_kernels(old["name"]) if changed else []
        self.send(spec)

    @web.authenticated
    async def delete(self, name: str | None = None) -> None:
        spec = self._existing(name)
        shutil.rmtree(self.mstate.user_kernels_dir / spec["name"], ignore_errors=True)
        self.set_status(204)
        self.finish()


class CollectionsRoute(_ModulesRoute):
    def _name(self, name: str) -> str:
        # tornado has decoded the path argument already
        if not COLLECTION.match(name):
            raise _bad("collection names: 1 to 64 letters, digits, spaces and _.+-")
        return name

    @web.authenticated
    def get(self, name: str) -> None:
        item = self.mstate.collections().get(self._name(name))
        if item is None:
            raise web.HTTPError(404, "no such collection")
        self.send(item)

    @web.authenticated
    async def put(self, name: str) -> None:
        key = self._name(name)
        body = self.body()
        purge = body.get("purge", False)
        if not isinstance(purge, bool):
            raise _bad("purge: true or false")
        modules = await self.mstate.check_modules(body.get("modules"))
        items = self.mstate.collections()
        if key not in items and len(items) >= MAX_COLLECTIONS:
            raise _bad(f"at most {MAX_COLLECTIONS} collections")
        items[key] = {"modules": modules, "purge": purge}
        self.mstate.save_collections(items)
        self.send(items[key])

    @web.authenticated
    def delete(self, name: str) -> None:
        items = self.mstate.collections()
        if items.pop(self._name(name), None) is None:
            raise web.HTTPError(404, "no such collection")
        self.mstate.save_collections(items)
        self.set_status(204)
        self.finish()


def setup_modules(serverapp: Any, state: Any, env: Mapping[str, str] | None = None) -> ModulesState:
    """The presets on the kernel search path, and the modules routes."""
    env = os.environ if env is None else env
    server = ServerModules()
    if env.get(SERVER_MODULES_ENV):
        try:
            server = ServerModules.from_env(env[SERVER_MODULES_ENV])
        except ValueError as exc:
            serverapp.log.error(
                "jupyterhub-hpc: %s is not valid, no kernel presets: %s", SERVER_MODULES_ENV, exc
            )
    presets = Path(tempfile.mkdtemp(prefix="jupyterhub-hpc-kernels-"))
    atexit.register(shutil.rmtree, presets, True)
    modules = ModulesState(
        client=state.client,
        server=server,
        presets_dir=presets,
        data_dir=Path(jupyter_data_dir()),
        kernel_manager=getattr(serverapp, "kernel_manager", None),
    )
    names = modules.install_presets()
    ksm = getattr(serverapp, "kernel_spec_manager", None)
    if ksm is not None and hasattr(ksm, "kernel_dirs"):
        ksm.kernel_dirs = [str(presets), *[d for d in ksm.kernel_dirs if d != str(presets)]]
    if names:
        serverapp.log.info("jupyterhub-hpc: kernel presets %s", ", ".join(names))
    base = url_path_join(serverapp.web_app.settings["base_url"], "jupyterhub-hpc", "modules")
    kw = {"state": state, "modules": modules}
    serverapp.web_app.add_handlers(
        ".*$",
        [
            (base, ModulesRoute, kw),
            (url_path_join(base, "status"), StatusRoute, kw),
            (url_path_join(base, "kernels"), KernelsRoute, kw),
            (url_path_join(base, "kernels", r"([^/]+)"), KernelsRoute, kw),
            (url_path_join(base, "collections", r"([^/]+)"), CollectionsRoute, kw),
        ],
    )
    return modules
