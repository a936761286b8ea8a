"""The start hooks' lines in the spawn progress (issue 17): both ends of one small report.

Inside the container, the init (:mod:`jupyterhub_hpc.containers.init`) runs the admin's start
hooks before the server. Each line a hook prints, and each hook skipped or failing, goes to the
job's output as always *and*, through a :class:`HookReporter`, to the hub:
``POST $JUPYTERHUB_API_URL/hpc/progress`` with ``{"hook": NAME, "line": TEXT}``, authenticated
with the server's own token (:class:`jupyterhub_hpc.handlers.JobProgressHandler`). The hub shows
it in the spawn progress as "Start hook NAME: TEXT" while the server starts.

The launcher asks for this by setting :data:`PROGRESS_ENV` (the URL) in the container's
environment; without it (a KubeSpawner pod, a test) the init reports nothing. Reporting never
holds the start up for long: the lines are posted in order by one thread, each with a short
timeout; a hub that cannot be reached, or that refuses a line, ends the reporting (with one
warning in the job's output) and the hooks go on.

What the hub accepts is bounded here for both ends: a hook's name is a file name of
:data:`HOOK_NAME`, a line at most :data:`MAX_LINE` characters (longer ones are cut), at most
:data:`LINES_PER_JOB` lines per job.
"""

from __future__ import annotations

import queue
import re
import sys
import threading
from collections.abc import Callable, Mapping
from typing import Any

from ..singleuser.hubcall import HubRefused, hub_ssl_context, post_json

__all__ = [
    "HOOK_NAME",
    "LINES_PER_HOOK",
    "LINES_PER_JOB",
    "MAX_LINE",
    "PROGRESS_ENV",
    "HookReporter",
    "clean_line",
    "hook_message",
    "progress_url",
]

#: the URL the init reports the hooks' lines to, set by the launcher for the container
PROGRESS_ENV = "JUPYTERHUB_HPC_PROGRESS_URL"
#: a hook's name: the file name in the hook directory
HOOK_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9._+-]{0,63}")
#: characters of one line in the progress (the job's output has it whole)
MAX_LINE = 200
#: lines of one hook the init reports (then one line saying the rest is in the job's output)
LINES_PER_HOOK = 20
#: lines of one job the hub shows
LINES_PER_JOB = 60
#: seconds one report may take, and the init waits at most for the last ones before the server
POST_TIMEOUT = 5.0
DRAIN_TIMEOUT = 5.0
_CONTROL = re.compile(r"[\x00-\x1f\x7f-\x9f\u2028\u2029]+")


def hook_message(hook: object, line: object) -> str:
    """The spawn progress's message for a reported line: "Start hook NAME: TEXT". ``ValueError``
    for a name that is no hook's or a line that is not a string."""
    if not isinstance(hook, str) or not HOOK_NAME.fullmatch(hook):
        raise ValueError("hook must be the hook's file name (letters, digits, '.', '_', '+', '-')")
    if not isinstance(line, str) or len(line) > 4 * MAX_LINE:
        raise ValueError(f"line must be a string of at most {MAX_LINE} characters")
    text = clean_line(line)
    if not text:
        raise ValueError("line is empty")
    return f"Start hook {hook}: {text}"


def progress_url(api_url: str) -> str:
    """Where a job of this hub reports its hooks' lines (``$JUPYTERHUB_API_URL/hpc/progress``)."""
    return api_url.rstrip("/") + "/hpc/progress"


def clean_line(text: str) -> str:
    """One printable line of at most :data:`MAX_LINE` characters: control characters (a
    terminal's colours, carriage returns) become one space, a longer line is cut with "…"."""
    line = _CONTROL.sub(" ", text).strip()
    return line if len(line) <= MAX_LINE else line[: MAX_LINE - 1] + "…"


Post = Callable[[str, str, Any], Any]


class HookReporter:
    """Posts ``{"hook", "line"}`` reports to the hub from one thread, in order.

    ``post(url, token, body)`` sends one (default: :func:`~jupyterhub_hpc.singleuser.hubcall.post_json`
    with the server's TLS context and :data:`POST_TIMEOUT`). The first failure ends the reporting."""

    def __init__(self, url: str, token: str, post: Post | None = None) -> None:
        self.url = url
        self.token = token
        self._post = post or _default_post()
        self._queue: queue.Queue[dict[str, str] | None] = queue.Queue()
        self._counts: dict[str, int] = {}
        self._failed = False
        self._thread = threading.Thread(target=self._send_all, name="hook-reporter", daemon=True)
        self._thread.start()

    @classmethod
    def from_env(cls, env: Mapping[str, str]) -> HookReporter | None:
        """The reporter the launcher asked for (:data:`PROGRESS_ENV` and the server's token), or None."""
        url, token = env.get(PROGRESS_ENV, ""), env.get("JUPYTERHUB_API_TOKEN", "")
        if not url or not token:
            return None
        try:
            post = _default_post()
        except (OSError, ValueError) as exc:  # ssl.SSLError is an OSError
            _warn(f"the hooks' lines are not shown while the server starts: no TLS context ({exc})")
            return None
        return cls(url, token, post)

    def line(self, hook: str, text: str) -> None:
        """Report one line of ``hook`` (a hook's own output; its first :data:`LINES_PER_HOOK` only)."""
        seen = self._counts[hook] = self._counts.get(hook, 0) + 1
        if seen <= LINES_PER_HOOK:
            self.note(hook, text)
        elif seen == LINES_PER_HOOK + 1:
            self.note(hook, "… (the rest of its output is in the job's output)")

    def note(self, hook: str, text: str) -> None:
        """Report what happened to ``hook`` (skipped, failed), whatever its output was."""
        line = clean_line(text)
        if line and not self._failed and HOOK_NAME.fullmatch(hook):
            self._queue.put({"hook": hook, "line": line})

    def close(self, timeout: float = DRAIN_TIMEOUT) -> None:
        """Send what is queued (waiting at most ``timeout`` s), then stop."""
        self._queue.put(None)
        self._thread.join(timeout)

    def _send_all(self) -> None:
        while (body := self._queue.get()) is not None:
            if self._failed:
                continue
            try:
                self._post(self.url, self.token, body)
            except HubRefused as exc:
                self._stop(f"the hub refused a line ({exc.status} {exc.detail[:120]})")
            except OSError as exc:
                self._stop(f"the hub cannot be reached ({exc})")

    def _stop(self, why: str) -> None:
        self._failed = True
        _warn(f"the hooks' lines are no longer shown while the server starts: {why}")


def _warn(message: str) -> None:
    print(f"[init] warning: {message}", file=sys.stderr, flush=True)


def _default_post() -> Post:
    context = hub_ssl_context()

    def post(url: str, token: str, body: Any) -> Any:
        return post_json(url, token, body, timeout=POST_TIMEOUT, context=context)

    return post
