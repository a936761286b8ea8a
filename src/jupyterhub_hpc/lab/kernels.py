"""The kernel jobs of this server (issue 16) for JupyterLab, under ``<base_url>jupyterhub-hpc/kernels``.

``GET kernels``:

The answer is ``{"kernels": [...]}``, one :meth:`~jupyterhub_hpc.kernels.provisioner.HPCProvisioner.describe`
for each kernel job of this server process (:data:`~jupyterhub_hpc.kernels.provisioner.KERNEL_JOBS`):
``kernel_id``, ``job_id``, ``backend``, ``state`` (``PENDING``, ``RUNNING``, ...), ``reason`` in plain
words, ``expected_start`` and ``end_time`` (ISO), ``node``, ``generation`` and ``ended`` (why the job
ended or its start failed, with the tail of its output; ``''`` while all is well).

It reads the provisioners' cached status only (the server's one batched status query per interval,
:class:`~jupyterhub_hpc.watcher.QueueWatcher`): polling this route never queries the scheduler.
A kernel job is listed from its submit on, also while jupyter_server has not added the starting
kernel to its kernel list yet. The Lab polls it only while a batch kernel is starting (docs/kernels.md).

``DELETE kernels/<kernel id>`` (the queued notification's "Cancel job"): gives up the start of a
kernel whose job has not bound a kernel yet (queued, or starting on its node) and cancels the job
(:meth:`~jupyterhub_hpc.kernels.provisioner.HPCProvisioner.cancel_queued`); 202 with
``{"kernel_id", "job_id"}``, 404 for a kernel that is not a kernel job of this server, 409 once the
kernel runs (shut it down as any kernel) or its start has ended.

``GET kernels/profiles``: the profiles the hub's spawner offers this user, as a batch kernel may use
them (the hub's ``GET /hub/api/hpc/kernel-request/<user>/<server>``, asked with the server's
token: per field its fixed value, choices or bounds); ``{"profiles": []}`` outside a hub or when
the hub's spawner has no profiles.

``POST kernels/specs`` (the Lab's "New batch kernel…" dialog): ``{"display_name", "profile",
"partition", "cpus", "memory", "walltime", "gpus"}`` (all but the name optional) become a batch
kernelspec through :func:`jupyterhub_hpc.kernels.spec.kernelspec`, i.e. the spawner's typed job
request; a value outside its rules is a 400 with the field's message, nothing is written. Inside
a hub whose spawner has profiles, the resources are first checked by the hub against the profile
(``profile``, or the default one): the hub's resolved fields become the kernel's resources (a
profile's fixed partition filled in), the hub's refusal is our 400 with its message, and a hub
that cannot be asked is a 503; nothing is written then either. Then the live limits are checked
(:func:`check_live_limits`). The kernelspec is ``hpc-batch-<slug>`` in the user's Jupyter data dir
(``kernels/``), so it is there in the next server too; the answer (201) is ``{"name",
"display_name", "resources"}``. The backend is the server's ``c.HPCProvisioner.backend`` (default
``slurm``).

Authenticated as every Jupyter Server API handler (XSRF on POST).
"""

from __future__ import annotations

import json
import logging
import re
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from jupyter_core.paths import jupyter_data_dir
from jupyter_server.utils import url_path_join
from tornado import web

from ..backends.base import QueryError
from ..commands import CommandError
from ..kernels.spec import install, kernelspec
from ..profiles.validate import check_partition_fit
from ..request import JobRequest, RequestError
from .handlers import _HubRoute
from .hub import HubReply
from .modules import DISPLAY_NAME, slugify

__all__ = ["BATCH_PREFIX", "batch_kernelspec", "describe_kernel_jobs", "setup_kernel_routes"]

log = logging.getLogger(__name__)

#: the kernelspec names of the batch kernels users make in the Lab
BATCH_PREFIX = "hpc-batch-"
#: the dialog's fields: job request fields a user may choose (the rest is the site's)
RESOURCE_FIELDS = ("partition", "cpus", "memory", "walltime", "gpus")
FIELD = re.compile(r"\A[A-Za-z0-9_.:+-]{1,64}\Z")


def describe_kernel_jobs(jobs: Mapping[str, Any] | None = None) -> list[dict[str, Any]]:
    """``describe()`` of every kernel job in ``jobs`` (default: this process's ``KERNEL_JOBS``), in
    submit order; a provisioner that cannot describe itself is left out (and logged)."""
    if jobs is None:
        from ..kernels.provisioner import KERNEL_JOBS

        jobs = KERNEL_JOBS
    described = []
    for kernel_id, provisioner in list(jobs.items()):
        try:
            described.append(dict(provisioner.describe()))
        except Exception as exc:  # one broken entry must not hide the others
            log.warning("jupyterhub-hpc: kernel %s not described: %s", kernel_id, exc)
    return described


def batch_kernelspec(body: Mapping[str, Any], backend: str = "slurm") -> tuple[str, dict[str, Any]]:
    """The dialog's request → (kernelspec name, kernelspec); :class:`ValueError` (the message for
    the user) for a bad display name or a field outside the job request's rules."""
    display_name = body.get("display_name")
    if not isinstance(display_name, str) or not DISPLAY_NAME.match(display_name.strip()):
        raise ValueError("display_name: 1 to 120 printable characters")
    unknown = sorted(set(body) - {"display_name", *RESOURCE_FIELDS})
    if unknown:
        raise ValueError(f"{unknown[0]}: not a field of a batch kernel")
    resources: dict[str, Any] = {}
    for name in RESOURCE_FIELDS:
        value = body.get(name)
        if value is None or value == "":
            continue
        if isinstance(value, bool) or not isinstance(value, (str, int)) or not FIELD.match(str(value)):
            raise ValueError(f"{name}: not a valid value")
        resources[name] = value
    try:
        spec = kernelspec(display_name.strip(), backend=backend, resources=resources)
    except RequestError as exc:
        raise ValueError(str(exc)) from None
    return BATCH_PREFIX + slugify(display_name), spec


async def check_live_limits(resources: Mapping[str, Any], provisioner: Any, log: logging.Logger) -> None:
    """:class:`ValueError` (the message for the user) when ``resources`` do not fit the scheduler's
    partitions as they are now: the partition exists and takes jobs, and the request fits one of
    its nodes (the spawn form's rule). Asked as the user, through the provisioner's scheduler
    client; when the scheduler has no such query or does not answer, the submit decides."""
    request = JobRequest.from_mapping(resources)
    try:
        limits = await provisioner.client.limits(timeout=15)
    except (CommandError, QueryError, OSError) as exc:
        log.warning("jupyterhub-hpc: no live limits for a batch kernel (%s); not checked", exc)
        return
    if not limits.live or not limits.partitions:
        return
    name = request.partition or limits.default_partition()
    part = limits.partition(name)
    if part is None:
        raise ValueError(
            f"partition: there is no partition {name!r} (available: {', '.join(limits.partitions)})"
        )
    if not part.up:
        raise ValueError(f"partition: partition {part.name} is not accepting jobs now")

    def fail(field: str, reason: str) -> None:
        raise ValueError(f"{field}: {reason}")

    check_partition_fit(request, part, fail)


class KernelJobsRoute(_HubRoute):
    @web.authenticated
    async def get(self) -> None:
        self._answer(HubReply(200, {"kernels": describe_kernel_jobs()}))


class KernelJobRoute(_HubRoute):
    @web.authenticated
    async def delete(self, kernel_id: str) -> None:
        from ..kernels.provisioner import KERNEL_JOBS

        provisioner = KERNEL_JOBS.get(kernel_id)
        if provisioner is None:
            raise web.HTTPError(404, "not a kernel job of this server")
        if not provisioner.cancel_queued():
            raise web.HTTPError(409, "the kernel is not waiting for its job: shut it down instead")
        self._answer(HubReply(202, {"kernel_id": kernel_id, "job_id": provisioner.job_id}))


class KernelProfilesRoute(_HubRoute):
    @web.authenticated
    async def get(self) -> None:
        client = self.state.client
        if client is None:
            self._answer(HubReply(200, {"profiles": []}))
            return
        reply = await client.request("GET", client.settings.kernel_request_url)
        if reply.status == 404:
            reply = HubReply(200, {"profiles": []})
        elif reply.ok and not (isinstance(reply.body, dict) and isinstance(reply.body.get("profiles"), list)):
            reply = HubReply(502, {"error": "the hub's answer has no profiles list"})
        elif reply.ok:
            reply = HubReply(200, {"profiles": reply.body["profiles"]})
        self._answer(reply)


async def hub_checked(
    client: Any, profile: str | None, resources: Mapping[str, Any], backend: str
) -> tuple[str | None, dict[str, Any]] | None:
    """The hub's check of ``resources`` within ``profile``: (the profile's slug, its resources),
    or None when the hub's spawner has no profiles; :class:`web.HTTPError` for a refusal (400)
    or a hub that cannot be asked (503)."""
    body = {"profile": profile, "resources": dict(resources)}
    reply = await client.request("POST", client.settings.kernel_request_url, body=body)
    answer = reply.body if isinstance(reply.body, dict) else {}
    if reply.status == 404:
        if profile is not None:
            raise web.HTTPError(400, "profile: this hub offers no profiles")
        return None
    if reply.status in (400, 429):
        raise web.HTTPError(reply.status, str(answer.get("message") or answer.get("error") or "refused"))
    if not reply.ok or not isinstance(answer.get("resources"), dict):
        why = answer.get("error") or answer.get("message") or f"HTTP {reply.status}"
        raise web.HTTPError(
            503, f"the hub could not check this kernel against your profiles ({why}); nothing was written"
        )
    if answer.get("backend") not in (None, backend):
        raise web.HTTPError(
            400,
            f"profile: {answer.get('profile')} submits to {answer['backend']}; "
            f"batch kernels of this server run on {backend}",
        )
    return answer.get("profile"), dict(answer["resources"])


class KernelSpecsRoute(_HubRoute):
    backend: str
    data_dir: Path

    def initialize(self, state: Any, backend: str = "slurm", data_dir: Path | None = None) -> None:
        super().initialize(state)
        self.backend = backend
        self.data_dir = data_dir or Path(jupyter_data_dir())

    def _provisioner(self) -> Any:
        """A provisioner with the site's ``HPCProvisioner`` configuration (its scheduler client)."""
        from ..kernels.provisioner import HPCProvisioner

        serverapp = self.settings.get("serverapp")
        parent = getattr(serverapp, "kernel_manager", None)
        return HPCProvisioner(parent=parent, backend=self.backend)

    @web.authenticated
    async def post(self) -> None:
        try:
            body = json.loads(self.request.body or b"{}")
        except ValueError:
            raise web.HTTPError(400, "the body is not JSON") from None
        if not isinstance(body, dict):
            raise web.HTTPError(400, "the body must be a JSON object")
        profile = body.pop("profile", None)
        if profile is not None and not (isinstance(profile, str) and FIELD.match(profile)):
            raise web.HTTPError(400, "profile: not a profile's slug")
        try:
            name, spec = batch_kernelspec(body, self.backend)
            resources = spec["metadata"]["kernel_provisioner"]["config"]["resources"]
            checked = None
            if self.state.client is not None:
                checked = await hub_checked(self.state.client, profile, resources, self.backend)
            elif profile is not None:
                raise ValueError("profile: profiles are the hub's; this server runs outside a hub")
            if checked is not None:
                slug, resources = checked
                spec = kernelspec(spec["display_name"], backend=self.backend, resources=resources)
                spec["metadata"]["jupyterhub_hpc"]["profile"] = slug
            await check_live_limits(resources, self._provisioner(), self.log)
        except ValueError as exc:  # a RequestError too
            raise web.HTTPError(400, str(exc)) from None
        install(name, spec, self.data_dir / "kernels")
        self.log.info("jupyterhub-hpc: batch kernelspec %s written", name)
        self._answer(
            HubReply(201, {"name": name, "display_name": spec["display_name"], "resources": resources})
        )


def setup_kernel_routes(web_app: Any, state: Any, backend: str = "slurm") -> None:
    """Add ``jupyterhub-hpc/kernels``, ``kernels/<kernel id>``, ``kernels/specs`` and ``kernels/profiles``
    to the server's tornado application (``backend``: the one new batch kernels are made for)."""
    base = url_path_join(web_app.settings["base_url"], "jupyterhub-hpc")
    routes = [
        (url_path_join(base, "kernels"), KernelJobsRoute, {"state": state}),
        (url_path_join(base, "kernels", "specs"), KernelSpecsRoute, {"state": state, "backend": backend}),
        (url_path_join(base, "kernels", "profiles"), KernelProfilesRoute, {"state": state}),
        (url_path_join(base, "kernels", r"([0-9a-f-]{1,64})"), KernelJobRoute, {"state": state}),
    ]
    web_app.add_handlers(".*$", routes)
