"""HTCondor renders its own submit description; ``stage --description`` hands it to
``condor_submit`` with the script in a file. The description is read back by the fake
CLI's parser (``tests/fakes/cli/condor_description.py``, after HTCondor's manual), and
one submission goes all the way through the real stage program and the fake
``condor_submit`` to a job that runs."""

from __future__ import annotations

import io
import json
import os
import shutil
import sys
import time
from pathlib import Path
from types import SimpleNamespace

import pytest

from jupyterhub_hpc.backends.base import JobScript
from jupyterhub_hpc.backends.htcondor import HTCondorBackend, condor_value
from jupyterhub_hpc.request import JobRequest
from jupyterhub_hpc.singleuser import stage

FAKES = Path(__file__).resolve().parents[1] / "fakes" / "cli"
sys.path.insert(0, str(FAKES))
import condor_description  # noqa: E402

BACKEND = HTCondorBackend()


def job(workdir: str = "/home/a b", **fields: object) -> JobScript:
    values: dict[str, object] = {
        "workdir": workdir,
        "output_path": BACKEND.output_path(f"{workdir}/out-{{job_id}}.log"),
        "command": ["launch", "--x"],
    }
    values.update(fields)
    return JobScript(**values)  # type: ignore[arg-type]


def test_values_are_written_by_htcondors_rules() -> None:
    assert condor_value("/home/a b") == "/home/a b"
    assert condor_value("/data/$USER/x") == "/data/$(DOLLAR)USER/x"
    assert condor_value(3) == "3"
    for bad in ["", " lead", "trail ", "a\nqueue", "tab\there", "ends\\"]:
        with pytest.raises(ValueError):
            condor_value(bad)


def test_the_description_reads_back_as_htcondor_reads_it() -> None:
    request = JobRequest(cpus=3, memory="2G", walltime="00:02:00", gpus=1, account="physics")
    extra = ['+ProjectName = "physics lab"', 'requirements = (OpSys == "LINUX")']
    text = BACKEND.description(request, job("/home/a b/$HOME", extra_directives=extra))
    lines = text.splitlines()
    assert lines[-1] == "queue" and text.endswith("\n")
    assert not any(line.startswith("#") for line in lines), "commands, not script comments"
    desc = condor_description.parse(text, ["executable=/s.sh"], cluster=41)
    assert desc.count == 1
    assert desc.get("executable") == "/s.sh"
    assert desc.get("initialdir") == "/home/a b/$HOME"
    assert desc.get("universe") == "vanilla" and desc.get("getenv") == "True"
    assert (desc.get("request_cpus"), desc.get("request_memory"), desc.get("request_gpus")) == (
        "3",
        "2048",
        "1",
    )
    assert desc.get("accounting_group") == "physics"
    assert desc.get("periodic_remove") == "(JobStatus == 2) && (time() - EnteredCurrentStatus > 120)"
    assert desc.get("requirements") == '(OpSys == "LINUX")'
    assert desc.attributes == {"ProjectName": '"physics lab"'}
    assert condor_description.environment(desc.get("environment")) == {"JUPYTERHUB_HPC_JOB_ID": "41.0"}


def test_skip_and_refusals() -> None:
    skipped = BACKEND.description(JobRequest(), job(directives_skip=["request_memory", "getenv"]))
    assert "request_memory" not in skipped and "getenv" not in skipped and "request_cpus = 1" in skipped
    with pytest.raises(ValueError):
        BACKEND.description(JobRequest(), job("/home/x\nqueue"))
    with pytest.raises(ValueError):
        BACKEND.description(JobRequest(), job(extra_directives=["a = 1\nqueue 100"]))


def test_submit_input_frames_the_description_and_the_script() -> None:
    request = JobRequest(job_name="nb")
    workdir = job("/home/é")
    data = BACKEND.submit_input(request, workdir).encode()
    description, script = stage.unpack(data)
    assert description.decode() == BACKEND.description(request, workdir)
    assert script.decode() == BACKEND.render(request, workdir)
    assert script.startswith(b"#!/bin/bash\n") and b"#HTCONDOR" not in script
    argv = BACKEND.submit_argv(request)
    assert argv[1:3] == ["-m", "jupyterhub_hpc.singleuser.stage"]
    assert argv[3:] == [
        "--description",
        "--",
        "condor_submit",
        "-terse",
        "-append",
        "executable={script}",
        "-",
    ]


@pytest.mark.parametrize("data", [b"", b"x\nqueue\n", b"99\nqueue\n", b"123456789\n"])
def test_unpack_refuses_what_pack_did_not_make(data: bytes) -> None:
    with pytest.raises(ValueError):
        stage.unpack(data)


def run_stage(
    monkeypatch: pytest.MonkeyPatch, home: Path, argv: list[str], data: str
) -> tuple[int, list[Path]]:
    monkeypatch.setattr(sys, "stdin", io.TextIOWrapper(io.BytesIO(data.encode())))
    monkeypatch.setattr(stage.pwd, "getpwuid", lambda uid: SimpleNamespace(pw_dir=str(home)))
    code = stage.main(argv)
    return code, sorted((home / ".jupyterhub-hpc" / "jobs").glob("job-*"))


def test_stage_refuses_unframed_input(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    marker = tmp_path / "ran"
    code, scripts = run_stage(
        monkeypatch, tmp_path, ["--description", "--", "touch", str(marker)], "#!/bin/bash\ntrue\n"
    )
    assert code == 2 and scripts == [] and not marker.exists()


def test_a_job_goes_through_stage_and_condor_submit(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    bin_dir = tmp_path / "bin"
    shutil.copytree(FAKES, bin_dir, ignore=shutil.ignore_patterns("state", "__pycache__"))
    monkeypatch.setenv("PATH", f"{Path(sys.executable).parent}{os.pathsep}{os.environ['PATH']}")
    home = tmp_path / "home"
    workdir = tmp_path / "work $dir"
    workdir.mkdir(parents=True)
    backend = HTCondorBackend(commands={"condor_submit": str(bin_dir / "condor_submit")})
    script_job = JobScript(
        workdir=str(workdir),
        output_path=backend.output_path(f"{workdir}/out-{{job_id}}.log"),
        command=["sh", "-c", 'echo "id=$JUPYTERHUB_HPC_JOB_ID dir=$PWD"'],
        extra_directives=['+ProjectName = "physics"'],
    )
    data = backend.submit_input(JobRequest(cpus=2), script_job)
    argv = backend.submit_argv(JobRequest())
    assert argv[1:3] == ["-m", "jupyterhub_hpc.singleuser.stage"]

    code, scripts = run_stage(monkeypatch, home, argv[3:], data)
    assert code == 0
    [script] = scripts
    assert script.read_text() == backend.render(JobRequest(cpus=2), script_job)
    assert script.stat().st_mode & 0o777 == 0o700

    [call] = [json.loads(line) for line in (bin_dir / "state" / "calls.log").read_text().splitlines()]
    assert call["argv"] == ["-terse", "-append", f"executable={script}", "-"]
    jobs = json.loads((bin_dir / "state" / "jobs.json").read_text())["jobs"]
    assert list(jobs) == ["1.0"]
    assert jobs["1.0"]["executable"] == str(script)
    assert jobs["1.0"]["description"]["initialdir"] == str(workdir), "$(DOLLAR) became $ again"
    assert jobs["1.0"]["description"]["request_cpus"] == "2"
    assert jobs["1.0"]["attributes"] == {"ProjectName": '"physics"'}

    output = workdir / "out-1.0.log"
    deadline = time.monotonic() + 30
    while "jupyterhub-hpc-exit-status=" not in (output.read_text() if output.exists() else ""):
        assert time.monotonic() < deadline, "the job did not run"
        time.sleep(0.05)
    assert f"id=1.0 dir={workdir}" in output.read_text().splitlines()
    assert "jupyterhub-hpc-exit-status=0" in output.read_text()
