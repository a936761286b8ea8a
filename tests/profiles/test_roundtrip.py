"""The dry run's output fed back means the same job: its ``user_options`` sent again (also
through JSON) resolve to the same job, and its ``job`` document reads back to the same request
with ``walltime_text`` as the walltime. Walltimes to the second, bounds with seconds, and an
admin's base read from the spawner's traits (seconds, never re-read as minutes)."""

from __future__ import annotations

import json
from typing import Any

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from traitlets import HasTraits

from jupyterhub_hpc.profiles.handlers import dry_run_job
from jupyterhub_hpc.profiles.model import parse_profile_list
from jupyterhub_hpc.profiles.validate import Context, resolve
from jupyterhub_hpc.request import JobRequest, RequestError, Seconds
from jupyterhub_hpc.units import MemoryTrait, WalltimeTrait


class Admin(HasTraits):
    """The admin's configured values, as the spawner's traits hold them."""

    memory = MemoryTrait("3G", help="memory")
    walltime = WalltimeTrait("1-00:00:30", help="walltime")


PROFILES = parse_profile_list(
    [
        {
            "display_name": "Typed",
            "slug": "typed",
            "default": True,
            "profile_options": {
                "cpus": {"type": "integer", "job_field": "cpus", "min": 1, "max": 16, "step": 1},
                "memory": {"type": "memory", "min": "256M", "max": "16G"},
                # bounds to the second: the normalised value must stay inside them
                "walltime": {"type": "walltime", "min": "00:01:30", "max": "01:30:45"},
                "partition": {
                    "type": "partition",
                    "choices": {"short": {"display_name": "Short"}, "long": {"display_name": "Long"}},
                },
                "gpus": {"type": "integer", "job_field": "gpus", "min": 0, "max": 2},
                "gpu_type": {
                    "type": "choice",
                    "job_field": "gpu_type",
                    "when": {"gpus": {"min": 1}},
                    "choices": {"tesla": {"display_name": "Tesla"}, "a100": {"display_name": "A100"}},
                },
            },
        },
        {
            "display_name": "Fixed, to the second",
            "slug": "fixed",
            "spawner_override": {"walltime": "1-02:03:04", "memory": "1536M", "partition": "long"},
        },
        {"display_name": "The admin's values", "slug": "base"},
    ]
)
ADMIN = Admin()
BASE: dict[str, Any] = {
    **JobRequest().model_dump(),
    "memory": ADMIN.memory,
    "walltime": ADMIN.walltime,  # Seconds: the trait's canonical value
}
CTX = Context(user="hpcuser1", base_job=BASE, base_backend="slurm")

walltimes = st.one_of(
    st.integers(1, 100),
    st.builds(lambda m, s: f"{m}:{s:02d}", st.integers(0, 99), st.integers(0, 59)),
    st.builds(
        lambda h, m, s: f"{h:02d}:{m:02d}:{s:02d}", st.integers(0, 2), st.integers(0, 59), st.integers(0, 59)
    ),
    st.sampled_from(["1:30:45", "01:30:46", "90", " 45 ", "0-01", "x"]),
)
memories = st.one_of(
    st.integers(1, 20_000),
    st.builds(lambda n, u: f"{n}{u}", st.integers(1, 20_000), st.sampled_from(["K", "M", "G", "MiB", "g"])),
    st.sampled_from(["1.5G", "0.3G", "16G", "16.1G"]),
)
options = st.fixed_dictionaries(
    {"profile": st.sampled_from(["typed", "fixed", "base"])},
    optional={
        "cpus": st.one_of(st.integers(0, 17), st.sampled_from(["4", " 8 "])),
        "memory": memories,
        "walltime": walltimes,
        "partition": st.sampled_from(["short", "long", "gpu"]),
        "gpus": st.integers(0, 3),
        "gpu_type": st.sampled_from(["tesla", "a100", "h100"]),
    },
)


def as_json(value: Any) -> Any:
    return json.loads(json.dumps(value))


@settings(max_examples=600, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(given_options=options)
def test_the_dry_run_output_fed_back_means_the_same_job(given_options: dict[str, Any]) -> None:
    try:
        first = resolve(PROFILES, given_options, CTX)
    except RequestError:
        return
    request = first.job_request()
    # the normalised user_options, sent again as a start's options (over JSON, as the API does)
    again = resolve(PROFILES, as_json(first.user_options), CTX)
    assert again.user_options == first.user_options
    assert again.job == first.job and again.job_request() == request
    # the job document: walltime in seconds, and walltime_text that means exactly that
    document = as_json(dry_run_job(first.job))
    assert document["walltime"] == request.walltime and document["memory"] == request.memory
    text = document.pop("walltime_text")
    fields = {**document, "walltime": text}
    assert JobRequest.from_mapping(fields) == request
    # and the request itself read back
    assert JobRequest.from_mapping(request.model_dump()) == request == request.updated({})


def test_seconds_survive_every_step() -> None:
    fixed = resolve(PROFILES, {"profile": "fixed"}, CTX).job_request()
    assert fixed.walltime == 86400 + 2 * 3600 + 3 * 60 + 4
    assert dry_run_job(fixed.model_dump())["walltime_text"] == "26:03:04"
    base = resolve(PROFILES, {"profile": "base"}, CTX).job_request()
    assert (base.walltime, base.memory) == (86430, 3072)  # the admin's, as their traits hold them
    edge = resolve(PROFILES, {"profile": "typed", "walltime": "1:30:45"}, CTX)
    assert edge.user_options["walltime"] == "01:30:45" and edge.job["walltime"] == 5445
    assert isinstance(edge.job["walltime"], Seconds)
    assert resolve(PROFILES, edge.user_options, CTX).job == edge.job  # not rounded over the max
