"""Arbitrary user_options through the spawner's validation (the pure path, many examples):
each is refused with HTTP 400 and a bounded, printable reason, or it becomes a request whose
directives carry only safe characters, all of them where sbatch reads directives.
The live REST path with the real hub and Slurm is test_options_rest.py."""

from __future__ import annotations

import re
import subprocess
from types import SimpleNamespace
from typing import Any

import pytest
from hypothesis import HealthCheck, event, given, settings
from hypothesis import strategies as st
from tornado import web
from traitlets.config import Config

from jupyterhub_hpc.backends import JobScript
from jupyterhub_hpc.request import JobRequest
from jupyterhub_hpc.spawner import SlurmSpawner

ALLOWED = ["partition", "cpus", "memory", "walltime", "account"]
NOT_ALLOWED = ["job_name", "prologue", "cmd", "username", "qos", "runtime", "options", "exec_prefix", "PATH"]
#: characters that could end a directive line, start a shell construct or an extra argument
DANGEROUS = set("\n\r\0$`;#'\"\\ \t|&<>(){}*?!~")

INJECTIONS = [
    "00:10:00\n#SBATCH --job-name=INJECTED\n#SBATCH --comment=via-runtime-field",
    "00:10:00\necho INJECTED-$(id -un) > /tmp/pwned",
    "00:10:00 $(touch /tmp/pwned)",
    "debug\r\n#SBATCH --mem=20000M",
    "`id`",
    "$(id)",
    "debug;id",
    "debug --mem=20000M",
    "debug\0--mem=1",
    "x" * 100_000,
    "\uff44\uff45\uff42\uff55\uff47",  # fullwidth "debug"
    "debug\u2028#SBATCH --x",
    "-debug",
    "--mem=0",
]
hostile_text = st.one_of(
    st.sampled_from(INJECTIONS),
    st.text(min_size=0, max_size=30),
    st.text(alphabet=st.sampled_from(sorted(DANGEROUS) + list("ab09:-GM")), min_size=1, max_size=12),
)
values = st.one_of(
    hostile_text,
    st.integers(min_value=-(2**70), max_value=2**70),
    st.floats(allow_nan=True, allow_infinity=True),
    st.booleans(),
    st.none(),
    st.lists(st.integers(), max_size=3),
    st.dictionaries(st.text(max_size=3), st.integers(), max_size=2),
    st.sampled_from(["debug", "short", "gpu", "proj_1", "2", "512M", "1G", "00:03:00", "30", 2, 4]),
)
name = st.from_regex(r"[A-Za-z0-9][A-Za-z0-9_.+:@%-]{0,20}", fullmatch=True)
VALID = {
    "partition": st.one_of(st.sampled_from(["debug", "short", "gpu"]), name),
    "cpus": st.one_of(st.integers(1, 64), st.integers(1, 64).map(str)),
    "memory": st.sampled_from(["100M", "512M", "1G", "1.5G", 2048, "4096"]),
    "walltime": st.sampled_from(["00:03:00", "30", 45, "1-00:00:00", "02:00"]),
    "account": name,
}
valid_options = st.fixed_dictionaries({}, optional=VALID)
options_strategy = st.one_of(
    valid_options,
    st.dictionaries(st.sampled_from(ALLOWED + NOT_ALLOWED), values, max_size=4),
    # valid options with one hostile value mixed in
    st.builds(lambda base, key, value: {**base, key: value}, valid_options, st.sampled_from(ALLOWED), values),
)


def make_spawner(options: dict[str, Any]) -> SlurmSpawner:
    config = Config()
    config.SlurmSpawner.allowed_user_options = ALLOWED
    config.SlurmSpawner.partition = "debug"
    spawner = SlurmSpawner(config=config)
    spawner.user = SimpleNamespace(name="alice")
    spawner.user_options = options
    return spawner


def directive_lines(script: str) -> tuple[list[str], list[str]]:
    """(#SBATCH lines sbatch reads: before the first command; #SBATCH lines after it)."""
    read, ignored, in_header = [], [], True
    for line in script.splitlines()[1:]:
        if line.startswith("#SBATCH"):
            (read if in_header else ignored).append(line)
        elif line.strip() and not line.startswith("#"):
            in_header = False
    return read, ignored


def strings_in(value: Any) -> list[str]:
    return [value] if isinstance(value, str) else []


@settings(max_examples=400, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(options=options_strategy)
def test_refused_with_400_or_rendered_safely(options: dict[str, Any]) -> None:
    spawner = make_spawner(options)
    try:
        request = spawner.validated_request()
    except web.HTTPError as exc:
        assert exc.status_code == 400
        message = exc.log_message % exc.args if exc.args else exc.log_message
        assert message and len(message) <= 330 and all(" " <= ch <= "~" for ch in message), message
        assert exc.reason and "\n" not in exc.reason
        event("refused")
        return
    event("accepted")
    # accepted: only allowed keys, never null, and no dangerous character in any text value
    assert set(options) <= set(ALLOWED), options
    for value in options.values():
        assert value is not None
        for text in strings_in(value):
            assert not DANGEROUS & set(text), text
    job = JobScript(workdir="/home/alice", output_path="/home/alice/out-%j.log", command=["x"])
    script = spawner.scheduler.render(request, job)
    read, ignored = directive_lines(script)
    assert ignored == [], ignored
    assert len(read) == len(spawner.scheduler.directives(request, job))
    for line in read:
        assert re.fullmatch(r"#SBATCH --[a-z-]+(=[A-Za-z0-9_.+:@%/,=-]+)?", line), line
    sbatch = dict(line[len("#SBATCH ") :].split("=", 1) for line in read if "=" in line)
    assert sbatch["--partition"] == request.partition
    assert sbatch["--cpus-per-task"] == str(request.cpus)
    assert sbatch["--mem"] == f"{request.memory}M"
    assert sbatch.get("--account") == request.account
    subprocess.run(["bash", "-n"], input=script, text=True, check=True)


@pytest.mark.parametrize(
    "options",
    [
        # the payloads that rewrote batchspawner's scripts (research §4f), in our option names
        {"walltime": INJECTIONS[0], "memory": "2G", "username": "root"},
        {"walltime": INJECTIONS[1]},
        {"walltime": INJECTIONS[2]},
        {"prologue": "touch /tmp/pwned_prologue_$(id -un)"},
        {"cmd": "jupyterhub-hpc-singleuser /bin/false"},
        {"runtime": "00:10:00\n#SBATCH --job-name=INJECTED"},
        {"partition": INJECTIONS[3]},
        {"exec_prefix": "", "batch_query_cmd": "id > /tmp/escalation_proof"},
        {"partition": None},
        {"cpus": "2; rm -rf ~"},
        {"cpus": True},
        {"memory": [1]},
        {"account": "a" * 129},
    ],
)
def test_known_payloads_are_refused(options: dict[str, Any]) -> None:
    with pytest.raises(web.HTTPError) as info:
        make_spawner(options).validated_request()
    assert info.value.status_code == 400


def test_allowed_values_become_the_request() -> None:
    options = {"partition": "short", "cpus": "2", "memory": "512M", "walltime": "00:03:00", "account": "p1"}
    request = make_spawner(options).validated_request()
    expected = JobRequest(partition="short", cpus=2, memory=512, walltime="00:03:00", account="p1")
    assert request.model_dump() == expected.model_dump()
