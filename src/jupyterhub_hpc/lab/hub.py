"""The user's server talking to its hub with its own API token (``JUPYTERHUB_API_TOKEN``).

:class:`HubSettings` is read from the environment JupyterHub gives every server; :class:`HubClient`
sends one request with a bounded time (a timeout or an unreachable hub is a :class:`HubReply` with
status 504 or 502 and a message, never a hang); :class:`CardCache` keeps the hub's job card for
half of its ``poll_seconds``, and concurrent readers share the one request in flight, so any
number of open Lab tabs make at most one hub request per interval per server process.
The token is sent in the ``Authorization`` header only and is never logged.
"""

from __future__ import annotations

import asyncio
import json
import os
import ssl
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import quote

from tornado.httpclient import AsyncHTTPClient, HTTPClientError, HTTPRequest

from ..singleuser.hubcall import hub_ssl_context

__all__ = ["ANNOUNCEMENTS_URL_ENV", "CardCache", "HubClient", "HubReply", "HubSettings"]

#: the announcements service's URL as the server reaches it (set by the spawner)
ANNOUNCEMENTS_URL_ENV = "JUPYTERHUB_HPC_ANNOUNCEMENTS_URL"  # = cardoptions.ANNOUNCEMENTS_URL_ENV
#: seconds an error answer of the hub is kept (so that many tabs do not retry at once)
ERROR_TTL = 2.0


@dataclass(frozen=True)
class HubSettings:
    """Where the hub is and who this server is (JupyterHub's variables)."""

    api_url: str
    token: str = field(repr=False)
    user: str
    server_name: str = ""
    announcements_url: str = ""

    @classmethod
    def from_environ(cls, env: Mapping[str, str] | None = None) -> HubSettings | None:
        """None outside a JupyterHub (no token, API URL or user)."""
        env = os.environ if env is None else env
        token, api_url, user = (
            env.get(k, "") for k in ("JUPYTERHUB_API_TOKEN", "JUPYTERHUB_API_URL", "JUPYTERHUB_USER")
        )
        if not (token and api_url and user):
            return None
        announcements = env.get(ANNOUNCEMENTS_URL_ENV, "")
        return cls(
            api_url=api_url.rstrip("/"),
            token=token,
            user=user,
            server_name=env.get("JUPYTERHUB_SERVER_NAME", ""),
            announcements_url=announcements.rstrip("/") + "/" if announcements else "",
        )

    @property
    def card_url(self) -> str:
        return f"{self.api_url}/hpc/card/{quote(self.user, safe='')}/{quote(self.server_name, safe='')}"

    @property
    def kernel_request_url(self) -> str:
        """The hub's check of a batch kernel against this server's profiles."""
        user, server = quote(self.user, safe=""), quote(self.server_name, safe="")
        return f"{self.api_url}/hpc/kernel-request/{user}/{server}"

    @property
    def server_url(self) -> str:
        """This server in the hub's REST API (``DELETE`` stops it)."""
        user = quote(self.user, safe="")
        if self.server_name:
            return f"{self.api_url}/users/{user}/servers/{quote(self.server_name, safe='')}"
        return f"{self.api_url}/users/{user}/server"


@dataclass(frozen=True)
class HubReply:
    """One answer: the HTTP status and the JSON body (``{"error": ...}`` when the hub could not be
    asked or did not answer JSON)."""

    status: int
    body: Any

    @property
    def ok(self) -> bool:
        return 200 <= self.status < 300


class HubClient:
    """Requests to the hub (and the announcements service) with the server's token."""

    def __init__(
        self,
        settings: HubSettings,
        *,
        timeout: float = 10.0,
        ssl_context: ssl.SSLContext | None = None,
    ) -> None:
        self.settings = settings
        self.timeout = timeout
        # internal_ssl: the server's own certificate and the internal CA, as the launcher uses them
        self.ssl_context = ssl_context if ssl_context is not None else hub_ssl_context()

    async def request(
        self, method: str, url: str, body: Any = None, timeout: float | None = None
    ) -> HubReply:
        limit = self.timeout if timeout is None else timeout
        request = HTTPRequest(
            url,
            method=method,
            headers={"Authorization": f"token {self.settings.token}", "Accept": "application/json"},
            body=None if body is None else json.dumps(body),
            allow_nonstandard_methods=True,
            connect_timeout=min(limit, 5.0),
            request_timeout=limit,
            ssl_options=self.ssl_context,
            follow_redirects=False,
        )
        try:
            response = await asyncio.wait_for(
                AsyncHTTPClient().fetch(request, raise_error=False), limit + 1.0
            )
        except asyncio.TimeoutError:
            return HubReply(504, {"error": f"the hub did not answer within {limit:g} s"})
        except HTTPClientError as exc:  # tornado's 599: a timeout or a broken connection
            if "imeout" in str(exc):
                return HubReply(504, {"error": f"the hub did not answer within {limit:g} s"})
            return HubReply(502, {"error": f"the hub is unreachable: {type(exc).__name__}"})
        except (OSError, ssl.SSLError) as exc:
            return HubReply(502, {"error": f"the hub is unreachable: {type(exc).__name__}"})
        text = response.body.decode("utf-8", "replace") if response.body else ""
        if not text:
            return HubReply(response.code, {})
        try:
            return HubReply(response.code, json.loads(text))
        except ValueError:
            return HubReply(response.code, {"error": f"the hub answered {response.code} without JSON"})


class CardCache:
    """The hub's card of this server, kept ``poll_seconds / 2`` (errors :data:`ERROR_TTL` s)."""

    def __init__(self, client: HubClient, clock: Callable[[], float] = time.monotonic) -> None:
        self.client = client
        self.clock = clock
        self._reply: HubReply | None = None
        self._expires = 0.0
        self._inflight: asyncio.Future[HubReply] | None = None
        #: requests sent to the hub (what the benchmark and the tests count)
        self.hub_requests = 0

    async def get(self) -> HubReply:
        if self._reply is not None and self.clock() < self._expires:
            return self._reply
        if self._inflight is None:
            self._inflight = asyncio.ensure_future(self._fetch())
        inflight = self._inflight
        try:
            return await asyncio.shield(inflight)
        finally:
            if inflight.done() and self._inflight is inflight:
                self._inflight = None

    async def _fetch(self) -> HubReply:
        self.hub_requests += 1
        reply = await self.client.request("GET", self.client.settings.card_url)
        ttl = ERROR_TTL
        if reply.ok and isinstance(reply.body, dict):
            poll = reply.body.get("poll_seconds")
            if isinstance(poll, (int, float)) and poll > 0:
                ttl = poll / 2
        self._reply, self._expires = reply, self.clock() + ttl
        return reply
