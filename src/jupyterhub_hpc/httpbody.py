"""Bounded JSON request bodies for this package's hub API endpoints.

:class:`JSONBodyHandler` streams the body (``tornado.web.stream_request_body``) and keeps at most
``body_limit`` bytes of it: a bigger body is read and dropped, never buffered, and answered with
413. :func:`parse_json_body` then refuses, with a short 400, a body that is not UTF-8, nests deeper
than allowed (checked by a linear scan *before* ``json.loads``, which would recurse), is not JSON
or holds a non-finite number. Tornado logs an ``HTTPError`` below 500 as one warning line: these
refusals never reach the hub log as a traceback.
"""

from __future__ import annotations

import json
import math
import re
from itertools import accumulate
from typing import Any

from jupyterhub.apihandlers.base import APIHandler
from tornado import web

__all__ = ["JSONBodyHandler", "nesting_exceeds", "parse_json_body"]

#: a JSON string, also one left open (the pattern always matches, so that a scan stays linear)
_STRING = re.compile(r'"[^"\\]*(?:\\.[^"\\]*)*"?', re.DOTALL)
_NOT_BRACKETS = re.compile(r"[^\[\]{}]+")
_STEP = {"[": 1, "{": 1, "]": -1, "}": -1}
_NO_DEFAULT: Any = object()


def nesting_exceeds(text: str, depth: int) -> bool:
    """Do arrays and objects in ``text`` nest deeper than ``depth``? Brackets inside strings do
    not count. Linear, without recursion, whatever the text (valid JSON or not)."""
    brackets = _NOT_BRACKETS.sub("", _STRING.sub("", text))
    if len(brackets) <= depth:
        return False
    return max(accumulate(map(_STEP.__getitem__, brackets))) > depth


def _refuse_constant(name: str) -> Any:
    raise ValueError(f"{name} is not JSON")


def _finite_float(text: str) -> float:
    value = float(text)
    if not math.isfinite(value):
        raise ValueError("the number is out of range")
    return value


def parse_json_body(raw: bytes, *, depth: int, empty: Any = _NO_DEFAULT) -> Any:
    """The JSON value of a request body, or ``HTTPError(400)`` with a short printable reason.

    ``empty`` is returned for an empty (or blank) body; without it a body is required.
    """
    if not raw.strip():
        if empty is _NO_DEFAULT:
            raise web.HTTPError(400, "a JSON body is required")
        return empty
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError:
        raise web.HTTPError(400, "the body must be UTF-8 encoded JSON") from None
    if nesting_exceeds(text, depth):
        raise web.HTTPError(400, "the body nests deeper than %d levels", depth)
    try:
        return json.loads(text, parse_constant=_refuse_constant, parse_float=_finite_float)
    except (ValueError, RecursionError):  # JSONDecodeError, a number beyond the digit limit
        raise web.HTTPError(400, "the body must be JSON") from None


@web.stream_request_body
class JSONBodyHandler(APIHandler):
    """An API handler whose request body is bounded: subclasses set ``body_limit`` (bytes) and
    ``body_depth`` (levels of arrays and objects) and call :meth:`json_object`."""

    body_limit: int = 64 * 1024
    body_depth: int = 16

    _body_chunks: list[bytes]
    _body_size: int = 0

    def data_received(self, chunk: bytes) -> None:
        self._body_size += len(chunk)
        if self._body_size <= self.body_limit:
            if not hasattr(self, "_body_chunks"):
                self._body_chunks = []
            self._body_chunks.append(chunk)
        else:
            self._body_chunks = []  # nothing of an oversized body is kept

    def json_object(self, *, empty: Any = _NO_DEFAULT) -> dict[str, Any]:
        """The body as a JSON object: 413 when it was too big, 400 when it is not one."""
        if self._body_size > self.body_limit:
            raise web.HTTPError(413, "the body must be at most %d bytes", self.body_limit)
        raw = b"".join(getattr(self, "_body_chunks", []))
        body = parse_json_body(raw, depth=self.body_depth, empty=empty)
        if not isinstance(body, dict):
            raise web.HTTPError(400, "the body must be a JSON object")
        return body
