"""Job-script rendering: the golden Slurm script, quoting that survives a real bash,
the admin escape hatches and strict templates."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import jinja2
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from jupyterhub_hpc.backends.base import EXIT_MARKER, JobScript
from jupyterhub_hpc.backends.slurm import SlurmBackend
from jupyterhub_hpc.render import Safe, check_directive, directive_lines, render_script
from jupyterhub_hpc.request import JobRequest

GOLDEN = Path(__file__).resolve().parents[1] / "data" / "slurm" / "golden"

HOSTILE = [
    "$(id)",
    "`id`",
    "${HOME}",
    "$HOME",
    "a\nb",
    "line1\n#SBATCH --wrap=id\n",
    "it's",
    "'",
    "''",
    "\\'",
    'say "hi"',
    '"',
    "back\\slash",
    "!event",
    "; rm -rf ~",
    "a && b || c",
    "tab\there",
    "  spaces  ",
    "",
    "*",
    "~",
    "-n",
    "--",
    "$'\\x41'",
    "carriage\rreturn",
    "é ü 🐍",
    "{{ 7 * 7 }}",
    "%j %u",
]

DUMP = (
    "import json, os, sys; "
    "print(json.dumps({'argv': sys.argv[1:], "
    "'env': {k: v for k, v in os.environ.items() if k.startswith('HOSTILE_')}, "
    "'path': os.environ['PATH'], 'prologue': os.environ.get('FROM_PROLOGUE')}))"
)


def basic_request() -> JobRequest:
    return JobRequest.from_mapping(
        {
            "job_name": "jupyterhub-alice",
            "partition": "debug",
            "account": "proj1",
            "qos": "normal",
            "constraint": "a100&ib",
            "cpus": 2,
            "memory": "4G",
            "walltime": "02:00:00",
            "gpus": 1,
            "gpu_type": "a100",
        }
    )


def basic_job() -> JobScript:
    return JobScript(
        workdir="/home/alice",
        output_path="/home/alice/.jupyterhub-hpc-%j.log",
        command=[
            "jupyterhub-hpc-singleuser",
            "--port-range",
            "9000-9100",
            "--",
            "jupyterhub-singleuser",
            "--debug",
        ],
        environment={
            "JUPYTERHUB_USER": "alice",
            "JUPYTERHUB_API_URL": "http://10.0.0.1:8081/hub/api",
            "JUPYTERHUB_SERVICE_PREFIX": "/user/alice/",
            "JUPYTERHUB_OAUTH_SCOPES": '["access:servers!server=alice/"]',
        },
        path_prepend=["/opt/jupyterhub-hpc/venv/bin"],
        prologue="module load python/3.11",
        epilogue="echo finished",
        extra_directives=["--licenses=matlab:1"],
        directives_skip=["--ntasks-per-node"],
    )


def simple_job(**changes: object) -> JobScript:
    fields: dict[str, object] = {
        "workdir": "/tmp",
        "output_path": "/tmp/out-%j.log",
        "command": ["true"],
    }
    fields.update(changes)
    return JobScript(**fields)  # type: ignore[arg-type]


def directive_args(script: str) -> list[str]:
    """The directive arguments sbatch reads: ``#SBATCH`` lines before the first command line."""
    args = []
    for line in script.splitlines()[1:]:
        if line.strip() and not line.startswith("#"):
            break
        if line.startswith("#SBATCH "):
            args.append(line.removeprefix("#SBATCH "))
    return args


def run_bash(script: str, cwd: Path) -> subprocess.CompletedProcess[bytes]:
    path = cwd / "job.sh"
    path.write_text(script)
    syntax = subprocess.run(["bash", "-n", str(path)], capture_output=True, check=False)
    assert syntax.returncode == 0, syntax.stderr.decode()
    env = {"PATH": os.environ["PATH"], "HOME": str(cwd), "LANG": "C.UTF-8"}
    return subprocess.run(["bash", str(path)], cwd=cwd, env=env, capture_output=True, timeout=30, check=False)


# -- the golden script ---------------------------------------------------------------------


def test_slurm_script_matches_golden() -> None:
    script = SlurmBackend().render(basic_request(), basic_job())
    assert script == (GOLDEN / "basic.sh").read_text()


def test_golden_script_is_valid_bash() -> None:
    result = subprocess.run(["bash", "-n", str(GOLDEN / "basic.sh")], capture_output=True, check=False)
    assert result.returncode == 0, result.stderr


def test_directives_come_before_any_command() -> None:
    """sbatch stops reading directives at the first line that is not a comment."""
    lines = SlurmBackend().render(basic_request(), basic_job()).splitlines()
    assert lines[0] == "#!/bin/bash"
    last_directive = max(i for i, line in enumerate(lines) if line.startswith("#SBATCH"))
    assert all(line.startswith("#") for line in lines[: last_directive + 1])


def test_script_always_limits_memory_and_time() -> None:
    args = directive_args(SlurmBackend().render(JobRequest(), simple_job()))
    assert "--mem=1024M" in args
    assert "--time=08:00:00" in args
    assert not any(a.startswith("--get-user-env") for a in args)


def test_cluster_directive() -> None:
    args = directive_args(SlurmBackend(cluster="c2").render(JobRequest(), simple_job()))
    assert "--clusters=c2" in args


# -- quoting, checked by a real bash ---------------------------------------------------------


def test_hostile_values_round_trip_through_bash(tmp_path: Path) -> None:
    bin_dir = tmp_path / "bin dir $(touch pwned-path)"
    bin_dir.mkdir()
    environment = {f"HOSTILE_{i}": value for i, value in enumerate(HOSTILE)}
    environment["HOSTILE_CANARY"] = "$(touch pwned-env) `touch pwned-env2`"
    job = simple_job(
        command=[sys.executable, "-c", DUMP, *HOSTILE, "$(touch pwned-arg)"],
        environment=environment,
        path_prepend=[str(bin_dir)],
        prologue="export FROM_PROLOGUE=$((1 + 2))",
    )
    script = SlurmBackend().render(JobRequest(), job)
    result = run_bash(script, tmp_path)
    assert result.returncode == 0, result.stderr.decode()
    out = result.stdout.decode().splitlines()
    seen = json.loads(out[0])
    assert seen["argv"] == [*HOSTILE, "$(touch pwned-arg)"]
    assert seen["env"] == environment
    assert seen["path"].startswith(f"{bin_dir}:")
    assert seen["prologue"] == "3", "the admin prologue is written as shell text, not quoted"
    assert out[-1] == f"{EXIT_MARKER}0"
    assert sorted(p.name for p in tmp_path.iterdir() if p.name.startswith("pwned")) == []


def test_epilogue_keeps_the_servers_exit_status(tmp_path: Path) -> None:
    job = simple_job(command=["bash", "-c", "exit 3"], epilogue="echo finished")
    result = run_bash(SlurmBackend().render(JobRequest(), job), tmp_path)
    out = result.stdout.decode().splitlines()
    assert out == ["finished", f"{EXIT_MARKER}3"]
    assert result.returncode == 3


@pytest.mark.parametrize("value", HOSTILE, ids=[repr(v) for v in HOSTILE])
def test_each_export_line_round_trips(value: str, tmp_path: Path) -> None:
    job = simple_job(environment={"HOSTILE": value}, prologue='printf "%s" "$HOSTILE" > value.out')
    script = SlurmBackend().render(JobRequest(), job)
    export = script[script.index("export HOSTILE=") :]
    export = export[: export.index("\n# -- job_script_prologue")]
    assert directive_args(script) == directive_args(SlurmBackend().render(JobRequest(), simple_job()))
    result = run_bash(script, tmp_path)
    assert result.returncode == 0, result.stderr.decode()
    assert (tmp_path / "value.out").read_bytes().decode() == value
    # the export statement alone, in a fresh bash, gives the same value
    alone = subprocess.run(
        ["bash", "-c", f'{export}\nprintf "%s" "$HOSTILE"'], capture_output=True, env={}, check=True
    )
    assert alone.stdout.decode() == value


#: any character a script file can hold (no NUL; no lone surrogate, which UTF-8 cannot encode)
SCRIPT_CHARACTERS = st.characters(exclude_characters="\x00", exclude_categories=("Cs",))


@settings(max_examples=40, deadline=None)
@given(value=st.text(alphabet=SCRIPT_CHARACTERS, max_size=30))
def test_any_value_round_trips(value: str, tmp_path_factory: pytest.TempPathFactory) -> None:
    directory = tmp_path_factory.mktemp("roundtrip")
    job = simple_job(
        environment={"HOSTILE": value},
        command=["printf", "%s", value],
        prologue='printf "%s" "$HOSTILE" > value.out',
    )
    result = run_bash(SlurmBackend().render(JobRequest(), job), directory)
    assert result.returncode == 0, result.stderr.decode()
    assert (directory / "value.out").read_bytes().decode() == value
    assert result.stdout.decode() == f"{value}{EXIT_MARKER}0\n"


def test_argv_filter_quotes_each_element() -> None:
    job = simple_job(command=["echo", "a b", "$(id)", "it's"])
    script = SlurmBackend().render(JobRequest(), job)
    assert "\necho 'a b' '$(id)' 'it'\"'\"'s'\n" in script


# -- admin escape hatches ---------------------------------------------------------------------


def test_directives_skip_drops_matching_generated_directives() -> None:
    job = simple_job(directives_skip=["--mem", "--export"])
    args = directive_args(SlurmBackend().render(JobRequest(), job))
    assert not any(a.startswith(("--mem", "--export")) for a in args)
    assert "--time=08:00:00" in args and "--cpus-per-task=1" in args


def test_extra_directives_come_last_and_survive_skip() -> None:
    job = simple_job(extra_directives=["--licenses=matlab:1", "--mem=2G"], directives_skip=["--mem"])
    args = directive_args(SlurmBackend().render(JobRequest(), job))
    assert args[-2:] == ["--licenses=matlab:1", "--mem=2G"]
    assert [a for a in args if a.startswith("--mem")] == ["--mem=2G"]


def test_directive_lines_helper() -> None:
    lines = directive_lines("#PBS", ["-l mem=1g", "-N x"], skip=["mem"], extra=["-q fast"])
    assert lines == ["#PBS -N x", "#PBS -q fast"]
    assert all(isinstance(line, Safe) for line in lines)


@pytest.mark.parametrize("bad", ["\n", "\r", "\t", "\x00", "\x1b[2J", "\x7f", "\x0b", "\x0c"])
def test_control_characters_in_directives_are_refused(bad: str) -> None:
    with pytest.raises(ValueError, match="control character"):
        check_directive(f"--comment=a{bad}b")
    with pytest.raises(ValueError, match="control character"):
        SlurmBackend().render(
            JobRequest(), simple_job(extra_directives=[f"--comment=x{bad}#SBATCH --wrap=id"])
        )
    with pytest.raises(ValueError, match="control character"):
        SlurmBackend().render(JobRequest(), simple_job(output_path=f"/tmp/o{bad}ut.log"))
    with pytest.raises(ValueError, match="control character"):
        SlurmBackend().render(JobRequest(), simple_job(workdir=f"/tmp/w{bad}"))


def test_plain_directive_text_passes() -> None:
    assert (
        check_directive("--comment=any printable text, even $(this)")
        == "--comment=any printable text, even $(this)"
    )


# -- the template engine ---------------------------------------------------------------------


def write_template(directory: Path, text: str, name: str = "custom.sh.j2") -> Path:
    path = directory / name
    path.write_text(text)
    return path


@pytest.mark.parametrize("text", ["{{ nosuch }}", "{{ job.nosuch }}", "{% for x in nosuch %}{% endfor %}"])
def test_undefined_names_are_errors(text: str, tmp_path: Path) -> None:
    template = write_template(tmp_path, text)
    with pytest.raises(jinja2.UndefinedError):
        render_script(str(template), {"job": simple_job()})


def test_values_are_quoted_unless_safe(tmp_path: Path) -> None:
    template = write_template(
        tmp_path,
        "a={{ text }}\nb={{ text | safe }}\nn={{ number }}\nt={{ yes }}\nf={{ no }}\nw={{ job.workdir }}\n",
    )
    out = render_script(
        str(template),
        {"text": "$(id) x", "number": 5, "yes": True, "no": False, "job": simple_job(workdir="/a b")},
    )
    assert out == "a='$(id) x'\nb=$(id) x\nn=5\nt=1\nf=0\nw='/a b'\n"


def test_template_found_in_extra_dirs(tmp_path: Path) -> None:
    write_template(tmp_path, "x={{ value }}\n", name="site.sh.j2")
    assert render_script("site.sh.j2", {"value": "a;b"}, extra_dirs=[tmp_path]) == "x='a;b'\n"
    with pytest.raises(jinja2.TemplateNotFound):
        render_script("site.sh.j2", {"value": "a;b"})


def test_a_terminated_job_writes_143_not_0(tmp_path: Path) -> None:
    """scancel sends SIGTERM to the script and its children: the marker must not say 0."""
    path = tmp_path / "job.sh"
    path.write_text(SlurmBackend().render(JobRequest(), simple_job(command=["sleep", "30"])))
    proc = subprocess.Popen(["bash", str(path)], cwd=tmp_path, stdout=subprocess.PIPE, start_new_session=True)
    time.sleep(0.5)
    os.killpg(proc.pid, signal.SIGTERM)
    out, _ = proc.communicate(timeout=10)
    assert out.decode().splitlines()[-1] == f"{EXIT_MARKER}143"
