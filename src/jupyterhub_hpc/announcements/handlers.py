"""The service's HTTP handlers: the REST API (``api/v1/...``), the writers' admin page, and the
page the hub's home and spawn pages embed.

Authentication is JupyterHub's (``HubOAuthenticated``): a token in the ``Authorization`` header
(the user's own, or their server's) or the service's OAuth cookie; cookie-authenticated requests
that change anything carry the XSRF token (JupyterHub's check refuses the cookie otherwise).
Readers need the service's access scope; writers also ``custom:announcements:write``."""

from __future__ import annotations

import json
from collections.abc import Sequence
from datetime import datetime
from typing import Any

import jinja2
from jupyterhub.services.auth import HubOAuthCallbackHandler, HubOAuthenticated, UserNotAllowed
from pydantic import ValidationError
from tornado import web

from .auth import WRITE_SCOPE, HubDirectory, can_write
from .forms import FormError, announcement_from_form, form_values
from .model import AnnouncementIn, AnnouncementPatch, UserContext, iso
from .reservations import merge
from .store import Announcement, Conflict, Store, utcnow

__all__ = ["handlers"]

#: the pages run no inline script and load nothing from elsewhere
PAGE_CSP = (
    "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self'; "
    "form-action 'self'; frame-ancestors 'self'; base-uri 'none'"
)


class BaseHandler(HubOAuthenticated, web.RequestHandler):
    """Identifies the caller once per request (asynchronously) before any method runs."""

    @property
    def store(self) -> Store:
        return self.settings["hpc_store"]  # type: ignore[no-any-return]

    @property
    def directory(self) -> HubDirectory:
        return self.settings["hpc_directory"]  # type: ignore[no-any-return]

    @property
    def prefix(self) -> str:
        return str(self.settings["hpc_prefix"])

    @property
    def hub_auth(self) -> Any:
        return self.settings["hub_auth"]

    @hub_auth.setter
    def hub_auth(self, value: Any) -> None:  # HubAuthenticated's setter; the settings' instance rules
        pass

    async def prepare(self) -> None:
        model = await self.hub_auth.get_user(self, sync=False)
        self._hub_auth_user_cache = None
        if model:
            try:
                self._hub_auth_user_cache = self.check_hub_user(model)
            except UserNotAllowed:
                raise web.HTTPError(403, "no access to this service") from None

    def set_default_headers(self) -> None:
        self.set_header("X-Content-Type-Options", "nosniff")
        self.set_header("Referrer-Policy", "same-origin")
        self.set_header("Cache-Control", "no-store")

    @property
    def user_name(self) -> str:
        return str(self.current_user["name"])

    def writer(self) -> bool:
        return bool(self.current_user) and can_write(self.current_user)

    def require_writer(self) -> None:
        if not self.writer():
            raise web.HTTPError(403, f"writing announcements needs the scope {WRITE_SCOPE}")


# -- REST ---------------------------------------------------------------------------------------


class APIHandler(BaseHandler):
    def get_login_url(self) -> str:
        # an API answers 403, never redirects to a login page
        raise web.HTTPError(403, "a token or the service's cookie is needed")

    def check_body(self) -> bytes:
        body = self.request.body
        if len(body) > self.settings["hpc_max_body_bytes"]:
            raise web.HTTPError(413, "request body too large")
        content_type = self.request.headers.get("Content-Type", "application/json").split(";")[0].strip()
        if content_type != "application/json":
            raise web.HTTPError(415, "send application/json")
        return body

    def write_json(self, value: Any, status: int = 200) -> None:
        self.set_status(status)
        self.set_header("Content-Type", "application/json; charset=utf-8")
        self.finish(json.dumps(value))

    def write_error(self, status_code: int, **kwargs: Any) -> None:
        message = self._reason
        exc = kwargs.get("exc_info", (None, None, None))[1]
        if isinstance(exc, web.HTTPError) and exc.log_message:
            message = exc.log_message
        body: dict[str, Any] = {"status": status_code, "message": message}
        if isinstance(exc, ValidationError):
            body["message"] = "invalid announcement"
            body["errors"] = [
                {"loc": [str(p) for p in e["loc"]], "msg": e["msg"]} for e in exc.errors(include_input=False)
            ]
        self.set_header("Content-Type", "application/json; charset=utf-8")
        self.finish(json.dumps(body))

    def validation_error(self, exc: ValidationError) -> None:
        self.set_status(400)
        self.write_error(400, exc_info=(type(exc), exc, None))

    def found(self, announcement_id: str) -> Announcement:
        announcement = self.store.get(announcement_id)
        if announcement is None:
            raise web.HTTPError(404, "no such announcement")
        return announcement


class AnnouncementsAPI(APIHandler):
    @web.authenticated
    async def get(self) -> None:
        now = utcnow()
        if self.get_argument("all", "") in ("1", "true"):
            self.require_writer()
            self.write_json({"now": iso(now), "announcements": [a.full() for a in self.store.all()]})
            return
        mine = await for_reader(self, now)
        self.write_json({"now": iso(now), "announcements": [a.public() for a in mine]})

    @web.authenticated
    def post(self) -> None:
        self.require_writer()
        try:
            data = AnnouncementIn.model_validate_json(self.check_body())
        except ValidationError as exc:
            self.validation_error(exc)
            return
        try:
            created = self.store.create(data, created_by=self.user_name)
        except Conflict:
            raise web.HTTPError(409, "an announcement with this id exists") from None
        self.set_header("Location", f"{self.prefix}api/v1/announcements/{created.id}")
        self.write_json(created.full(), status=201)


class AnnouncementAPI(APIHandler):
    @web.authenticated
    def get(self, announcement_id: str) -> None:
        self.require_writer()
        self.write_json(self.found(announcement_id).full())

    @web.authenticated
    def patch(self, announcement_id: str) -> None:
        self.require_writer()
        try:
            patch = AnnouncementPatch.model_validate_json(self.check_body())
            updated = self.store.update(announcement_id, patch)
        except ValidationError as exc:
            self.validation_error(exc)
            return
        if updated is None:
            raise web.HTTPError(404, "no such announcement")
        self.write_json(updated.full())

    @web.authenticated
    def delete(self, announcement_id: str) -> None:
        self.require_writer()
        if not self.store.delete(announcement_id):
            raise web.HTTPError(404, "no such announcement")
        self.set_status(204)
        self.finish()


class DismissalAPI(APIHandler):
    @web.authenticated
    async def post(self, announcement_id: str) -> None:
        await dismiss(self, announcement_id)
        self.set_status(204)
        self.finish()


async def for_reader(handler: BaseHandler, now: datetime) -> list[Announcement]:
    """The caller's announcements: the stored ones of their audience, then one per MAINT
    reservation on the partitions of their servers (from the hub cards), minus dismissed ones."""
    ctx: UserContext = await handler.directory.context(handler.user_name)
    stored = handler.store.for_user(ctx, now)
    if not ctx.maintenance:
        return stored
    dismissed = handler.store.dismissed(ctx.name)
    return merge(stored, ctx.maintenance, handler.directory.seen, dismissed, now)


async def dismiss(handler: BaseHandler, announcement_id: str) -> None:
    """Remember that the caller dismissed an announcement they currently see (404 for one that
    is not theirs or not current, 409 for one that cannot be dismissed); a reservation's
    announcement is remembered until the reservation ends."""
    mine = {a.id: a for a in await for_reader(handler, utcnow())}
    announcement = mine.get(announcement_id)
    if announcement is None:
        raise web.HTTPError(404, "no such announcement")
    if not announcement.dismissible:
        raise web.HTTPError(409, "this announcement cannot be dismissed")
    if (
        announcement.source == "reservation"
        and announcement.ends
        and handler.store.get(announcement_id) is None
    ):
        # built from the cards, not a row: its own table, no foreign key to the stored ones
        handler.store.dismiss_reservation(announcement_id, handler.user_name, announcement.ends)
    else:
        handler.store.dismiss(announcement_id, handler.user_name)


# -- pages --------------------------------------------------------------------------------------


class PageHandler(BaseHandler):
    def set_default_headers(self) -> None:
        super().set_default_headers()
        self.set_header("Content-Security-Policy", PAGE_CSP)

    def render_page(self, name: str, status: int = 200, **ns: Any) -> None:
        env: jinja2.Environment = self.settings["hpc_templates"]
        self.set_status(status)
        self.finish(
            env.get_template(name).render(
                prefix=self.prefix,
                static=lambda path: f"{self.prefix}static/{path}",
                xsrf_form_html=self.xsrf_form_html,
                user=self.current_user,
                **ns,
            )
        )

    def write_error(self, status_code: int, **kwargs: Any) -> None:
        exc = kwargs.get("exc_info", (None, None, None))[1]
        message = exc.log_message if isinstance(exc, web.HTTPError) and exc.log_message else self._reason
        self.render_page("error.html.j2", status=status_code, status_code=status_code, message=message)


class EmbedPage(PageHandler):
    """The user's announcements, for the iframe on the hub's home and spawn pages."""

    @web.authenticated
    async def get(self) -> None:
        self.render_page("embed.html.j2", announcements=await for_reader(self, utcnow()))


class EmbedDismiss(PageHandler):
    @web.authenticated
    async def post(self, announcement_id: str) -> None:
        await dismiss(self, announcement_id)
        self.redirect(f"{self.prefix}embed", status=303)


class AdminPage(PageHandler):
    """List, create, edit and delete (writers only: the OAuth token must carry the scope)."""

    @web.authenticated
    def get(self, announcement_id: str | None = None) -> None:
        self.require_writer()
        editing = self.store.get(announcement_id) if announcement_id else None
        if announcement_id and editing is None:
            raise web.HTTPError(404, "no such announcement")
        self.show(editing=editing, values=form_values(editing))

    def show(
        self,
        *,
        editing: Announcement | None,
        values: dict[str, Any],
        errors: Sequence[str] = (),
        status: int = 200,
    ) -> None:
        now = utcnow()
        self.render_page(
            "admin.html.j2",
            status=status,
            announcements=self.store.all(),
            editing=editing,
            values=values,
            errors=list(errors),
            now=now,
            iso=iso,
        )

    @web.authenticated
    def post(self, announcement_id: str | None = None) -> None:
        self.require_writer()
        fields = {key: self.get_body_argument(key, "") for key in FORM_FIELDS}
        fields["dismissible"] = "on" if self.get_body_argument("dismissible", "") else ""
        fields["required"] = "on" if self.get_body_argument("required", "") else ""
        editing = self.store.get(announcement_id) if announcement_id else None
        if announcement_id and editing is None:
            raise web.HTTPError(404, "no such announcement")
        try:
            data = announcement_from_form(fields)
            if editing is None:
                self.store.create(data, created_by=self.user_name)
            else:
                patch = AnnouncementPatch.model_validate(data.model_dump(exclude={"id", "source"}))
                self.store.update(editing.id, patch)
        except FormError as exc:
            self.show(editing=editing, values=fields, errors=exc.messages, status=400)
            return
        except ValidationError as exc:
            messages = [f"{'.'.join(str(p) for p in e['loc']) or 'form'}: {e['msg']}" for e in exc.errors()]
            self.show(editing=editing, values=fields, errors=messages, status=400)
            return
        except Conflict:
            self.show(
                editing=editing, values=fields, errors=["an announcement with this id exists"], status=409
            )
            return
        self.redirect(self.prefix, status=303)


class AdminDelete(PageHandler):
    @web.authenticated
    def post(self, announcement_id: str) -> None:
        self.require_writer()
        self.store.delete(announcement_id)
        self.redirect(self.prefix, status=303)


class CallbackHandler(HubOAuthCallbackHandler):
    """JupyterHub's OAuth callback, with the service's own ``HubOAuth`` instance."""

    @property
    def hub_auth(self) -> Any:
        return self.settings["hub_auth"]

    @hub_auth.setter
    def hub_auth(self, value: Any) -> None:
        pass


FORM_FIELDS = (
    "title",
    "body",
    "severity",
    "starts",
    "ends",
    "audience_kind",
    "groups",
    "users",
    "profiles",
    "clusters",
    "partitions",
)


def handlers(
    prefix: str, static_path: str
) -> list[tuple[str, type[web.RequestHandler], dict[str, Any]] | tuple[str, type[web.RequestHandler]]]:
    aid = r"([a-z0-9][a-z0-9_.-]{0,63})"
    return [
        (prefix + "oauth_callback", CallbackHandler),
        (prefix + "static/(.*)", web.StaticFileHandler, {"path": static_path}),
        (prefix + "api/v1/announcements", AnnouncementsAPI),
        (prefix + f"api/v1/announcements/{aid}", AnnouncementAPI),
        (prefix + f"api/v1/announcements/{aid}/dismissal", DismissalAPI),
        (prefix + "embed", EmbedPage),
        (prefix + f"embed/dismiss/{aid}", EmbedDismiss),
        (prefix + f"edit/{aid}", AdminPage),
        (prefix + f"delete/{aid}", AdminDelete),
        (prefix + "?", AdminPage),
    ]
