"""A Jupyter server extension for the Lab extension's browser tests only (never shipped): it answers
the four routes of the issue-14 contract from JSON files the test writes, so the front end can be
driven through every state (queued, running, thresholds, announcements, idle, maintenance) in
seconds without a hub. The live test (test_lab_live.py) uses the package's real server extension.

Files in $HPC_FAKE_DIR: card.json (the card without `now`, which is the current time plus the
card's `_clock_offset` seconds),
announcements.json (the list), and requests.jsonl (each POST: route and XSRF check result)."""

from __future__ import annotations

import datetime as dt
import json
import os
from pathlib import Path
from typing import Any

from jupyter_server.base.handlers import APIHandler
from tornado import web


def _dir() -> Path:
    return Path(os.environ["HPC_FAKE_DIR"])


def _now(offset: float = 0.0) -> str:
    now = dt.datetime.now(dt.timezone.utc) + dt.timedelta(seconds=offset)
    return now.strftime("%Y-%m-%dT%H:%M:%S.%fZ")


def _log(route: str, **extra: Any) -> None:
    with open(_dir() / "requests.jsonl", "a") as f:
        f.write(json.dumps({"route": route, **extra}) + "\n")


class CardHandler(APIHandler):
    @web.authenticated
    def get(self) -> None:
        card = json.loads((_dir() / "card.json").read_text())
        # `_clock_offset`: this "hub" clock runs ahead of the browser's, to test the correction
        card["now"] = _now(card.pop("_clock_offset", 0.0))
        _log("card", no_track_activity=self.get_argument("no_track_activity", None))
        self.finish(card)


class AnnouncementsHandler(APIHandler):
    @web.authenticated
    def get(self) -> None:
        path = _dir() / "announcements.json"
        items = json.loads(path.read_text()) if path.exists() else []
        self.finish({"announcements": items})


class DismissHandler(APIHandler):
    @web.authenticated
    def post(self, ident: str) -> None:
        path = _dir() / "announcements.json"
        items = json.loads(path.read_text()) if path.exists() else []
        path.write_text(json.dumps([a for a in items if a["id"] != ident]))
        _log("dismiss", id=ident)
        self.set_status(204)
        self.finish()


class StopHandler(APIHandler):
    @web.authenticated
    def post(self) -> None:
        _log("stop")
        self.set_status(202)
        self.finish({"message": "stopping"})


def _jupyter_server_extension_points() -> list[dict[str, str]]:
    return [{"module": "fake_hpc_routes"}]


def _load_jupyter_server_extension(serverapp: Any) -> None:
    base = serverapp.web_app.settings["base_url"].rstrip("/")
    prefix = f"{base}/jupyterhub-hpc"
    serverapp.web_app.add_handlers(
        ".*$",
        [
            (f"{prefix}/card", CardHandler),
            (f"{prefix}/announcements", AnnouncementsHandler),
            (f"{prefix}/announcements/([^/]+)/dismiss", DismissHandler),
            (f"{prefix}/stop", StopHandler),
        ],
    )
