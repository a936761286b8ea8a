"""The hub API endpoint the job-side launcher reports its port to.

Register it explicitly in ``jupyterhub_config.py`` (nothing is registered at
import time)::

    from jupyterhub_hpc.handlers import api_handlers
    c.JupyterHub.extra_handlers = api_handlers

It accepts exactly ``{"port": <int>}``, authenticated with the API token of
that very server, once per job start; anything else is refused and changes
nothing. The body is bounded (:data:`PORT_BODY_LIMIT` bytes, read without
buffering more) and parsed without recursion (:mod:`jupyterhub_hpc.httpbody`).

``GET /hub/api/hpc/card/<user>/<server name>`` answers with the job card of that
server (:mod:`jupyterhub_hpc.jobcard`) from the shared watcher's cache, never a
scheduler command, to a token or cookie with ``read:servers`` or ``access:servers``
on that server (the server's own token has the latter). ``GET /hub/api/hpc/modules/<user>/<server
name>`` answers with that server's software modules and catalogue, with the same access.

``GET /hub/api/hpc/kernel-request/<user>/<server name>`` (same access; the profile API's rate
limit) lists the profiles the user sees on that server's spawner as a batch kernel may use them
(:func:`~jupyterhub_hpc.profiles.kernelrequest.kernel_profiles`: per kernel field its fixed value,
choices or bounds after live limits); ``POST`` there with ``{"profile": slug or null, "resources":
{field: value}}`` checks a batch kernel's resources with the spawner's own validation of that
profile: 200 ``{"profile", "backend", "cluster", "resources"}`` (the resolved job's fields), 400
``{"field", "message"}`` for a field the profile does not offer, a value outside it, or a profile
the user cannot see; 404 when the spawner has no profiles. Nothing is started or remembered.

``POST /hub/api/hpc/progress`` with ``{"hook": NAME, "line": TEXT}`` is a line of an admin's start
hook, reported by the container's init (:mod:`jupyterhub_hpc.containers.report`) and shown in the
spawn progress as "Start hook NAME: TEXT": authenticated with the API token of that very starting
server, only before its port was reported, bounded (:data:`PROGRESS_BODY_LIMIT` bytes, a line of at
most 200 printable characters, at most 60 lines per job).

``POST /hub/api/hpc/use`` with ``{"last_use": "<ISO 8601>"}`` is the server's report of when it
was last used (:mod:`jupyterhub_hpc.idle`): authenticated with the API token of that very
running server, bounded (:data:`USE_BODY_LIMIT` bytes), never more than a small skew in the
future, and monotonic (an older report changes nothing). A user can only keep their own server
alive, and only through the server's token.
"""

from __future__ import annotations

import json
from datetime import datetime
from pathlib import Path
from typing import Any

from jupyterhub.apihandlers.base import APIHandler
from jupyterhub.scopes import has_scope
from tornado import web

from .httpbody import JSONBodyHandler
from .jobcard import spawner_card
from .profiles.kernelrequest import KernelRequestError, kernel_profiles, kernel_resources, kernel_user_options
from .profiles.mixin import ProfileOptionsError, ProfilesMixin
from .profiles.model import ProfileList
from .ratelimit import check_caller_rate
from .spawner import HPCSpawner, PortReportTooEarly

__all__ = [
    "CARD_ROUTE",
    "KERNEL_REQUEST_ROUTE",
    "MODULES_ROUTE",
    "PORT_ROUTE",
    "PROGRESS_ROUTE",
    "USE_ROUTE",
    "IdleUseHandler",
    "JobCardHandler",
    "JobPortHandler",
    "JobProgressHandler",
    "KernelRequestHandler",
    "ModulesHandler",
    "api_handlers",
    "hub_template_paths",
]

#: ``c.JupyterHub.template_paths = hub_template_paths``: the home page with the job cards
hub_template_paths: list[str] = [str(Path(__file__).parent / "hubtemplates")]

PORT_ROUTE = r"/api/hpc/port"
CARD_ROUTE = r"/api/hpc/card/([^/]+)/([^/]*)"
MODULES_ROUTE = r"/api/hpc/modules/([^/]+)/([^/]*)"
KERNEL_REQUEST_ROUTE = r"/api/hpc/kernel-request/([^/]+)/([^/]*)"
#: bytes of a kernel request (``{"profile": ..., "resources": {five fields}}`` is about 150)
KERNEL_REQUEST_BODY_LIMIT = 4096
#: either scope on the server grants its card
CARD_SCOPES = ("read:servers", "access:servers")
#: bytes of a port report (``{"port": 20001}`` is 15)
PORT_BODY_LIMIT = 1024
PROGRESS_ROUTE = r"/api/hpc/progress"
#: bytes of a start hook's line (``{"hook": <64>, "line": <200 characters>}``; a UTF-8 line may be 4x)
PROGRESS_BODY_LIMIT = 1024
USE_ROUTE = r"/api/hpc/use"
#: bytes of a use report (``{"last_use": "2026-12-03T07:48:00.123456+00:00"}`` is 48)
USE_BODY_LIMIT = 256


class ServerTokenHandler(JSONBodyHandler):
    """A report from a server of this package, authenticated by that very server's API token
    (never a browser cookie): the port report and the use report share the check."""

    def check_xsrf_cookie(self) -> None:
        # token-authenticated only; a browser cookie is never accepted here
        return None

    def token_and_user(self) -> tuple[str, Any]:
        """The request's token and its user; 403 without a token of a user."""
        token = self.get_auth_token()
        user = self.current_user
        if not token or user is None or not hasattr(user, "spawners"):
            raise web.HTTPError(403, "a server's own API token is required")
        return token, user

    @staticmethod
    def own_spawner(user: Any, token: str, *, running: bool) -> HPCSpawner:
        """The user's spawner of this package whose server holds ``token`` (with ``running``,
        only an active one); 403 when none does."""
        spawner = next(
            (
                s
                for s in user.spawners.values()
                if isinstance(s, HPCSpawner) and (s.active or not running) and s.matches_token(token)
            ),
            None,
        )
        if spawner is None:
            what = "running" if running else "starting"
            raise web.HTTPError(403, f"this token belongs to no {what} server")
        return spawner


class JobPortHandler(ServerTokenHandler):
    """``POST /hub/api/hpc/port`` with ``{"port": N}`` from the job's launcher."""

    body_limit = PORT_BODY_LIMIT
    body_depth = 2

    async def post(self) -> None:
        token, user = self.token_and_user()
        body: Any = self.json_object()
        if set(body) != {"port"}:
            raise web.HTTPError(400, 'the body must be exactly {"port": <integer>}')
        port = body["port"]
        if not isinstance(port, int) or isinstance(port, bool):
            raise web.HTTPError(400, "port must be an integer")
        spawner = self.own_spawner(user, token, running=False)
        try:
            spawner.accept_port(port)
        except PortReportTooEarly as exc:
            # the launcher retries 503s with back-off
            raise web.HTTPError(503, str(exc)) from None
        except ValueError as exc:
            self.log.warning("refused port report for %s: %s", spawner._log_name, exc)
            raise web.HTTPError(400, str(exc)) from None
        self.log.info("%s: job %s listens on port %d", spawner._log_name, spawner.job_id, port)
        self.set_status(200)
        self.finish(json.dumps({"port": port}))


class JobProgressHandler(ServerTokenHandler):
    """``POST /hub/api/hpc/progress`` with ``{"hook": NAME, "line": TEXT}`` from the container's
    init: a start hook's line, shown in the spawn progress of the server starting with this token."""

    body_limit = PROGRESS_BODY_LIMIT
    body_depth = 2

    async def post(self) -> None:
        token, user = self.token_and_user()
        body: Any = self.json_object()
        if set(body) != {"hook", "line"}:
            raise web.HTTPError(400, 'the body must be exactly {"hook": <name>, "line": <text>}')
        spawner = self.own_spawner(user, token, running=False)
        try:
            spawner.accept_hook_line(body["hook"], body["line"])
        except ValueError as exc:
            raise web.HTTPError(400, str(exc)) from None
        self.set_status(200)
        self.finish(json.dumps({"shown": True}))


class IdleUseHandler(ServerTokenHandler):
    """``POST /hub/api/hpc/use`` with ``{"last_use": iso}`` from the server's extension."""

    body_limit = USE_BODY_LIMIT
    body_depth = 2

    async def post(self) -> None:
        token, user = self.token_and_user()
        body: Any = self.json_object()
        if set(body) != {"last_use"} or not isinstance(body["last_use"], str) or len(body["last_use"]) > 40:
            raise web.HTTPError(400, 'the body must be exactly {"last_use": "<ISO 8601 time>"}')
        try:
            last_use = datetime.fromisoformat(body["last_use"].replace("Z", "+00:00"))
        except ValueError:
            raise web.HTTPError(400, "last_use is not an ISO 8601 time") from None
        if last_use.tzinfo is None:
            raise web.HTTPError(400, "last_use needs a time zone (Z or +00:00)")
        spawner = self.own_spawner(user, token, running=True)
        try:
            kept = spawner.accept_use(last_use)
        except ValueError as exc:
            raise web.HTTPError(400, str(exc)) from None
        spawner._persist_state()  # kept across a hub restart, as the job is
        self.set_status(200)
        self.set_header("Cache-Control", "no-store")
        self.finish(json.dumps({"last_use": kept.strftime("%Y-%m-%dT%H:%M:%S.%fZ")}))


class JobCardHandler(APIHandler):
    """``GET /hub/api/hpc/card/<user>/<server name>``: the job card (see the module docstring).

    403 without ``read:servers`` or ``access:servers`` on that server (also for another user's
    server that does not exist: nothing is told about it), 404 for an unknown user or server the
    caller could see."""

    def _allowed(self, user_name: str, server_name: str) -> bool:
        target = f"{user_name}/{server_name}"
        return any(
            has_scope(f"{scope}!server={target}", self.parsed_scopes, db=self.db) for scope in CARD_SCOPES
        )

    def server_spawner(self, user_name: str, server_name: str) -> Any:
        """The spawner of ``user_name``'s server ``server_name``, once the caller may see it."""
        if self.current_user is None:
            raise web.HTTPError(403, "Missing or invalid credentials.")
        if not self._allowed(user_name, server_name):
            raise web.HTTPError(403, "requires read:servers or access:servers on this server")
        user = self.find_user(user_name)
        if user is None:
            raise web.HTTPError(404, f"no such user: {user_name}")
        if server_name and server_name not in user.orm_user.orm_spawners:
            raise web.HTTPError(404, f"{user_name} has no server named {server_name}")
        return user.spawners[server_name]

    def write_json(self, status: int, body: Any) -> None:
        self.set_status(status)
        self.set_header("Content-Type", "application/json")
        self.set_header("Cache-Control", "no-store")
        self.finish(json.dumps(body))

    async def get(self, user_name: str, server_name: str) -> None:
        self.write_json(200, spawner_card(self.server_spawner(user_name, server_name)))


class ModulesHandler(JobCardHandler):
    """``GET /hub/api/hpc/modules/<user>/<server name>``: the server's module system, its
    catalogue (within the profile's allow/deny), the server's modules and the kernel presets
    (:meth:`~jupyterhub_hpc.module_access.ModuleOptions.modules_document`); the same access as
    the job card; 404 when the server has no module system."""

    async def get(self, user_name: str, server_name: str) -> None:
        spawner = self.server_spawner(user_name, server_name)
        document = await spawner.modules_document() if isinstance(spawner, HPCSpawner) else None
        if document is None:
            raise web.HTTPError(404, "this server has no module system")
        self.write_json(200, document)


class KernelRequestHandler(JSONBodyHandler, JobCardHandler):
    """``GET``/``POST /hub/api/hpc/kernel-request/<user>/<server name>``: what a batch kernel of
    that server may ask within the profiles its spawner offers the user, and the check of one
    request (:mod:`jupyterhub_hpc.profiles.kernelrequest`); the same access as the job card,
    the profile API's rate limit; 404 when the spawner has no profiles."""

    body_limit = KERNEL_REQUEST_BODY_LIMIT
    body_depth = 3

    async def _profiles(self, user_name: str, server_name: str) -> tuple[ProfilesMixin, ProfileList]:
        spawner = self.server_spawner(user_name, server_name)
        if not isinstance(spawner, ProfilesMixin):
            raise web.HTTPError(404, "this hub's spawner has no profiles")
        check_caller_rate(self.current_user, spawner.profile_api_rate_limit, spawner.profile_api_rate_window)
        profiles = await spawner.load_profiles()
        if profiles is None:
            raise web.HTTPError(404, "no profiles are configured")
        return spawner, profiles

    async def get(self, user_name: str, server_name: str) -> None:
        spawner, profiles = await self._profiles(user_name, server_name)
        ctx = await spawner.profile_context(profiles)
        self.write_json(200, {"user": ctx.user, "profiles": kernel_profiles(profiles, ctx)})

    async def post(self, user_name: str, server_name: str) -> None:
        body: Any = self.json_object()
        slug, resources = body.get("profile"), body.get("resources", {})
        if set(body) - {"profile", "resources"} or not isinstance(resources, dict):
            raise web.HTTPError(400, 'the body must be {"profile": <slug or null>, "resources": {...}}')
        if slug is not None and not isinstance(slug, str):
            raise web.HTTPError(400, "profile must be a slug or null")
        spawner, profiles = await self._profiles(user_name, server_name)
        try:
            ctx = await spawner.profile_context(profiles)
            options = kernel_user_options(profiles, ctx, slug, resources)
            resolution = await spawner.resolve_profile(options, remembered=False)
        except KernelRequestError as exc:
            self.write_json(400, {"status": 400, "field": exc.field, "message": str(exc)})
            return
        except ProfileOptionsError as exc:
            field = next((f for f, v in resources.items() if options.get(exc.field) == v), exc.field)
            message = f"{field}: {exc.detail} (profile {options['profile']}, option {exc.field})"
            self.write_json(400, {"status": 400, "field": field, "option": exc.field, "message": message})
            return
        if resolution is None:
            raise web.HTTPError(404, "no profiles are configured")
        self.write_json(
            200,
            {
                "profile": resolution.profile.slug,
                "backend": resolution.backend,
                "cluster": resolution.cluster,
                "resources": kernel_resources(resolution),
            },
        )


#: ``c.JupyterHub.extra_handlers = api_handlers``
api_handlers: list[tuple[str, type[APIHandler]]] = [
    (PORT_ROUTE, JobPortHandler),
    (CARD_ROUTE, JobCardHandler),
    (MODULES_ROUTE, ModulesHandler),
    (USE_ROUTE, IdleUseHandler),
    (PROGRESS_ROUTE, JobProgressHandler),
    (KERNEL_REQUEST_ROUTE, KernelRequestHandler),
]
