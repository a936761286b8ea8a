"""The start hooks' lines in the spawn progress (issue 17): the bounds both ends share, the init's
reporter against a real local HTTP server, and the spawner's side of the report."""

from __future__ import annotations

import contextlib
import json
import socket
import threading
import time
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import pytest

from jupyterhub_hpc.containers.report import (
    LINES_PER_HOOK,
    LINES_PER_JOB,
    MAX_LINE,
    PROGRESS_ENV,
    HookReporter,
    clean_line,
    hook_message,
    progress_url,
)
from jupyterhub_hpc.spawner import HPCSpawner


def test_a_line_is_made_printable_and_short() -> None:
    assert clean_line("\x1b[32mok\x1b[0m\r") == "[32mok [0m"
    assert clean_line("a\tb\u2028c") == "a b c"
    cut = clean_line("x" * 500)
    assert len(cut) == MAX_LINE and cut.endswith("…")
    assert progress_url("http://hub:8081/hub/api/") == "http://hub:8081/hub/api/hpc/progress"


@pytest.mark.parametrize("hook", ["", "../etc", "a/b", ".hidden", "x" * 65, 7, None, "a b"])
def test_only_a_hook_file_name_is_shown(hook: Any) -> None:
    with pytest.raises(ValueError, match="hook must be"):
        hook_message(hook, "hello")


@pytest.mark.parametrize("line", [None, 3, ["a"], "x" * (4 * MAX_LINE + 1), " \x00 "])
def test_a_line_that_is_no_text_is_refused(line: Any) -> None:
    with pytest.raises(ValueError, match="line"):
        hook_message("10-quota", line)


def test_the_message_of_a_line() -> None:
    assert hook_message("10-quota.sh", "home 80%\x07full") == "Start hook 10-quota.sh: home 80% full"


# -- the reporter, against a real HTTP server ---------------------------------------------------
class Recorder(ThreadingHTTPServer):
    def __init__(self) -> None:
        super().__init__(("127.0.0.1", 0), RecordingHandler)
        self.bodies: list[dict[str, str]] = []
        self.tokens: list[str] = []
        self.refuse_after = 10_000
        self.delay = 0.0

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.server_address[1]}/hub/api/hpc/progress"


class RecordingHandler(BaseHTTPRequestHandler):
    server: Recorder

    def do_POST(self) -> None:
        body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
        time.sleep(self.server.delay)
        self.server.tokens.append(self.headers["Authorization"])
        if len(self.server.bodies) >= self.server.refuse_after:
            answer, status = b'{"status": 400, "message": "a job shows at most 2 lines"}', 400
        else:
            self.server.bodies.append(body)
            answer, status = b'{"shown": true}', 200
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(answer)))
        self.end_headers()
        self.wfile.write(answer)

    def log_message(self, *args: Any) -> None:
        return None


@contextlib.contextmanager
def recording() -> Iterator[Recorder]:
    """A real HTTP server in place of the hub's progress route, serving from a thread."""
    server = Recorder()
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield server
    finally:
        server.shutdown()
        server.server_close()


@pytest.fixture
def hub() -> Iterator[Recorder]:
    with recording() as server:
        yield server


def test_lines_are_posted_in_order_with_the_servers_token(hub: Recorder) -> None:
    reporter = HookReporter.from_env({PROGRESS_ENV: hub.url, "JUPYTERHUB_API_TOKEN": "s3cret"})
    assert reporter is not None
    reporter.line("10-first", "hello")
    reporter.note("20-second", "skipped: not executable")
    reporter.line("30-third", "\x1b[1mbold\x1b[0m")
    reporter.line("../bad", "never sent")
    reporter.line("40-empty", "   ")
    reporter.close()
    assert hub.bodies == [
        {"hook": "10-first", "line": "hello"},
        {"hook": "20-second", "line": "skipped: not executable"},
        {"hook": "30-third", "line": "[1mbold [0m"},
    ]
    assert hub.tokens == ["token s3cret"] * 3


def test_a_chatty_hook_sends_its_first_lines_and_says_where_the_rest_is(hub: Recorder) -> None:
    reporter = HookReporter(hub.url, "t")
    for n in range(LINES_PER_HOOK + 30):
        reporter.line("10-chatty", f"line {n}")
    reporter.note("10-chatty", "exited 3: the server does not start")
    reporter.close()
    lines = [b["line"] for b in hub.bodies]
    assert lines[:LINES_PER_HOOK] == [f"line {n}" for n in range(LINES_PER_HOOK)]
    assert lines[LINES_PER_HOOK:] == [
        "… (the rest of its output is in the job's output)",
        "exited 3: the server does not start",
    ]


def test_a_refusal_ends_the_reporting_with_one_warning(
    hub: Recorder, capsys: pytest.CaptureFixture[str]
) -> None:
    hub.refuse_after = 2
    reporter = HookReporter(hub.url, "t")
    for n in range(10):
        reporter.line("10-x", f"line {n}")
    reporter.close()
    assert [b["line"] for b in hub.bodies] == ["line 0", "line 1"]
    assert len(hub.tokens) == 3  # the refused one, then nothing more
    err = capsys.readouterr().err
    assert err.count("[init] warning:") == 1 and "the hub refused a line (400" in err


def test_a_hub_that_is_away_costs_one_warning_and_no_wait(capsys: pytest.CaptureFixture[str]) -> None:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    reporter = HookReporter(f"http://127.0.0.1:{port}/hub/api/hpc/progress", "t")
    started = time.monotonic()
    for n in range(5):
        reporter.line("10-x", f"line {n}")
    reporter.close()
    assert time.monotonic() - started < 3
    assert capsys.readouterr().err.count("the hub cannot be reached") == 1


def test_a_slow_hub_holds_the_start_at_most_the_drain_timeout(hub: Recorder) -> None:
    hub.delay = 2.0
    reporter = HookReporter(hub.url, "t")
    for n in range(5):
        reporter.line("10-x", f"line {n}")
    started = time.monotonic()
    reporter.close(timeout=0.5)
    assert time.monotonic() - started < 1.5


def test_no_reporter_without_the_launchers_url_or_a_token() -> None:
    assert HookReporter.from_env({}) is None
    assert HookReporter.from_env({PROGRESS_ENV: "http://h/hub/api/hpc/progress"}) is None
    assert HookReporter.from_env({"JUPYTERHUB_API_TOKEN": "t"}) is None


# -- the spawner's side --------------------------------------------------------------------------
def starting(job_id: str = "41") -> HPCSpawner:
    spawner = HPCSpawner()
    spawner._events = []
    spawner._spawn_pending = True
    spawner.job_id = job_id
    return spawner


def test_a_starting_server_shows_its_hooks_lines() -> None:
    spawner = starting()
    spawner.accept_hook_line("10-quota", "home at 80%")
    assert spawner._events[-1] == {"progress": 70, "message": "Start hook 10-quota: home at 80%"}


def test_lines_are_refused_unless_a_server_is_starting_and_not_yet_listening() -> None:
    with pytest.raises(ValueError, match="no server of this token is starting"):
        HPCSpawner().accept_hook_line("10-x", "hello")
    spawner = starting()
    spawner._spawn_pending = False
    with pytest.raises(ValueError, match="is starting"):
        spawner.accept_hook_line("10-x", "hello")
    spawner = starting()
    spawner._port_job = spawner.job_id  # its server listens: the hooks are over
    with pytest.raises(ValueError, match="is starting"):
        spawner.accept_hook_line("10-x", "hello")
    with pytest.raises(ValueError, match="hook must be"):
        starting().accept_hook_line("../../x", "hello")


def test_a_job_shows_its_share_of_lines_and_the_next_job_its_own() -> None:
    spawner = starting("41")
    for n in range(LINES_PER_JOB):
        spawner.accept_hook_line("10-x", f"line {n}")
    with pytest.raises(ValueError, match=f"at most {LINES_PER_JOB} lines"):
        spawner.accept_hook_line("10-x", "one more")
    assert len(spawner._events) == LINES_PER_JOB
    spawner.job_id = "42"
    spawner.accept_hook_line("10-x", "again")
    assert spawner._events[-1]["message"] == "Start hook 10-x: again"
