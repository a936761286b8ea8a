"""The hub API endpoint the job-side launcher reports its port to.

Register it explicitly in ``jupyterhub_config.py`` (nothing is registered at
import time)::

    from jupyterhub_hpc.handlers import api_handlers
    c.JupyterHub.extra_handlers = api_handlers

It accepts exactly ``{"port": <int>}``, authenticated with the API token of
that very server, once per job start; anything else is refused and changes
nothing. The body is bounded (:data:`PORT_BODY_LIMIT` bytes, read without
buffering more) and parsed without recursion (:mod:`jupyterhub_hpc.httpbody`).
"""

from __future__ import annotations

import json
from typing import Any

from jupyterhub.apihandlers.base import APIHandler
from tornado import web

from .httpbody import JSONBodyHandler
from .spawner import HPCSpawner, PortReportTooEarly

__all__ = ["PORT_ROUTE", "JobPortHandler", "api_handlers"]

PORT_ROUTE = r"/api/hpc/port"
#: bytes of a port report (``{"port": 20001}`` is 15)
PORT_BODY_LIMIT = 1024


class JobPortHandler(JSONBodyHandler):
    """``POST /hub/api/hpc/port`` with ``{"port": N}`` from the job's launcher."""

    body_limit = PORT_BODY_LIMIT
    body_depth = 2

    def check_xsrf_cookie(self) -> None:
        # token-authenticated only; a browser cookie is never accepted here
        return None

    async def post(self) -> None:
        token = self.get_auth_token()
        user = self.current_user
        if not token or user is None or not hasattr(user, "spawners"):
            raise web.HTTPError(403, "a server's own API token is required")
        body: Any = self.json_object()
        if set(body) != {"port"}:
            raise web.HTTPError(400, 'the body must be exactly {"port": <integer>}')
        port = body["port"]
        if not isinstance(port, int) or isinstance(port, bool):
            raise web.HTTPError(400, "port must be an integer")
        spawner = next(
            (s for s in user.spawners.values() if isinstance(s, HPCSpawner) and s.matches_token(token)),
            None,
        )
        if spawner is None:
            raise web.HTTPError(403, "this token belongs to no starting server")
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


#: ``c.JupyterHub.extra_handlers = api_handlers``
api_handlers: list[tuple[str, type[APIHandler]]] = [(PORT_ROUTE, JobPortHandler)]
