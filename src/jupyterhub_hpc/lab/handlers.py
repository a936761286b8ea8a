"""The server extension's routes (issue 14's contract), under the server's base URL.

- ``GET  jupyterhub-hpc/card``: the hub's job card of this server, cached (:class:`CardCache`);
- ``POST jupyterhub-hpc/stop``: asks the hub to stop this server (``DELETE`` of it in the hub's API);
- ``GET  jupyterhub-hpc/announcements``: the announcements service's list for this user;
- ``POST jupyterhub-hpc/announcements/<id>/dismiss``: forwards the dismissal to the service.

Authenticated as every Jupyter Server API handler (XSRF on POST). Outside a JupyterHub the routes
answer 404 with a short JSON message; a hub that fails or does not answer becomes a JSON error
(502/504), never a hang.
"""

from __future__ import annotations

import asyncio
import json
import logging
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import quote

from jupyter_server.base.handlers import APIHandler
from jupyter_server.utils import url_path_join
from tornado import web

from .hub import CardCache, HubClient, HubReply, HubSettings

__all__ = ["LabState", "can_stop", "setup_handlers"]

ANNOUNCEMENT_ID = r"[A-Za-z0-9_.:-]{1,128}"


@dataclass
class LabState:
    """What the routes share in one server process."""

    client: HubClient | None
    cache: CardCache | None
    #: requests still running after their route answered (the stop's ``DELETE``)
    background: set[asyncio.Future[HubReply]] = field(default_factory=set)


class _HubRoute(APIHandler):
    state: LabState

    def initialize(self, state: LabState) -> None:
        self.state = state

    def _client(self) -> HubClient:
        if self.state.client is None:
            raise web.HTTPError(404, "not running in a JupyterHub: no job card here")
        return self.state.client

    def _answer(self, reply: HubReply) -> None:
        self.set_status(reply.status)
        self.set_header("Content-Type", "application/json")
        self.set_header("Cache-Control", "no-store")
        if reply.status == 204:
            self.finish()
            return
        self.finish(json.dumps(reply.body))

    def write_error(self, status_code: int, **kwargs: Any) -> None:
        exc = kwargs.get("exc_info", (None, None, None))[1]
        message = exc.log_message if isinstance(exc, web.HTTPError) and exc.log_message else self._reason
        self.set_header("Content-Type", "application/json")
        self.finish(json.dumps({"error": message}))


class CardRoute(_HubRoute):
    @web.authenticated
    async def get(self) -> None:
        self._client()
        assert self.state.cache is not None
        self._answer(await self.state.cache.get())


class StopRoute(_HubRoute):
    """The hub ends this very server while it handles the ``DELETE``, so its answer could never
    come back: the token's right to stop the server is checked first (``GET /hub/api/user``
    lists the token's scopes), the browser gets 202, then the ``DELETE`` is sent."""

    @web.authenticated
    async def post(self) -> None:
        client = self._client()
        who = await client.request("GET", f"{client.settings.api_url}/user")
        if not who.ok or not isinstance(who.body, dict):
            self._answer(who if not who.ok else HubReply(502, {"error": "the hub's answer was not JSON"}))
            return
        if not can_stop(who.body.get("scopes"), client.settings.user, client.settings.server_name):
            self._answer(
                HubReply(
                    403, {"error": "this server's token may not stop it (servers!server is not granted)"}
                )
            )
            return
        self.log.info("jupyterhub-hpc: the user asked the hub to stop this server")
        self._answer(HubReply(202, {"stopping": True}))
        task = asyncio.ensure_future(client.request("DELETE", client.settings.server_url))
        self.state.background.add(task)
        task.add_done_callback(self._stopped)

    def _stopped(self, task: asyncio.Future[HubReply]) -> None:
        self.state.background.discard(task)
        if not task.cancelled() and not task.result().ok:
            reply = task.result()
            self.log.warning("jupyterhub-hpc: the hub refused to stop this server: %s", reply.status)


def can_stop(scopes: object, user: str, server_name: str) -> bool:
    """True when the token's (expanded) scopes include stopping ``user/server_name``."""
    if not isinstance(scopes, list):
        return False
    wanted = {"delete:servers", f"delete:servers!user={user}", f"delete:servers!server={user}/{server_name}"}
    return any(scope in wanted for scope in scopes)


class AnnouncementsRoute(_HubRoute):
    def _service(self) -> str:
        client = self._client()
        if not client.settings.announcements_url:
            raise web.HTTPError(404, "no announcements service is configured for this server")
        return client.settings.announcements_url

    @web.authenticated
    async def get(self) -> None:
        url = self._service() + "api/v1/announcements"
        self._answer(await self._client().request("GET", url))


class DismissRoute(AnnouncementsRoute):
    @web.authenticated
    async def post(self, announcement_id: str) -> None:
        url = f"{self._service()}api/v1/announcements/{quote(announcement_id, safe='')}/dismissal"
        self._answer(await self._client().request("POST", url, body={}))


def setup_handlers(web_app: Any, log: logging.Logger | None = None) -> LabState:
    """Add the routes to the server's tornado application."""
    settings = HubSettings.from_environ()
    client = HubClient(settings) if settings is not None else None
    state = LabState(client=client, cache=CardCache(client) if client is not None else None)
    if log is not None:
        log.info(
            "jupyterhub-hpc: job card routes %s",
            f"for {settings.user}/{settings.server_name}" if settings else "off (not in a JupyterHub)",
        )
    base = url_path_join(web_app.settings["base_url"], "jupyterhub-hpc")
    routes = [
        (url_path_join(base, "card"), CardRoute),
        (url_path_join(base, "stop"), StopRoute),
        (url_path_join(base, "announcements"), AnnouncementsRoute),
        (url_path_join(base, "announcements", f"({ANNOUNCEMENT_ID})", "dismiss"), DismissRoute),
    ]
    web_app.add_handlers(".*$", [(path, cls, {"state": state}) for path, cls in routes])
    return state
