"""Images the user names by path, where the admin allows a pattern (issue 17).

By default users only choose among the admin's ``container_images``. An admin may also let them
give their own image's path, e.g. a SquashFS they built in their home, through
``container_image_patterns``: each an :class:`ImagePattern` such as ``{"pattern":
"{home}/images/*.sqfs", "kind": "squashfs"}``. A profile write-in (``unlisted_choice`` with
``spawner_override: {"container_image_path": "{value}"}``) carries the text; at each start
:func:`user_image` accepts it only when it matches one of the patterns *for this user* (the
placeholders are the user's resolved name and home) and then describes it as a
:class:`~jupyterhub_hpc.containers.runtimes.ContainerImage` like a listed one.

A pattern is a path with ``*`` (any characters but ``/``) and ``?`` (one character but ``/``),
and the placeholders ``{username}`` and ``{home}``; nothing else is special. The typed path must be
absolute and plain (no ``.`` or ``..`` component, no doubled ``/``, no control character), or a
podman reference for a ``podman`` pattern. It only ever reaches the runtime's argv (never a
shell), and the server runs as the user whatever the image: a user's own image gives them nothing
they did not have.
"""

from __future__ import annotations

import re
from typing import Any

from pydantic import Field, field_validator, model_validator

from .runtimes import ContainerImage, ContainerPlanError, ImageFacts

__all__ = ["USER_IMAGE_NAME", "ImagePattern", "user_image"]

#: the ``name`` of a user-given image (its path is what the progress shows)
USER_IMAGE_NAME = "own-image"
PLACEHOLDERS = ("{username}", "{home}")
MAX_PATH = 1024
_TOKEN = re.compile(r"\{username\}|\{home\}|\*|\?")


class ImagePattern(ImageFacts):
    """Where users may name their own images, and what such an image is."""

    pattern: str = Field(min_length=2, max_length=MAX_PATH)

    @field_validator("pattern")
    @classmethod
    def _pattern(cls, value: str) -> str:
        rest = _TOKEN.sub("", value)
        if "{" in rest or "}" in rest or "[" in rest or "**" in value:
            raise ValueError(
                f"{value!r}: only '*', '?', '{{username}}' and '{{home}}' are special in a pattern"
            )
        if any(not c.isprintable() for c in value):
            raise ValueError(f"{value!r} has a control character")
        return value

    @model_validator(mode="after")
    def _anchored(self) -> ImagePattern:
        if self.kind != "podman" and not (self.pattern.startswith("/") or self.pattern.startswith("{home}")):
            raise ValueError(
                f"{self.pattern!r}: a {self.kind} pattern is an absolute path or starts at {{home}}"
            )
        return self

    def regex(self, username: str, home: str) -> re.Pattern[str]:
        """This pattern for one user, as a regex of the whole path."""
        values = {"{username}": re.escape(username), "{home}": re.escape(home.rstrip("/"))}
        parts = {"*": "[^/]*", "?": "[^/]", **values}
        return re.compile("".join(parts[m] if m in parts else re.escape(m) for m in _split(self.pattern)))

    def image(self, location: str) -> ContainerImage:
        fields: dict[str, Any] = self.model_dump(exclude={"pattern"})
        return ContainerImage.model_validate({"name": USER_IMAGE_NAME, "location": location, **fields})


def _split(pattern: str) -> list[str]:
    """The pattern's tokens and the literal text between them."""
    out: list[str] = []
    last = 0
    for match in _TOKEN.finditer(pattern):
        out += [pattern[last : match.start()], match.group()]
        last = match.end()
    return [*out, pattern[last:]]


def _plain_path(path: str) -> str | None:
    """Why ``path`` is not a plain absolute path (None: it is)."""
    if not path.startswith("/"):
        return "is not an absolute path"
    if "//" in path or any(part in (".", "..") for part in path.split("/")):
        return "has an empty, '.' or '..' component"
    return None


def user_image(path: str, patterns: list[ImagePattern], username: str, home: str) -> ContainerImage:
    """The image at the user's ``path``, described by the first pattern it matches for this
    user; :class:`~jupyterhub_hpc.containers.runtimes.ContainerPlanError` saying why not."""
    if not isinstance(path, str) or not path or len(path) > MAX_PATH:
        raise ContainerPlanError(f"the image path must be text of 1 to {MAX_PATH} characters")
    if any(not c.isprintable() for c in path):
        raise ContainerPlanError("the image path has a control character")
    if not patterns:
        raise ContainerPlanError("this site lets users choose among its listed images only")
    problem = None
    for pattern in patterns:
        if not pattern.regex(username, home).fullmatch(path):
            continue
        problem = _plain_path(path) if pattern.kind != "podman" else None
        if problem is None:
            try:
                return pattern.image(path)
            except ValueError as exc:
                raise ContainerPlanError(f"the image path {path!r} cannot be used: {exc}") from None
    if problem:
        raise ContainerPlanError(f"the image path {path!r} {problem}")
    allowed = ", ".join(p.pattern.replace("{username}", username).replace("{home}", home) for p in patterns)
    raise ContainerPlanError(f"the image path {path!r} is not one this site allows (allowed: {allowed})")
