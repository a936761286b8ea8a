"""``python -m jupyterhub_hpc.announcements``: the service process (hub-managed: JupyterHub starts it
with its token, URL and OAuth client in the environment)."""

from __future__ import annotations

import asyncio
import os
import signal
from pathlib import Path
from typing import Any
from urllib.parse import urlparse

import jinja2
from jupyterhub.services.auth import HubOAuth
from tornado import web
from tornado.httpserver import HTTPServer
from traitlets import Float, Integer, Unicode, default
from traitlets.config import Application

from .auth import HubDirectory
from .handlers import handlers
from .store import Store

__all__ = ["AnnouncementsApp", "main"]

HERE = Path(__file__).parent


class AnnouncementsApp(Application):
    name = "jupyterhub-hpc-announcements"
    description = "Announcements for JupyterHub users, by group, user, profile, cluster and partition."

    config_file = Unicode(
        "",
        help="A traitlets config file (Python) to load, e.g. /etc/jupyterhub/announcements_config.py.",
    ).tag(config=True)

    data_dir = Unicode(
        help="The service's directory: where the default SQLite database lives. Default: the current "
        "directory (a hub-managed service's ``cwd``).",
    ).tag(config=True)

    @default("data_dir")
    def _data_dir(self) -> str:
        return os.getcwd()

    db_url = Unicode(
        help="SQLAlchemy URL of the announcements database. Default "
        "``sqlite:///<data_dir>/announcements.sqlite``; several hubs' services share one "
        "database with any URL JupyterHub supports, e.g. PostgreSQL with psycopg 3 "
        "(``postgresql+psycopg://user:password@host/db``, the ``jupyterhub-hpc[postgresql]`` extra).",
    ).tag(config=True)

    @default("db_url")
    def _db_url(self) -> str:
        return "sqlite:///" + str(Path(self.data_dir) / "announcements.sqlite")

    bind_url = Unicode(
        help="Where the service listens. Default: $JUPYTERHUB_SERVICE_URL (set by the hub).",
    ).tag(config=True)

    @default("bind_url")
    def _bind_url(self) -> str:
        return os.environ.get("JUPYTERHUB_SERVICE_URL", "http://127.0.0.1:10101")

    service_prefix = Unicode(
        help="The URL prefix of the service's pages. Default: $JUPYTERHUB_SERVICE_PREFIX "
        "(``/services/hpc-announcements/``).",
    ).tag(config=True)

    @default("service_prefix")
    def _prefix(self) -> str:
        prefix = os.environ.get("JUPYTERHUB_SERVICE_PREFIX", "/services/hpc-announcements/")
        return prefix if prefix.endswith("/") else prefix + "/"

    max_body_bytes = Integer(
        64 * 1024,
        help="Largest request body accepted (bytes); bigger ones get 413 before any parsing.",
    ).tag(config=True)

    context_cache_seconds = Float(
        10.0,
        help="How long a user's groups and servers' profile/cluster/partition, as fetched from the "
        "hub, are reused before the hub is asked again (per user).",
    ).tag(config=True)

    card_api_path = Unicode(
        "hpc/card/{user}/{server}",
        help="Path under the hub's API URL of a server's job card (jupyterhub_hpc's card API), "
        "where a server's profile, cluster and partition are read for audience matching.",
    ).tag(config=True)

    hub_request_timeout = Float(10.0, help="Timeout of the service's requests to the hub API (seconds).").tag(
        config=True
    )

    def initialize(self, argv: Any = None) -> None:
        super().initialize(argv)
        if self.config_file:
            self.load_config_file(self.config_file)

    def make_app(self) -> web.Application:
        hub_auth = HubOAuth(cache_max_age=60)
        store = Store(self.db_url)
        directory = HubDirectory(
            hub_auth.api_url,
            hub_auth.api_token,
            card_path=self.card_api_path,
            cache_seconds=self.context_cache_seconds,
            timeout=self.hub_request_timeout,
        )
        templates = jinja2.Environment(
            loader=jinja2.FileSystemLoader(str(HERE / "templates")),
            autoescape=True,
            undefined=jinja2.StrictUndefined,
        )
        return web.Application(
            handlers(self.service_prefix, str(HERE / "static")),
            hub_auth=hub_auth,
            hpc_store=store,
            hpc_directory=directory,
            hpc_templates=templates,
            hpc_prefix=self.service_prefix,
            hpc_max_body_bytes=self.max_body_bytes,
            cookie_secret=os.urandom(32),
            static_path=None,
        )

    def start(self) -> None:
        asyncio.run(self._serve())

    async def _serve(self) -> None:
        app = self.make_app()
        url = urlparse(self.bind_url)
        # tornado drops the connection past its limit (the proxy then answers 502); the handlers
        # answer 413 for what is between max_body_bytes and this hard limit
        server = HTTPServer(app, xheaders=True, max_body_size=4 * self.max_body_bytes)
        server.listen(url.port or 80, url.hostname or "127.0.0.1")
        self.log.info(
            "announcements at %s%s (database %s)", self.bind_url, self.service_prefix, _safe(self.db_url)
        )
        stop = asyncio.Event()
        loop = asyncio.get_running_loop()
        for signum in (signal.SIGTERM, signal.SIGINT):
            loop.add_signal_handler(signum, stop.set)
        await stop.wait()
        server.stop()
        app.settings["hpc_store"].close()


def _safe(db_url: str) -> str:
    """The database URL without its password (for the log)."""
    parsed = urlparse(db_url)
    if parsed.password:
        return db_url.replace(f":{parsed.password}@", ":***@", 1)
    return db_url


def main(argv: list[str] | None = None) -> None:
    app = AnnouncementsApp.instance()
    app.initialize(argv)
    app.start()
