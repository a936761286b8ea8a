"""The endpoints' guards without a hub: the bounded JSON reader, the per-caller token buckets and
the log filter that keeps a refused start to one line."""

from __future__ import annotations

import json
import logging
import sys
import time
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st
from tornado import web

from jupyterhub_hpc.httpbody import nesting_exceeds, parse_json_body
from jupyterhub_hpc.profiles.mixin import ProfileOptionsError
from jupyterhub_hpc.ratelimit import RateLimiter
from jupyterhub_hpc.refusal import OptionsRefused, RefusalLogFilter, quiet_refusals
from jupyterhub_hpc.request import RequestError
from jupyterhub_hpc.spawner import invalid_options


def refusal(raw: bytes, depth: int = 16, **kw: Any) -> web.HTTPError:
    with pytest.raises(web.HTTPError) as info:
        parse_json_body(raw, depth=depth, **kw)
    return info.value


# -- the JSON reader --------------------------------------------------------------------------
@pytest.mark.parametrize(
    ("raw", "message"),
    [
        (b"[" * 100_000, "nests deeper than 16 levels"),
        (b'{"a":' * 17 + b"1" + b"}" * 17, "nests deeper than 16 levels"),
        (b"\xff\xfe{}", "UTF-8"),
        (b'{"a": "\xe9"}', "UTF-8"),  # latin-1, not UTF-8
        (b"port=20001", "must be JSON"),
        (b"{", "must be JSON"),
        (b'{"a": NaN}', "must be JSON"),
        (b'{"a": -Infinity}', "must be JSON"),
        (b'{"a": 1e999}', "must be JSON"),
        (b'{"a": ' + b"9" * 5000 + b"}", "must be JSON"),  # beyond Python's int digits limit
        (b"\xef\xbb\xbf{}", "must be JSON"),  # a byte-order mark
        (b"", "a JSON body is required"),
        (b"  \n", "a JSON body is required"),
    ],
)
def test_bodies_that_are_refused_with_a_short_400(raw: bytes, message: str) -> None:
    error = refusal(raw)
    assert error.status_code == 400
    text = error.log_message % error.args if error.args else str(error.log_message)
    assert message in text and text.isprintable() and len(text) < 80


def test_an_empty_body_may_stand_for_a_default() -> None:
    assert parse_json_body(b"", depth=4, empty={}) == {}
    assert parse_json_body(b'{"port": 20001}', depth=2) == {"port": 20001}


def test_depth_counts_arrays_and_objects_but_not_brackets_in_strings() -> None:
    assert parse_json_body(b'{"a": [[["x"]]]}', depth=4) == {"a": [[["x"]]]}
    assert refusal(b'{"a": [[["x"]]]}', depth=3).status_code == 400
    assert parse_json_body(b'{"a": "[[[[[[[[{{{{{\\"[[[["}', depth=1) == {"a": '[[[[[[[[{{{{{"[[[['}


@given(
    st.recursive(
        st.none() | st.booleans() | st.integers() | st.text(alphabet='[]{}"\\ab'),
        lambda inner: st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=3), inner, max_size=3),
        max_leaves=30,
    )
)
def test_the_scan_measures_the_depth_json_has(value: Any) -> None:
    def depth(v: Any) -> int:
        children = v.values() if isinstance(v, dict) else v if isinstance(v, list) else None
        return 0 if children is None else 1 + max((depth(c) for c in children), default=0)

    text = json.dumps(value)
    assert not nesting_exceeds(text, depth(value))
    if depth(value):
        assert nesting_exceeds(text, depth(value) - 1)


def test_the_scan_is_linear_on_what_would_be_quadratic_or_recursive() -> None:
    bodies = ["[" * 65536, "[]" * 32768, '\\"' * 32768, '"' + '\\"' * 32767, '"a",' * 16384]
    for body in bodies:
        started = time.perf_counter()
        nesting_exceeds(body, 16)
        assert time.perf_counter() - started < 0.5, body[:10]
    assert sys.getrecursionlimit() < 65536  # json.loads alone would have raised RecursionError


# -- the rate limit ---------------------------------------------------------------------------
class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def test_a_burst_up_to_the_limit_passes_then_retry_after_says_when() -> None:
    clock = Clock()
    limiter = RateLimiter(clock=clock)
    assert [limiter.acquire("user:a", 3, 30.0) for _ in range(3)] == [0, 0, 0]
    assert limiter.acquire("user:a", 3, 30.0) == 10  # one request per 10 s refills
    assert limiter.acquire("user:b", 3, 30.0) == 0  # another caller has its own bucket
    clock.now += 4.5
    assert limiter.acquire("user:a", 3, 30.0) == 6  # ceil(5.5): still not a whole request
    clock.now += 6
    assert limiter.acquire("user:a", 3, 30.0) == 0
    assert limiter.acquire("user:a", 3, 30.0) > 0
    clock.now += 3600  # a long pause refills to the limit, not beyond
    assert [limiter.acquire("user:a", 3, 30.0) for _ in range(4)] == [0, 0, 0, 10]


def test_zero_turns_the_limit_off_and_memory_is_bounded() -> None:
    limiter = RateLimiter(max_keys=100, clock=Clock())
    assert all(limiter.acquire("user:a", 0, 10.0) == 0 for _ in range(1000))
    assert all(limiter.acquire("user:a", 5, 0.0) == 0 for _ in range(1000))
    assert len(limiter) == 0
    for n in range(1000):
        limiter.acquire(f"user:{n}", 5, 10.0)
    assert len(limiter) == 100
    # the most recent callers are the ones remembered
    for _ in range(4):
        assert limiter.acquire("user:999", 5, 10.0) == 0
    assert limiter.acquire("user:999", 5, 10.0) > 0


# -- a refused start is one line --------------------------------------------------------------
@pytest.fixture
def hub_log() -> Any:
    logger = logging.getLogger(f"test-refusal-{id(object())}")
    logger.propagate = False
    logger.setLevel(logging.INFO)
    records: list[logging.LogRecord] = []

    class Keep(logging.Handler):
        def emit(self, record: logging.LogRecord) -> None:
            self.format(record)  # as a real handler would: the traceback is rendered here
            records.append(record)

    logger.addHandler(Keep())
    quiet_refusals(logger)
    quiet_refusals(logger)
    assert sum(isinstance(f, RefusalLogFilter) for f in logger.filters) == 1
    return logger, records


def raise_and_log(logger: logging.Logger, exc: Exception, message: str) -> None:
    try:
        raise exc
    except Exception as e:
        logger.exception(message.format(e=e))


def test_a_refusal_keeps_the_line_that_names_the_reason_without_traceback(hub_log: Any) -> None:
    logger, records = hub_log
    exc = ProfileOptionsError("cpus", "must be at most 4 (got 9)")
    assert isinstance(exc, OptionsRefused) and exc.status_code == 400
    raise_and_log(logger, exc, "Exception applying user_options for alice")
    raise_and_log(logger, exc, "Unhandled error starting alice's server: {e}")
    assert [(r.levelname, r.getMessage()) for r in records] == [
        (
            "ERROR",
            "Unhandled error starting alice's server: HTTP 400: Bad Request "
            "(Invalid option 'cpus': must be at most 4 (got 9))",
        )
    ]
    assert records[0].exc_info is None and not records[0].exc_text


def test_with_debug_on_the_bare_record_is_a_debug_line(hub_log: Any) -> None:
    logger, records = hub_log
    logger.setLevel(logging.DEBUG)
    raise_and_log(logger, invalid_options(RequestError("cpus", "must be positive")), "Failed to spawn")
    assert [(r.levelname, r.exc_info) for r in records] == [("DEBUG", None)]


def test_an_empty_traceback_is_dropped(hub_log: Any) -> None:
    logger, records = hub_log
    logger.exception("Error starting server alice: HTTP 400: ...")  # outside an except block
    assert [(r.levelname, r.exc_info) for r in records] == [("ERROR", None)]


def test_other_exceptions_keep_their_traceback(hub_log: Any) -> None:
    logger, records = hub_log
    raise_and_log(logger, web.HTTPError(400, "not a refusal"), "Failed to spawn")
    raise_and_log(logger, RuntimeError("boom"), "Unhandled error")
    assert [r.levelname for r in records] == ["ERROR", "ERROR"]
    assert all(r.exc_info is not None and "Traceback" in (r.exc_text or "") for r in records)
