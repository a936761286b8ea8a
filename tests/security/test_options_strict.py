"""Strict user values through the plain spawner (``allowed_user_options``, no profiles): ``null``
is refused, numbers take ASCII digits only, clock fields are range-checked, and every refusal
is an HTTP 400 whose reason names the field and the rule in plain words. Pure: no Slurm, no hub.
(The profiles path, where ``null`` means "not given", is tests/profiles/test_validate.py.)"""

from __future__ import annotations

import re
from types import SimpleNamespace
from typing import Any

import pytest
from tornado import web
from traitlets.config import Config

from jupyterhub_hpc.spawner import SlurmSpawner

ALLOWED = ["partition", "account", "qos", "reservation", "constraint", "cpus", "memory", "walltime", "gpus"]
INTERNALS = re.compile(
    r"Value error|Input should|valid integer|unable to parse|invalid literal|cannot convert|"
    r"float NaN|Exceeds the limit|KeyError|Traceback|pydantic|int\(\)|NoneType",
    re.IGNORECASE,
)


def refusal(options: dict[str, Any]) -> str:
    config = Config()
    config.SlurmSpawner.allowed_user_options = ALLOWED
    spawner = SlurmSpawner(config=config)
    spawner.user = SimpleNamespace(name="alice")
    spawner.user_options = options
    with pytest.raises(web.HTTPError) as info:
        spawner.validated_request()
    assert info.value.status_code == 400
    message = info.value.log_message % info.value.args
    assert not INTERNALS.search(message), message
    return message.removeprefix("Invalid server options: ")


@pytest.mark.parametrize("key", ALLOWED)
def test_null_is_refused_for_every_allowed_key(key: str) -> None:
    assert refusal({key: None}) == f"{key}: null is not a value"


def test_null_for_a_key_not_allowed_is_refused_as_not_allowed() -> None:
    assert refusal({"job_name": None}) == "job_name: this option cannot be set by users"


@pytest.mark.parametrize(
    ("options", "message"),
    [
        (
            {"cpus": "\u0663"},
            "cpus: must be a whole number between 1 and 100000, in the digits 0-9 (got '?')",
        ),
        ({"gpus": "\uff12"}, "gpus: must be a whole number between 0 and 1024, in the digits 0-9 (got '?')"),
        ({"cpus": float("nan")}, "cpus: must be a whole number between 1 and 100000 (got NaN)"),
        ({"cpus": 2.5}, "cpus: must be a whole number between 1 and 100000 (got 2.5)"),
        ({"memory": float("inf")}, "memory: must be a finite size (got Infinity)"),
        ({"walltime": "00:99:99"}, "walltime: minutes must be below 60 (got '00:99:99')"),
        ({"walltime": "1-24:00"}, "walltime: hours must be below 24 (got '1-24:00')"),
        ({"walltime": "\u00b2"}, "walltime: not a walltime: '?' ("),
        ({"partition": "gpu\u202e"}, "partition: must be 1-128 letters, digits or _ . + : @ % - (ASCII)"),
    ],
)
def test_refusals_name_the_field_and_the_rule(options: dict[str, Any], message: str) -> None:
    assert refusal(options).startswith(message)
