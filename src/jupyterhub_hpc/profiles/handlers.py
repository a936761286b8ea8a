"""Discovery and dry-run API for profiles, registered explicitly (nothing happens at import)::

    from jupyterhub_hpc.profiles.handlers import all_handlers
    c.JupyterHub.extra_handlers = all_handlers   # these two, and the job port endpoint

* ``GET /hub/api/hpc/profiles``: the caller's visible profiles with defaults, limits
  resolved from the scheduler, a JSON Schema of the accepted ``user_options``, and
  the remembered choices (with notices where they fell back).
* ``POST /hub/api/hpc/profiles/validate`` with ``user_options`` (or
  ``{"user_options": {...}}``): the same validation a start runs, without starting;
  200 with the normalised options and the job request, or 400 with
  ``{"field", "reason", "message"}``.
* ``/hub/api/hpc/users/<name>/profiles[/validate]``: the same for another user, as
  that user sees them (what an admin needs to help, or to start a server for them).

Access needs the ``read:servers`` scope on the user (every user has it for
themselves; admins for everyone). Each caller may send ``profile_api_rate_limit``
requests per ``profile_api_rate_window`` seconds to these endpoints together (HTTP 429
with ``Retry-After`` beyond); a dry-run body is at most :data:`VALIDATE_BODY_LIMIT`
bytes of JSON, nested at most :data:`VALIDATE_BODY_DEPTH` levels (413 / 400 otherwise).
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from typing import Any

from jupyterhub.apihandlers.base import APIHandler
from tornado import web

from ..handlers import api_handlers
from ..httpbody import JSONBodyHandler
from ..ratelimit import check_caller_rate
from ..request import walltime_text
from .mixin import ProfileOptionsError, ProfilesMixin

__all__ = ["PROFILES_ROUTE", "VALIDATE_ROUTE", "all_handlers", "dry_run_job", "profile_handlers"]

PROFILES_ROUTE = r"/api/hpc/profiles"
VALIDATE_ROUTE = r"/api/hpc/profiles/validate"
USER_PROFILES_ROUTE = r"/api/hpc/users/([^/]+)/profiles"
USER_VALIDATE_ROUTE = r"/api/hpc/users/([^/]+)/profiles/validate"
#: bytes of a dry-run body (a start's ``user_options`` are a few hundred)
VALIDATE_BODY_LIMIT = 64 * 1024
#: levels of arrays and objects in a dry-run body
VALIDATE_BODY_DEPTH = 16


def dry_run_job(job: Mapping[str, Any]) -> dict[str, Any]:
    """The dry run's ``job``: the request's fields (memory in MiB, walltime in seconds) and
    ``walltime_text``, the walltime to the second as ``HH:MM:SS`` (what ``walltime`` means
    as a job field; a bare number there would be minutes)."""
    document = dict(job)
    if "walltime" in document:
        document["walltime"] = int(document["walltime"])
        document["walltime_text"] = walltime_text(document["walltime"])
    return document


class _ProfilesBase(JSONBodyHandler):
    body_limit = VALIDATE_BODY_LIMIT
    body_depth = VALIDATE_BODY_DEPTH

    def target_spawner(self, user_name: str | None) -> ProfilesMixin:
        """The default-server spawner of ``user_name`` (the caller when None), if allowed,
        once the caller is within the rate limit."""
        caller = self.current_user
        if user_name is None:
            if caller is None or not hasattr(caller, "spawners"):
                raise web.HTTPError(403, "profiles are available to users (a user token or session)")
            user_name = str(caller.name)
        if caller is None or not self.has_scope(f"read:servers!user={user_name}"):
            raise web.HTTPError(403, f"the read:servers scope for {user_name} is required")
        user = self.find_user(user_name)
        if user is None:
            raise web.HTTPError(404, f"no user {user_name}")
        spawner = user.spawners[""]
        if not isinstance(spawner, ProfilesMixin):
            raise web.HTTPError(404, "this hub's spawner has no profiles")
        self.check_rate(caller, spawner)
        return spawner

    def check_rate(self, caller: Any, spawner: ProfilesMixin) -> None:
        """HTTP 429 with ``Retry-After`` when ``caller`` is over the spawner's rate limit."""
        check_caller_rate(caller, spawner.profile_api_rate_limit, spawner.profile_api_rate_window)

    def write_json(self, status: int, body: Any) -> None:
        self.set_status(status)
        self.set_header("Content-Type", "application/json")
        self.finish(json.dumps(body))


class ProfilesHandler(_ProfilesBase):
    """``GET /hub/api/hpc/profiles``."""

    async def get(self, user_name: str | None = None) -> None:
        spawner = self.target_spawner(user_name)
        document = await spawner.profiles_document()
        if document is None:
            raise web.HTTPError(404, "no profiles are configured")
        self.write_json(200, document)


class ValidateHandler(_ProfilesBase):
    """``POST /hub/api/hpc/profiles/validate``: a dry run of a start's validation."""

    async def post(self, user_name: str | None = None) -> None:
        spawner = self.target_spawner(user_name)
        body: Any = self.json_object(empty={})
        if set(body) <= {"user_options", "display_name"} and "user_options" in body:
            body = body["user_options"] or {}
        if not isinstance(body, dict):
            raise web.HTTPError(400, "user_options must be an object")
        try:
            resolution = await spawner.resolve_profile(body, remembered=False)
        except ProfileOptionsError as exc:
            self.write_json(
                400,
                {"status": 400, "field": exc.field, "reason": exc.detail, "message": exc.jupyterhub_message},
            )
            return
        if resolution is None:
            raise web.HTTPError(404, "no profiles are configured")
        job = dry_run_job(resolution.job)
        self.write_json(
            200,
            {
                "valid": True,
                "profile": resolution.profile.slug,
                "user_options": resolution.user_options,
                "job": job or None,
                "backend": resolution.backend,
                "cluster": resolution.cluster,
                "overrides": sorted({name for name, _ in resolution.overrides}),
            },
        )


#: the profile endpoints alone
profile_handlers: list[tuple[str, type[APIHandler]]] = [
    (VALIDATE_ROUTE, ValidateHandler),
    (PROFILES_ROUTE, ProfilesHandler),
    (USER_VALIDATE_ROUTE, ValidateHandler),
    (USER_PROFILES_ROUTE, ProfilesHandler),
]

#: ``c.JupyterHub.extra_handlers = all_handlers``: the profile endpoints and the job port endpoint
all_handlers: list[tuple[str, type[APIHandler]]] = [*api_handlers, *profile_handlers]
