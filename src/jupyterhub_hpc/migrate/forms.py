"""Spawn forms that are configuration data -> profiles and typed options (pure functions).

- jupyterhub_moss's ``partitions`` (one profile per partition: cores, GPUs, time limit,
  memory, reservation and the partition's environments as typed options, its maxima as
  ``partition_limits``);
- JupyterHub's ``Spawner.apply_user_options`` as a mapping (user option -> ``req_*`` trait);
- slurmformspawner's ``SbatchForm`` widgets (``{"def", "min", "max", "step", "lock"}``) and
  ``ui_args``.

An HTML ``options_form`` of one's own, or optionsspawner's field objects, are code: they
are listed as not carried over.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any

from ..request import walltime_text
from .batch import memory_text
from .model import NotCarried

__all__ = ["moss_profiles", "options_from_apply_user_options", "options_from_sbatchform"]

#: req_* trait -> a typed option of this project (its type and job field)
_REQ_OPTIONS: dict[str, dict[str, Any]] = {
    "req_runtime": {"type": "walltime", "display_name": "Time limit"},
    "req_memory": {"type": "memory", "display_name": "Memory"},
    "req_nprocs": {"type": "integer", "job_field": "cpus", "display_name": "CPU cores", "min": 1},
    "req_ngpus": {"type": "integer", "job_field": "gpus", "display_name": "GPUs", "min": 0},
    "req_gpus": {"type": "integer", "job_field": "gpus", "display_name": "GPUs", "min": 0},
    "req_nodes": {"type": "integer", "job_field": "nodes", "display_name": "Nodes", "min": 1},
    "req_partition": {"type": "partition", "display_name": "Partition"},
    "req_queue": {"type": "partition", "display_name": "Queue"},
    "req_account": {"type": "account", "display_name": "Account"},
    "req_qos": {"type": "qos", "display_name": "QoS"},
    "req_reservation": {"type": "reservation", "display_name": "Reservation", "remember": False},
    "req_gres": {"type": "text", "job_field": "gres", "display_name": "Generic resources (e.g. gpu:1)"},
}
_FREE_DIRECTIVES = (
    "directives written by the user reach the job script: refused on purpose; offer each "
    "resource as a typed option instead"
)


def options_from_apply_user_options(
    mapping: Mapping[str, Any], where: str
) -> tuple[dict[str, dict[str, Any]], list[NotCarried]]:
    """``{"runtime": "req_runtime", ...}`` -> typed options under the same names (the wire keys stay)."""
    options: dict[str, dict[str, Any]] = {}
    dropped: list[NotCarried] = []
    for name, trait in mapping.items():
        setting = f"{where}[{name!r}]"
        if not isinstance(trait, str):
            dropped.append(NotCarried(setting, "not a trait name (a function or value): not translated"))
        elif trait == "req_options":
            dropped.append(NotCarried(setting, _FREE_DIRECTIVES))
        elif trait in _REQ_OPTIONS:
            options[str(name)] = dict(_REQ_OPTIONS[trait])
        else:
            dropped.append(NotCarried(setting, f"{trait}: no typed option sets it here"))
    return options, dropped


def _environment_choices(
    envs: Mapping[str, Any], where: str, dropped: list[NotCarried]
) -> dict[str, dict[str, Any]]:
    choices: dict[str, dict[str, Any]] = {}
    ignored: set[str] = set()
    for index, (key, env) in enumerate(envs.items()):
        override: dict[str, Any] = {}
        prologue: list[str] = []
        modules = str(env.get("modules") or "").split()
        if modules:
            prologue.append("module load " + " ".join(modules))
        if env.get("prologue"):
            prologue.append(str(env["prologue"]))
        if prologue:
            override["job_script_prologue"] = "\n".join(prologue)
        if env.get("path") and env.get("add_to_path", True):
            override["path_prepend"] = [str(env["path"])]
        ignored |= set(env) - {"description", "modules", "prologue", "path", "add_to_path"}
        choice: dict[str, Any] = {"display_name": str(env.get("description") or key)}
        if index == 0:
            choice["default"] = True
        if override:
            choice["spawner_override"] = override
        choices[str(key)] = choice
    for name in sorted(ignored):
        dropped.append(
            NotCarried(f"{where}.jupyter_environments[*].{name}", "the form does not group or tag choices")
        )
    return choices


def moss_profiles(
    partitions: Mapping[str, Any], where: str
) -> tuple[list[dict[str, Any]], dict[str, dict[str, Any]], list[NotCarried]]:
    """One profile per moss partition, its ``partition_limits``, and what is not carried."""
    profiles: list[dict[str, Any]] = []
    limits: dict[str, dict[str, Any]] = {}
    dropped: list[NotCarried] = []
    for name, part in partitions.items():
        setting = f"{where}[{name!r}]"
        options: dict[str, dict[str, Any]] = {}
        override: dict[str, Any] = {"partition": str(name)}
        limit: dict[str, Any] = {}
        max_nprocs = part.get("max_nprocs")
        options["cpus"] = {
            "type": "integer",
            "job_field": "cpus",
            "display_name": "CPU cores",
            "min": 1,
            "default": 1,
        }
        if max_nprocs:
            options["cpus"]["max"] = int(max_nprocs)
            limit["max_cpus"] = int(max_nprocs)
        options["memory"] = {"type": "memory", "display_name": "Memory"}
        max_ngpus = int(part.get("max_ngpus") or 0)
        gpu = part.get("gpu")
        if max_ngpus > 0:
            options["gpus"] = {
                "type": "integer",
                "job_field": "gpus",
                "display_name": "GPUs",
                "min": 0,
                "max": max_ngpus,
                "default": 0,
            }
            limit["max_gpus"] = max_ngpus
            fields = str(gpu or "gpu:{}").split(":")
            if fields[0] == "gpu" and fields[-1] == "{}" and len(fields) in (2, 3):
                if len(fields) == 3:  # the type, asked only with GPUs (a type alone is refused)
                    options["gpu_type"] = {
                        "type": "choice",
                        "job_field": "gpu_type",
                        "display_name": "GPU type",
                        "when": {"gpus": {"min": 1}},
                        "choices": {fields[1]: {"display_name": fields[1], "default": True}},
                    }
            else:
                dropped.append(
                    NotCarried(f"{setting}.gpu", f"{gpu!r}: only gpu:{{}} or gpu:TYPE:{{}} has a counterpart")
                )
        if part.get("max_runtime"):
            seconds = int(part["max_runtime"])
            options["walltime"] = {
                "type": "walltime",
                "display_name": "Time limit",
                "max": walltime_text(seconds),
            }
            limit["max_walltime"] = walltime_text(seconds)
        options["reservation"] = {
            "type": "reservation",
            "display_name": "Reservation (optional)",
            "remember": False,
        }
        envs = part.get("jupyter_environments") or {}
        if envs:
            options["environment"] = {
                "type": "environment",
                "display_name": "Environment",
                "choices": _environment_choices(envs, setting, dropped),
            }
        if part.get("simple") is False:
            dropped.append(
                NotCarried(
                    f"{setting}.simple",
                    "moss's simple and advanced tabs: every profile shows all its options",
                )
            )
        unknown = set(part) - {
            "architecture",
            "description",
            "gpu",
            "max_ngpus",
            "max_nprocs",
            "max_runtime",
            "simple",
            "jupyter_environments",
        }
        for key in sorted(unknown):
            dropped.append(NotCarried(f"{setting}.{key}", "not a moss partition setting this tool knows"))
        profile: dict[str, Any] = {
            "display_name": str(part.get("description") or name),
            "slug": str(name),
            "spawner_override": override,
            "profile_options": options,
        }
        if part.get("architecture"):
            profile["description"] = f"{part.get('description') or name} ({part['architecture']})"
        profiles.append(profile)
        if limit:
            limits[str(name)] = limit
    dropped.append(
        NotCarried(
            f"{where} (the spawn page)",
            "moss's free fields (extra Slurm options, an environment path or modules of the user's, "
            "root_dir, output): " + _FREE_DIRECTIVES,
        )
    )
    return profiles, limits, dropped


_SBATCHFORM_DROPPED = {
    "gpus": "GRES choices that slurmformspawner reads from sinfo: write a gpus option "
    "(with gpu_type choices)",
    "oversubscribe": "--oversubscribe by the user: add it to job_extra_directives for everyone, or leave it",
    "feature": "several constraints chosen by the user: a choice option with a constraint override "
    "per choice",
}


def _hours(value: Any) -> str:
    return walltime_text(round(float(value) * 3600))


def _megabytes(value: Any) -> str:
    return memory_text(int(value))


def _same(value: Any) -> Any:
    return value


def options_from_sbatchform(
    form: Mapping[str, Any], ui_args: Mapping[str, Any], where: str
) -> tuple[dict[str, dict[str, Any]], dict[str, Any], list[NotCarried]]:
    """slurmformspawner's widgets -> typed options, fixed (``lock``) values as overrides."""
    options: dict[str, dict[str, Any]] = {}
    fixed: dict[str, Any] = {}
    dropped: list[NotCarried] = []
    kinds: dict[str, tuple[str, str | None, str]] = {
        "runtime": ("walltime", None, "Time limit"),
        "nprocs": ("integer", "cpus", "CPU cores"),
        "memory": ("memory", None, "Memory"),
        "partition": ("partition", None, "Partition"),
        "account": ("account", None, "Account"),
        "reservation": ("reservation", None, "Reservation"),
    }
    convert: dict[str, Callable[[Any], Any]] = {"runtime": _hours, "memory": _megabytes}
    for name, widget in form.items():
        setting = f"{where}.{name}"
        if name == "ui":
            if ui_args:
                options["ui"] = _ui_option(ui_args, widget, where, dropped)
            continue
        if name not in kinds:
            why = _SBATCHFORM_DROPPED.get(name, "no counterpart")
            dropped.append(NotCarried(setting, why))
            continue
        kind, job_field, label = kinds[name]
        if not isinstance(widget, Mapping):
            dropped.append(NotCarried(setting, "not a widget setting (a mapping of def/min/max/step/lock)"))
            continue
        change = convert.get(name, _same)
        target = job_field or name
        if widget.get("lock") and widget.get("def") not in (None, ""):
            fixed[target] = change(widget["def"])
            continue
        option: dict[str, Any] = {"type": kind, "display_name": label}
        if job_field:
            option["job_field"] = job_field
        for ours, theirs in (("min", "min"), ("max", "max"), ("default", "def")):
            if widget.get(theirs) not in (None, ""):
                option[ours] = change(widget[theirs]) if kind != "integer" else int(widget[theirs])
        if kind == "integer" and widget.get("step"):
            option["step"] = int(widget["step"])
        options[name] = option
    return options, fixed, dropped


def _ui_option(
    ui_args: Mapping[str, Any], widget: Any, where: str, dropped: list[NotCarried]
) -> dict[str, Any]:
    default = widget.get("def") if isinstance(widget, Mapping) else None
    choices: dict[str, dict[str, Any]] = {}
    for key, ui in ui_args.items():
        override: dict[str, Any] = {}
        url = ui.get("url") or ui.get("args")
        if isinstance(url, str) and url.startswith("/"):
            override["default_url"] = url
        elif url:
            dropped.append(
                NotCarried(
                    f"{where}.ui_args[{key!r}].args", "arguments of the server command: no counterpart"
                )
            )
        if ui.get("modules"):
            override["job_script_prologue"] = "module load " + " ".join(str(m) for m in ui["modules"])
        choice: dict[str, Any] = {"display_name": str(ui.get("name") or key)}
        if override:
            choice["spawner_override"] = override
        if key == default:
            choice["default"] = True
        choices[str(key)] = choice
    return {"type": "choice", "display_name": "User interface", "choices": choices}
