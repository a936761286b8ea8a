"""In the user's server: when was it last *used*, and telling the hub (the idle policy's basis).

``last_use`` is the latest of: user input the JupyterLab extension reports
(``POST {base}jupyterhub-hpc/activity``: keys, clicks, wheel, the tab brought back to view,
"I'm still here" on the idle warning; terminal input is keys in Lab too), a kernel running code
(checked every ``BusyKernels.interval`` seconds, :mod:`jupyterhub_hpc.busykernels`) and a save
through the contents API. The server's start counts as its first use. Nothing else does: the
Lab's own polling (card, kernels, sessions, contents listings) never touches it.

The server reports ``last_use`` to the hub (``POST {hub API}/hpc/use``, :mod:`jupyterhub_hpc.handlers`)
with its own API token: once at start (so the hub switches to this basis at once), then at most
every ``JUPYTERHUB_HPC_IDLE_REPORT_SECONDS`` seconds while there is new use, and at once for use
that follows a quiet period of that length. Without that variable (the server's profile has no
idle timeout) nothing is reported. The token is never logged.
"""

from __future__ import annotations

import asyncio
import json
import logging
import os
import time
from collections.abc import Callable
from datetime import datetime, timezone
from typing import Any

from jupyter_server.base.handlers import APIHandler
from jupyter_server.utils import url_path_join
from tornado import web
from tornado.ioloop import IOLoop, PeriodicCallback

from ..busykernels import BusyKernels, any_kernel_busy
from ..idle import REPORT_ENV
from .hub import HubClient, HubReply

__all__ = ["ActivityRoute", "UseReporter", "setup_activity"]

UTC = timezone.utc
log = logging.getLogger(__name__)
#: the browser's throttle when the server has no report interval (no idle policy)
DEFAULT_REPORT_SECONDS = 60.0


def _iso(value: datetime) -> str:
    return value.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


class UseReporter:
    """Keeps ``last_use`` and reports it to the hub, throttled to one report per ``interval``."""

    def __init__(
        self,
        client: HubClient | None,
        interval: float | None,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.client = client
        #: seconds between reports to the hub; None: no idle policy, nothing is reported
        self.interval = interval
        self.clock = clock
        self.last_use: datetime = datetime.now(UTC)  # the server's start is its first use
        self.reported: datetime | None = None
        self._sent_at: float | None = None
        self._inflight: asyncio.Future[None] | None = None
        #: reports sent and refused (what the tests read)
        self.sent = 0
        self.refused = 0

    @property
    def browser_interval(self) -> float:
        return self.interval if self.interval is not None else DEFAULT_REPORT_SECONDS

    def note(self, at: datetime | None = None) -> datetime:
        """Record a use (now); report it at once when the last report is an interval old."""
        value = at or datetime.now(UTC)
        if value > self.last_use:
            self.last_use = value
        if self.interval is not None and (
            self._sent_at is None or self.clock() - self._sent_at >= self.interval
        ):
            self.flush()
        return self.last_use

    def flush(self) -> None:
        """Send the ``last_use`` if it is newer than the one the hub has and none is in flight."""
        if self.client is None or self.interval is None:
            return
        if self._inflight is not None and not self._inflight.done():
            return
        if self.reported is not None and self.last_use <= self.reported:
            return
        self._inflight = asyncio.ensure_future(self._send(self.last_use))

    async def _send(self, value: datetime) -> None:
        assert self.client is not None
        self._sent_at = self.clock()
        self.sent += 1
        url = f"{self.client.settings.api_url}/hpc/use"
        reply: HubReply = await self.client.request("POST", url, body={"last_use": _iso(value)})
        if reply.ok:
            self.reported = value
        else:
            self.refused += 1
            if self.refused in (1, 10, 100):  # a hub without the route: say so, not every minute
                log.warning(
                    "jupyterhub-hpc: the hub refused the use report (%s): %s", reply.status, reply.body
                )


class ActivityRoute(APIHandler):
    """``POST {base}jupyterhub-hpc/activity``: the Lab extension saw user input."""

    reporter: UseReporter

    def initialize(self, reporter: UseReporter) -> None:
        self.reporter = reporter

    @web.authenticated
    def post(self) -> None:
        if self.reporter.client is None:
            raise web.HTTPError(404, "not running in a JupyterHub")
        last_use = self.reporter.note()
        self.set_header("Content-Type", "application/json")
        self.set_header("Cache-Control", "no-store")
        self.finish(
            json.dumps({"last_use": _iso(last_use), "report_seconds": self.reporter.browser_interval})
        )


def report_interval(env: dict[str, str] | os._Environ[str] | None = None) -> float | None:
    """``JUPYTERHUB_HPC_IDLE_REPORT_SECONDS`` (set by the spawner with an idle timeout), or None."""
    text = (os.environ if env is None else env).get(REPORT_ENV, "")
    try:
        value = float(text)
    except ValueError:
        return None
    return max(1.0, value) if value == value and value > 0 else None


def setup_activity(serverapp: Any, client: HubClient | None) -> UseReporter:
    """Add the activity route, watch busy kernels and saves, start the reports to the hub."""
    reporter = UseReporter(client, report_interval())
    web_app = serverapp.web_app
    route = url_path_join(web_app.settings["base_url"], "jupyterhub-hpc", "activity")
    web_app.add_handlers(".*$", [(route, ActivityRoute, {"reporter": reporter})])

    def busy() -> None:
        if any_kernel_busy(serverapp.kernel_manager):
            reporter.note()

    PeriodicCallback(busy, BusyKernels(parent=serverapp).interval * 1000).start()
    register = getattr(serverapp.contents_manager, "register_post_save_hook", None)
    if register is not None:
        register(lambda **kwargs: reporter.note())
    if reporter.interval is not None and client is not None:
        PeriodicCallback(reporter.flush, reporter.interval * 1000).start()
        IOLoop.current().add_callback(reporter.flush)
    serverapp.log.info(
        "jupyterhub-hpc: use reports to the hub %s",
        f"every {reporter.interval:g} s at most" if reporter.interval and client else "off",
    )
    return reporter
