"""batchspawner's settings -> this project's job fields and traits (pure functions).

:func:`translate_settings` reads one mapping of batchspawner trait names to values (a
class section, or a wrapspawner profile's config) and returns the traits of
:class:`~jupyterhub_hpc.spawner.HPCSpawner` that ask for the same job, plus what has
no counterpart and why. ``req_*`` values are read as batchspawner's own script for the
scheduler uses them (Slurm: ``--partition={partition}``, ``--mem={memory}`` in MB, ...;
Torque/PBS: ``-q {queue}``, ``mem={memory}`` in bytes, ``walltime`` in seconds).
"""

from __future__ import annotations

import math
import shlex
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from ..request import (
    JobRequest,
    RequestError,
    parse_memory_mib,
    parse_walltime_seconds,
    parse_whole_number,
    walltime_text,
)
from .commands import translate_commands
from .model import NotCarried
from .script import translate_script

__all__ = ["SCHEDULERS", "Translated", "memory_of", "memory_text", "translate_settings", "walltime_of"]

#: batchspawner class (short name) -> this project's backend
SCHEDULERS = {
    "SlurmSpawner": "slurm",
    "MultiSlurmSpawner": "slurm",
    "MOSlurmSpawner": "slurm",
    "SlurmFormSpawner": "slurm",
    "TorqueSpawner": "torque",
    "MoabSpawner": "torque",
    "PBSSpawner": "pbs",
    "GridengineSpawner": "sge",
    "LsfSpawner": "lsf",
    "CondorSpawner": "htcondor",
}

#: req_* whose value is a name the job request takes as it is (batchspawner trait -> field)
_NAMES = {
    "req_account": "account",
    "req_qos": "qos",
    "req_reservation": "reservation",
    "req_constraint": "constraint",
}
#: req_* that are whole numbers (batchspawner trait -> field)
_COUNTS = {
    "req_nprocs": "cpus",
    "req_cpus_per_task": "cpus",
    "req_ngpus": "gpus",
    "req_gpus": "gpus",
    "req_nodes": "nodes",
    "req_ntasks": "ntasks",
    "req_ntasks_per_node": "ntasks_per_node",
    "req_gpus_per_task": "gpus_per_task",
}
_OWN_FORM = "the form is this project's template (profile_form_template_paths), built from profile_list"
#: batchspawner traits with no counterpart, and why
_NO_COUNTERPART = {
    "req_keepvars": "jobs are submitted with --export=ALL, and the server's environment is written "
    "into the script as quoted export lines (c.Spawner.environment, env_keep)",
    "req_keepvars_extra": "jobs are submitted with --export=ALL, and the server's environment is written "
    "into the script as quoted export lines (c.Spawner.environment, env_keep)",
    "req_username": "the job always runs as the hub user it belongs to",
    "ip": "the server binds the node's own address (server_bind), never 0.0.0.0",
    "port": "the port is chosen on the node and reported to the hub (port_range)",
    "state_pending_re": "the watcher reads the scheduler's state fields itself: no regular expressions",
    "state_running_re": "the watcher reads the scheduler's state fields itself: no regular expressions",
    "state_unknown_re": "the watcher reads the scheduler's state fields itself: no regular expressions",
    "state_exechost_re": "the node comes from the scheduler's own field (node_address formats it)",
    "options_form": "the form is built from profile_list (an HTML form of one's own is not read)",
    "options_from_form": "the form is built from profile_list and read by it",
    "hub_ip": "JupyterHub's own setting (c.JupyterHub.hub_ip), not the spawner's",
    "hub_port": "JupyterHub's own setting (c.JupyterHub.hub_port), not the spawner's",
    "proxy_ip": "the proxy's setting (c.JupyterHub.bind_url / c.ConfigurableHTTPProxy), not the spawner's",
    "proxy_port": "the proxy's setting (c.JupyterHub.bind_url / c.ConfigurableHTTPProxy), not the spawner's",
    "form_template": _OWN_FORM,
    "first_template": _OWN_FORM,
    "input_template": _OWN_FORM,
    "docker_spawner_args": "no container backend: the profiles are batch jobs or local servers",
    "daemon_resolver": "node_address formats the node name the scheduler reports ({host}); a table "
    "of names has no counterpart",
}
#: JupyterHub Spawner traits that mean the same here: kept as they are
_JOB_TRAITS = frozenset(
    {
        "partition",
        "account",
        "qos",
        "reservation",
        "constraint",
        "cpus",
        "memory",
        "walltime",
        "gpus",
        "gpu_type",
        "nodes",
        "ntasks",
        "ntasks_per_node",
        "gpus_per_task",
        "gres",
        "cluster",
    }
)


@dataclass
class Translated:
    """Traits (or profile overrides) that ask for the same job, and what is not carried."""

    values: dict[str, Any] = field(default_factory=dict)
    not_carried: list[NotCarried] = field(default_factory=list)
    template: str | None = None

    def drop(self, setting: str, why: str) -> None:
        self.not_carried.append(NotCarried(setting, why))


def walltime_of(value: str, backend: str) -> int:
    """Seconds of a batchspawner ``req_runtime``: Slurm's ``--time`` forms (a bare number is
    minutes), or for Torque/PBS ``[[HH:]MM:]SS`` (a bare number is seconds)."""
    text = value.strip()
    if backend in ("torque", "pbs", "sge", "lsf"):
        if text.isdigit():
            return int(text)
        if backend == "lsf" and text.count(":") == 1:  # LSF -W is [HH:]MM
            hours, minutes = text.split(":")
            return (int(hours) * 60 + int(minutes)) * 60
    return int(parse_walltime_seconds(text))


def memory_of(value: str, backend: str) -> int:
    """MiB of a batchspawner ``req_memory``: a bare number is MB for Slurm (``--mem``) and
    bytes for Torque/PBS (``mem=``); units K/M/G/T with an optional B as written."""
    text = value.strip()
    if text.isdigit():
        number = int(text)
        if backend in ("torque", "pbs"):
            return max(1, math.ceil(number / 1024**2))
        return number
    return parse_memory_mib(text)


def memory_text(mib: int) -> str:
    """``"4G"`` for whole GiB, else ``"2200M"``: the memory as a trait value."""
    return f"{mib // 1024}G" if mib % 1024 == 0 else f"{mib}M"


def _gres(value: str, out: Translated) -> None:
    """``req_gres`` (``gpu:2``, ``gpu:a100:2,nvme:1``): GPUs to ``gpus``/``gpu_type``, the
    rest to ``gres``."""
    others: list[str] = []
    for item in (part.strip() for part in value.split(",")):
        if not item:
            continue
        parts = item.split(":")
        if parts[0] == "gpu" and parts[-1].isdigit() and len(parts) in (2, 3):
            out.values["gpus"] = int(parts[-1])
            if len(parts) == 3:
                out.values["gpu_type"] = parts[1]
        elif parts[0] == "gpu" and len(parts) <= 2:
            out.values["gpus"] = 1
            if len(parts) == 2:
                out.values["gpu_type"] = parts[1]
        else:
            others.append(item)
    if others:
        out.values["gres"] = others


def _directives(value: str) -> list[str]:
    """``req_options`` (``--exclusive --oversubscribe``) as one directive per option."""
    result: list[str] = []
    for token in shlex.split(value):
        if token.startswith("-") or not result:
            result.append(token)
        else:
            result[-1] = f"{result[-1]} {token}"
    return result


def _check(name: str, value: Any) -> str | None:
    """Why ``value`` is not a valid job-request ``name`` (None: it is)."""
    try:
        JobRequest.from_mapping({name: value})
    except RequestError as exc:
        return exc.reason
    return None


def _req(key: str, value: str, backend: str, out: Translated, where: str) -> None:
    setting = f"{where}.{key}"
    if value == "":
        return

    def field_value(name: str, converted: Any) -> None:
        problem = _check(name, converted)
        if problem:
            out.drop(setting, f"{value!r} is not a valid {name} here: {problem}")
        else:
            out.values[name] = converted

    if key == "req_partition":
        if backend == "slurm":
            field_value("partition", value)
        else:
            out.drop(setting, f"batchspawner's {backend} script does not use it (the queue is req_queue)")
    elif key == "req_queue":
        if backend == "slurm":
            out.drop(setting, "batchspawner's Slurm script does not use it (the partition is req_partition)")
        else:
            field_value("partition", value)
    elif key == "req_runtime":
        try:
            field_value("walltime", walltime_text(walltime_of(value, backend)))
        except ValueError as exc:
            out.drop(setting, f"{value!r} is not a time limit: {exc}")
    elif key == "req_memory":
        try:
            field_value("memory", memory_text(memory_of(value, backend)))
        except ValueError as exc:
            out.drop(setting, f"{value!r} is not an amount of memory: {exc}")
    elif key in _COUNTS:
        try:
            field_value(_COUNTS[key], parse_whole_number(value))
        except ValueError as exc:
            out.drop(setting, f"{value!r}: {exc}")
    elif key in _NAMES:
        field_value(_NAMES[key], value)
    elif key == "req_cluster":
        out.values["cluster"] = value
    elif key == "req_gres":
        _gres(value, out)
    elif key == "req_options":
        out.values["job_extra_directives"] = _directives(value)
    elif key == "req_prologue":
        out.values["job_script_prologue"] = value
    elif key == "req_epilogue":
        out.values["job_script_epilogue"] = value
    elif key == "req_homedir":
        out.values["job_workdir"] = value
    elif key == "req_srun":
        out.drop(setting, "the server runs in the batch step itself, not in a job step of its own")
    elif key == "req_host":
        out.drop(
            setting,
            "a batch server named by its host: only batchspawner's commands or a site's script use it; "
            "ssh_host runs the scheduler commands on a login node",
        )
    elif key in _NO_COUNTERPART:
        out.drop(setting, _NO_COUNTERPART[key])
    else:
        out.drop(setting, "not a batchspawner trait: only the site's own script or code reads it")


def translate_settings(
    settings: Mapping[str, Any],
    where: str,
    backend: str,
    *,
    spawner_traits: frozenset[str],
    own_traits: frozenset[str],
) -> Translated:
    """Translate one mapping of batchspawner settings.

    ``where`` names the mapping in messages (``"c.SlurmSpawner"``, ``"profiles[slurm5]"``);
    ``spawner_traits`` are JupyterHub's ``Spawner`` traits (kept as they are),
    ``own_traits`` this project's spawner's (a name that is one of them is kept too).
    Commands (``exec_prefix``, ``batch_*_cmd``) are read together (:mod:`.commands`).
    """
    out = Translated()
    commands = {
        k: v
        for k, v in settings.items()
        if k == "exec_prefix" or (k.startswith("batch_") and k.endswith("_cmd"))
    }
    for key, value in settings.items():
        setting = f"{where}.{key}"
        if callable(value):
            out.drop(setting, "a function in the original file: its code is not translated")
        elif key in commands:
            continue
        elif key.startswith("req_"):
            _req(key, str(value), backend, out, where)
        elif key == "batch_script":
            if str(value):
                result = translate_script(str(value), backend)
                if result.template is not None:
                    out.template = result.template
                    if result.extra_directives:
                        out.values["job_extra_directives"] = list(result.extra_directives)
                for reason in result.not_carried:
                    out.drop(setting, reason)
        elif key == "batchspawner_singleuser_cmd":
            _launcher(str(value), out, setting)
        elif key == "cmd" and isinstance(value, str):
            out.values["cmd"] = shlex.split(value)  # batchspawner joins it into a shell line
        elif key == "startup_poll_interval":
            out.values["status_fast_interval"] = float(value)
        elif key == "state_exechost_exp":
            _node_address(str(value), out, setting)
        elif key in _NO_COUNTERPART:
            out.drop(setting, _NO_COUNTERPART[key])
        elif key in spawner_traits or key in own_traits:
            out.values[key] = value
        else:
            out.drop(setting, "no such setting here (not a trait of this project's spawner)")
    if commands:
        lines = translate_commands({k: str(v) for k, v in commands.items()}, backend, where)
        out.values.update(lines.values)
        out.not_carried.extend(lines.not_carried)
    return out


def _launcher(value: str, out: Translated, setting: str) -> None:
    """batchspawner's port-reporting wrapper -> ours, from the same directory of the node."""
    words = shlex.split(value)
    if len(words) == 1 and words[0].endswith("/batchspawner-singleuser"):
        out.values["launcher_command"] = [
            words[0][: -len("batchspawner-singleuser")] + "jupyterhub-hpc-singleuser"
        ]
    elif words == ["batchspawner-singleuser"]:
        return
    else:
        out.drop(
            setting,
            "a wrapper around batchspawner-singleuser: the job runs jupyterhub-hpc-singleuser "
            "(launcher_command), which must be installed in the node's environment",
        )


def _node_address(value: str, out: Translated, setting: str) -> None:
    """``state_exechost_exp`` (``\\1.sdsc.edu``, a match expansion of the host) -> ``node_address``."""
    if value == "":
        return
    for ref in ("\\g<1>", "\\1"):
        if ref in value:
            rest = value.replace(ref, "{host}")
            if "\\" not in rest:
                out.values["node_address"] = rest
                return
    out.drop(setting, "an expansion of a regular expression's groups other than the host's: no counterpart")
