"""JobRequest round trips: a request read back (``model_dump``, ``updated``, ``as_options`` through
JSON) is the same request; the walltime in seconds is never re-read as minutes."""

from __future__ import annotations

import json
from typing import Any

from hypothesis import given, settings
from hypothesis import strategies as st

from jupyterhub_hpc.request import (
    MAX_MEMORY_MIB,
    MAX_WALLTIME,
    JobRequest,
    RequestError,
    Seconds,
    format_walltime,
    parse_walltime_seconds,
    walltime_text,
)

names = st.from_regex(r"[A-Za-z0-9][A-Za-z0-9_.+:@%-]{0,20}", fullmatch=True)
walltimes = st.one_of(
    st.integers(min_value=60, max_value=MAX_WALLTIME).map(Seconds),
    st.integers(min_value=1, max_value=MAX_WALLTIME // 60),  # minutes
    st.integers(min_value=60, max_value=MAX_WALLTIME).map(walltime_text),
    st.builds(
        lambda d, h, m, s: f"{d}-{h:02d}:{m:02d}:{s:02d}",
        st.integers(0, 364),
        st.integers(0, 23),
        st.integers(0, 59),
        st.integers(0, 59),
    ),
)
memories = st.one_of(
    st.integers(min_value=1, max_value=MAX_MEMORY_MIB),
    st.integers(min_value=1, max_value=1024).map(lambda g: f"{g}G"),
    st.integers(min_value=1, max_value=10**6).map(lambda m: f"{m}M"),
)
fields = st.fixed_dictionaries(
    {},
    optional={
        "job_name": names,
        "partition": st.one_of(st.none(), names),
        "account": st.one_of(st.none(), names),
        "qos": st.one_of(st.none(), names),
        "reservation": st.one_of(st.none(), names),
        "constraint": st.one_of(st.none(), st.from_regex(r"[a-z0-9&|]{1,12}", fullmatch=True)),
        "nodes": st.integers(1, 10_000),
        "cpus": st.integers(1, 100_000),
        "memory": memories,
        "walltime": walltimes,
        "gpus": st.integers(0, 1024),
        "gpu_type": st.one_of(st.none(), names),
    },
)


def request_of(data: dict[str, Any]) -> JobRequest | None:
    try:
        return JobRequest.from_mapping(data)
    except RequestError:
        return None  # e.g. the whole-year limit after adding days


@settings(max_examples=400, deadline=None)
@given(data=fields)
def test_a_request_read_back_is_the_same_request(data: dict[str, Any]) -> None:
    request = request_of(data)
    if request is None:
        return
    assert isinstance(request.walltime, Seconds)
    assert JobRequest.from_mapping(request.model_dump()) == request
    assert request.updated({}) == request
    # over JSON a bare number would be minutes: as_options gives the walltime as text
    assert JobRequest.from_mapping(json.loads(json.dumps(request.as_options()))) == request


@settings(max_examples=300, deadline=None)
@given(data=fields, changes=fields)
def test_updated_is_the_request_with_the_changes_applied(
    data: dict[str, Any], changes: dict[str, Any]
) -> None:
    request = request_of(data)
    if request is None:
        return
    expected = request_of({**request.as_options(), **changes})
    try:
        updated = request.updated(changes)
    except RequestError:
        assert expected is None
        return
    assert updated == expected
    for key in set(JobRequest.model_fields) - set(changes):
        assert getattr(updated, key) == getattr(request, key)  # the rest kept exactly


@settings(max_examples=500, deadline=None)
@given(seconds=st.integers(min_value=60, max_value=MAX_WALLTIME))
def test_walltime_text_is_read_back_to_the_second(seconds: int) -> None:
    text = walltime_text(seconds)
    assert parse_walltime_seconds(text) == seconds
    if seconds % 60 == 0:
        assert text == format_walltime(seconds)  # the usual text, for whole minutes
