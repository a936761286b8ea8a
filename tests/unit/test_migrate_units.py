"""The pieces of ``jupyterhub-hpc migrate``: settings, command lines, scripts, forms, loading.

The inputs are written here for the tests (none is a site's text). A translated job script
is rendered by the real Slurm backend, so a template that the project cannot use fails.
"""

from __future__ import annotations

import importlib.util
from pathlib import Path

import pytest

from jupyterhub_hpc.backends.base import EXIT_MARKER, JobScript
from jupyterhub_hpc.backends.slurm import SlurmBackend
from jupyterhub_hpc.migrate.batch import memory_of, translate_settings, walltime_of
from jupyterhub_hpc.migrate.commands import translate_commands
from jupyterhub_hpc.migrate.forms import moss_profiles, options_from_apply_user_options
from jupyterhub_hpc.migrate.load import load_config_file, sections_of
from jupyterhub_hpc.migrate.model import MigrateError
from jupyterhub_hpc.migrate.script import translate_script
from jupyterhub_hpc.migrate.translate import migrate_sections
from jupyterhub_hpc.request import JobRequest
from migrate_cli import run_migrate

REPO = Path(__file__).resolve().parents[2]
TRAITS = frozenset({"cmd", "args", "default_url", "http_timeout", "start_timeout", "environment"})
OWN = TRAITS | {"partition", "memory", "walltime", "cpus", "gpus", "gpu_type", "gres", "launcher_command"}


def settings(values: dict[str, object], backend: str = "slurm") -> tuple[dict[str, object], list[str]]:
    out = translate_settings(values, "c.SlurmSpawner", backend, spawner_traits=TRAITS, own_traits=OWN)
    return out.values, [f"{i.setting}: {i.why}" for i in out.not_carried]


def test_req_values_are_read_as_batchspawner_scripts_use_them() -> None:
    values, dropped = settings(
        {
            "req_partition": "short,long",
            "req_nprocs": "4",
            "req_memory": "2200",  # --mem=2200: MB
            "req_runtime": "1-12",  # D-HH
            "req_gres": "gpu:a100:2,nvme:1",
            "req_queue": "ignored-by-slurm",
            "req_options": "--exclusive --licenses matlab:1",
            "req_keepvars": "PATH",
        }
    )
    assert values == {
        "partition": "short,long",
        "cpus": 4,
        "memory": "2200M",
        "walltime": "36:00:00",
        "gpus": 2,
        "gpu_type": "a100",
        "gres": ["nvme:1"],
        "job_extra_directives": ["--exclusive", "--licenses matlab:1"],
    }
    assert [d.split(":")[0] for d in dropped] == ["c.SlurmSpawner.req_queue", "c.SlurmSpawner.req_keepvars"]


def test_torque_units_are_torques() -> None:
    assert walltime_of("3600", "torque") == 3600  # seconds, where Slurm reads minutes
    assert walltime_of("3600", "slurm") == 3600 * 60
    assert memory_of(str(4 * 1024**3), "torque") == 4096  # bytes
    assert memory_of("4gb", "torque") == memory_of("4G", "slurm") == 4096
    values, _ = settings({"req_queue": "batch", "req_partition": "x"}, "torque")
    assert values == {"partition": "batch"}


def test_an_invalid_value_is_listed_not_carried() -> None:
    values, dropped = settings({"req_nprocs": "two", "req_partition": "a b"})
    assert values == {}
    assert dropped[0].startswith("c.SlurmSpawner.req_nprocs: 'two'")
    assert dropped[1].startswith("c.SlurmSpawner.req_partition: 'a b' is not a valid partition")


def test_spawner_traits_kept_commands_and_other_settings_translated() -> None:
    values, dropped = settings(
        {
            "cmd": "/opt/jh/bin/jupyterhub-singleuser --debug",
            "http_timeout": 120,
            "batchspawner_singleuser_cmd": "/opt/jh/bin/batchspawner-singleuser",
            "state_exechost_exp": r"\1.ib.example.org",
            "startup_poll_interval": 2,
            "made_up_trait": 1,
        }
    )
    assert values["cmd"] == ["/opt/jh/bin/jupyterhub-singleuser", "--debug"]
    assert values["http_timeout"] == 120
    assert values["launcher_command"] == ["/opt/jh/bin/jupyterhub-hpc-singleuser"]
    assert values["node_address"] == "{host}.ib.example.org"
    assert values["status_fast_interval"] == 2.0
    assert dropped == [
        "c.SlurmSpawner.made_up_trait: no such setting here (not a trait of this project's spawner)"
    ]


def test_commands_over_ssh_and_sudo() -> None:
    result = translate_commands(
        {
            "exec_prefix": "ssh -o BatchMode=yes login1.example.org "
            "SLURM_CONF=/etc/slurm-b/slurm.conf sudo -u {username}",
            "batch_submit_cmd": "/opt/slurm/bin/sbatch --parsable",
            "batch_query_cmd": "squeue -h -j {job_id} -o '%T %B'",
            "batch_cancel_cmd": "/opt/slurm/bin/scancel {job_id}",
        },
        "slurm",
        "c.SlurmSpawner",
    )
    assert result.values == {
        "ssh_host": "login1.example.org",
        "scheduler_environment": {"SLURM_CONF": "/etc/slurm-b/slurm.conf"},
        "scheduler_commands": {"sbatch": "/opt/slurm/bin/sbatch", "scancel": "/opt/slurm/bin/scancel"},
    }
    assert result.not_carried == []


def test_commands_without_counterpart_are_listed_with_the_reason() -> None:
    result = translate_commands(
        {
            "batch_submit_cmd": "gsissh {username}@{host} sbatch",
            "batch_query_cmd": "python /opt/site/get-state.py {job_id}",
            "batch_cancel_cmd": "sudo -E -u {username} scancel {job_id}",
        },
        "slurm",
        "c.X",
    )
    reasons = {i.setting: i.why for i in result.not_carried}
    assert "gsissh" in reasons["c.X.batch_submit_cmd"]
    assert "runs 'python /opt/site/get-state.py" in reasons["c.X.batch_query_cmd"]
    assert "sudo -E" in reasons["c.X.batch_cancel_cmd"]


SCRIPT = """#!/bin/bash
#SBATCH --partition={partition}
#SBATCH --time={runtime}
#SBATCH --licenses=fluent:1
module load site-jupyter
{prologue}
{cmd}
echo "server done"
"""


def render(template: str, tmp_path: Path) -> str:
    path = tmp_path / "job.sh.j2"
    path.write_text(template)
    request = JobRequest.from_mapping(
        {"partition": "short", "cpus": 2, "memory": "4G", "walltime": "01:00:00"}
    )
    job = JobScript(
        workdir="/home/alice",
        output_path="/home/alice/out.log",
        command=["jupyterhub-hpc-singleuser", "jupyterhub-singleuser", "--a b"],
        environment={"JUPYTERHUB_USER": "alice; rm -rf /"},
        prologue="echo admin-prologue",
        extra_directives=["--licenses=fluent:1"],
    )
    return SlurmBackend().render(request, job, template=str(path))


@pytest.mark.parametrize(
    "script", [SCRIPT, SCRIPT.replace("{cmd}", "{{cmd}}").replace("{partition}", "{{partition}}")]
)
def test_an_inline_batch_script_becomes_a_template_with_quoting_on(script: str, tmp_path: Path) -> None:
    result = translate_script(
        script.replace("{runtime}", "{{runtime}}") if "{{" in script else script, "slurm"
    )
    assert result.not_carried == []
    assert result.template is not None
    assert result.extra_directives == ["--licenses=fluent:1"]
    text = render(result.template, tmp_path)
    lines = text.splitlines()
    assert lines[0] == "#!/bin/bash"
    assert "#SBATCH --partition=short" in lines and "#SBATCH --time=01:00:00" in lines
    assert lines.count("#SBATCH --licenses=fluent:1") == 1
    assert "module load site-jupyter" in lines and 'echo "server done"' in lines
    assert lines.index("module load site-jupyter") < lines.index("echo admin-prologue")
    assert "export JUPYTERHUB_USER='alice; rm -rf /'" in lines  # quoted by the project's body
    assert "jupyterhub-hpc-singleuser jupyterhub-singleuser '--a b'" in lines
    assert any(EXIT_MARKER in line for line in lines)


def test_a_script_with_variables_of_its_own_is_not_carried() -> None:
    result = translate_script("#!/bin/bash\n{other}\nsingularity run {image} {cmd}\n", "slurm")
    assert result.template is None
    assert result.not_carried[0] == "line 2: {other} has no counterpart among the template variables"
    assert result.not_carried[1].startswith("line 3: {image}")
    jinja = translate_script(
        "#!/bin/bash\n{% if gres %}#SBATCH --gres={{gres}}{% endif %}\n{{cmd}}\n", "slurm"
    )
    assert jinja.template is None and "Jinja2 statement" in jinja.not_carried[0]


def test_moss_partitions_become_profiles_with_limits() -> None:
    profiles, limits, dropped = moss_profiles(
        {
            "cpu": {
                "description": "CPU nodes",
                "max_nprocs": 32,
                "max_runtime": 7200,
                "max_ngpus": 0,
                "simple": True,
            },
            "gpu": {
                "description": "GPU nodes",
                "gpu": "gpu:v100:{}",
                "max_ngpus": 4,
                "max_nprocs": 16,
                "max_runtime": 3600,
                "jupyter_environments": {
                    "default": {"description": "Default", "modules": "Python/3.12", "path": ""}
                },
            },
        },
        "c.MOSlurmSpawner.partitions",
    )
    assert [p["slug"] for p in profiles] == ["cpu", "gpu"]
    assert limits == {
        "cpu": {"max_cpus": 32, "max_walltime": "02:00:00"},
        "gpu": {"max_cpus": 16, "max_gpus": 4, "max_walltime": "01:00:00"},
    }
    gpu = profiles[1]["profile_options"]
    assert gpu["gpus"]["max"] == 4 and gpu["gpu_type"]["when"] == {"gpus": {"min": 1}}
    env = gpu["environment"]["choices"]["default"]
    assert env["spawner_override"] == {"job_script_prologue": "module load Python/3.12"}
    assert any("free fields" in d.why for d in dropped)


def test_apply_user_options_mapping_becomes_typed_options() -> None:
    options, dropped = options_from_apply_user_options(
        {"runtime": "req_runtime", "cores": "req_nprocs", "extra": "req_options"},
        "c.Spawner.apply_user_options",
    )
    assert options["runtime"]["type"] == "walltime"
    assert options["cores"] == {"type": "integer", "job_field": "cpus", "display_name": "CPU cores", "min": 1}
    assert [d.setting for d in dropped] == ["c.Spawner.apply_user_options['extra']"]


def test_an_unknown_scheduler_must_be_named() -> None:
    sections = {"JupyterHub": {"spawner_class": "site.MySpawner"}, "MySpawner": {"req_nprocs": "2"}}
    with pytest.raises(MigrateError, match="--scheduler"):
        migrate_sections(sections, spawner_traits=TRAITS, own_traits=OWN)
    migration = migrate_sections(sections, spawner_traits=TRAITS, own_traits=OWN, scheduler="slurm")
    assert migration.traits == {"cpus": 2} and migration.spawner_class == "slurm"


def test_loading_needs_no_batchspawner(tmp_path: Path) -> None:
    path = tmp_path / "jupyterhub_config.py"
    path.write_text(
        "c = get_config()\n"
        "c.JupyterHub.spawner_class = 'wrapspawner.ProfilesSpawner'\n"
        "c.SlurmSpawner.req_memory = '4G'\n"
        "c.Spawner.environment.update({'A': '1'})\n"
        "c.ProfilesSpawner.profiles = "
        "[('Short', 'short', 'batchspawner.SlurmSpawner', {'req_runtime': '30'})]\n"
    )
    sections, dropped = sections_of(load_config_file(path))
    assert sections["SlurmSpawner"] == {"req_memory": "4G"}
    assert sections["Spawner"] == {"environment": {"A": "1"}}
    assert sections["ProfilesSpawner"]["profiles"][0][1] == "short"
    assert dropped == []


def test_a_file_that_imports_an_absent_batchspawner_says_so(tmp_path: Path) -> None:
    if importlib.util.find_spec("batchspawner") is not None:
        pytest.skip("batchspawner is installed here")
    path = tmp_path / "jupyterhub_config.py"
    path.write_text("import batchspawner\nc = get_config()\n")
    done = run_migrate(str(path))
    assert done.returncode == 2 and done.stdout == ""
    assert "imports 'batchspawner', which is not installed here" in done.stderr


def test_write_templates(tmp_path: Path) -> None:
    path = tmp_path / "jupyterhub_config.py"
    path.write_text(
        "c = get_config()\nc.JupyterHub.spawner_class = 'batchspawner.SlurmSpawner'\n"
        f"c.SlurmSpawner.batch_script = {SCRIPT!r}\n"
    )
    done = run_migrate(str(path), "--template-dir", str(tmp_path / "t"), "--write-templates")
    assert done.returncode == 0, done.stderr
    written = tmp_path / "t" / "jupyterhub-hpc-job.sh.j2"
    assert f"c.SlurmSpawner.job_script_template = {str(written)!r}" in done.stdout
    assert '{% include "job-body.sh.j2" %}' in written.read_text()
    printed = run_migrate(str(path))
    assert "# Save this job-script template as" in printed.stdout


def test_task_fields_of_a_site_subclass_reach_the_job_request(tmp_path: Path) -> None:
    """``req_ntasks`` and friends (NERSC-style subclasses) become overrides of the job fields
    ``ntasks``, ``ntasks_per_node``, ``gpus_per_task``, checked by ``check_profiles``."""
    from traitlets.config.loader import PyFileConfigLoader

    from jupyterhub_hpc.profiles.model import parse_profile_list
    from jupyterhub_hpc.profiles.validate import Context, resolve
    from jupyterhub_hpc.spawner import SlurmSpawner

    path = tmp_path / "jupyterhub_config.py"
    path.write_text(
        "c = get_config()\n"
        "c.JupyterHub.spawner_class = 'wrapspawner.ProfilesSpawner'\n"
        "c.BatchSpawnerBase.req_prologue = 'module load site'\n"
        "c.ProfilesSpawner.profiles = [\n"
        "    ('MPI', 'mpi', 'site.MPISlurmSpawner', {'req_nodes': '2', 'req_ntasks': '8',\n"
        "     'req_ntasks_per_node': '4', 'req_gpus_per_task': '1', 'req_partition': 'gpu'}),\n"
        "    ('Local', 'local', 'jupyterhub.spawner.LocalProcessSpawner', {}),\n"
        "]\n"
    )
    done = run_migrate(str(path))
    assert done.returncode == 0, done.stderr
    out = tmp_path / "out" / "jupyterhub_config.py"
    out.parent.mkdir()
    out.write_text(done.stdout)
    c = PyFileConfigLoader(out.name, path=str(out.parent)).load_config()  # check_profiles(c)
    assert c.JupyterHub.spawner_class == "hpc"
    assert "job_script_prologue" not in c.HPCSpawner  # a batch class's setting: not the local profile's
    spawner = SlurmSpawner(config=c)
    profiles = parse_profile_list(spawner.profile_list, frozenset(spawner.trait_names()))
    ctx = Context(user="alice", base_job=spawner.profile_base_job(), base_backend="slurm")
    job = resolve(profiles, {"profile": "mpi"}, ctx).job_request()
    assert (job.partition, job.nodes, job.ntasks, job.ntasks_per_node, job.gpus_per_task) == (
        "gpu",
        2,
        8,
        4,
        1,
    )
    assert profiles.profiles[0].all_overrides["job_script_prologue"] == "module load site"
    assert "job_script_prologue" not in profiles.profiles[1].all_overrides
    assert "`profiles[mpi].class`" in done.stdout  # a subclass: its code is not configuration
