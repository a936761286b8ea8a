"""A batchspawner / wrapspawner / jupyterhub-moss configuration -> a :class:`~.model.Migration`.

:func:`migrate_sections` is pure: configuration data in (``{section: {trait: value}}``, as
:func:`~.load.sections_of` reads it), the new configuration and the list of what is not
carried over out. The names of the traits of the two spawner classes involved
(JupyterHub's ``Spawner`` and this project's) are passed in, so the function imports no
spawner.

Which values a job gets follows batchspawner: the class sections in the order of its class
hierarchy (``Spawner``, ``BatchSpawnerBase``, ``SlurmSpawner``, then the configured
subclass), then, for a wrapspawner profile, the profile's own config dict on top.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from .batch import SCHEDULERS, translate_settings
from .forms import moss_profiles, options_from_apply_user_options, options_from_sbatchform
from .model import MigrateError, Migration, NotCarried, Sections

__all__ = ["BACKEND_CLASSES", "migrate_sections", "short_name"]

#: backend -> (spawner_class entry point, the class's config section)
BACKEND_CLASSES = {
    "slurm": ("slurm", "SlurmSpawner"),
    "pbs": ("pbs", "PBSSpawner"),
    "torque": ("torque", "TorqueSpawner"),
    "sge": ("sge", "SGESpawner"),
    "lsf": ("lsf", "LSFSpawner"),
    "htcondor": ("htcondor", "HTCondorSpawner"),
    "local": ("local-hpc", "LocalHPCSpawner"),
}
#: sections that hold batchspawner settings, in the order batchspawner's classes inherit them
_BATCH_BASES = ("BatchSpawnerBase", "BatchSpawnerRegexStates", "UserEnvMixin")
#: the scheduler classes of batchspawner (and the spawners built on them), by backend, in MRO order
_SCHEDULER_SECTIONS = {
    "slurm": ("SlurmSpawner", "MultiSlurmSpawner", "MOSlurmSpawner", "SlurmFormSpawner"),
    "torque": ("TorqueSpawner", "MoabSpawner"),
    "pbs": ("TorqueSpawner", "PBSSpawner"),
    "sge": ("GridengineSpawner",),
    "lsf": ("LsfSpawner",),
    "htcondor": ("CondorSpawner",),
    "local": (),
}
_WRAPPERS = ("WrapSpawner", "ProfilesSpawner", "DockerProfilesSpawner", "OptionsFormSpawner")
_LOCAL = ("LocalProcessSpawner", "SimpleLocalProcessSpawner")
#: keys the sections of wrappers, moss and slurmformspawner hold that are read here, not as traits
_STRUCTURE = {
    "profiles",
    "default_profiles",
    "default_profile",
    "child_class",
    "child_config",
    "form_fields",
    "partitions",
    "ui_args",
    "slurm_bin_path",
    "submit_template_path",
    "slurm_info_cmd",
    "disable_form",
    "form_template_path",
    "error_template_path",
}


def short_name(value: Any) -> str:
    """The class name of ``"batchspawner.SlurmSpawner"`` (or of a class)."""
    if isinstance(value, type):
        return value.__name__
    return str(value).rsplit(".", 1)[-1].strip()


def _backend_of(name: str) -> str | None:
    if name in SCHEDULERS:
        return SCHEDULERS[name]
    for suffix, backend in (("SlurmSpawner", "slurm"), ("TorqueSpawner", "torque"), ("PBSSpawner", "pbs")):
        if name.endswith(suffix):
            return backend
    return None


def _find(sections: Sections, names: tuple[str, ...], key: str) -> tuple[str, Any] | None:
    for name in names:
        if key in sections.get(name, {}):
            return name, sections[name][key]
    return None


def migrate_sections(
    sections: Sections,
    *,
    spawner_traits: frozenset[str],
    own_traits: frozenset[str],
    scheduler: str | None = None,
    template_dir: str = ".",
) -> Migration:
    """Translate a whole configuration; see the module docstring.

    ``scheduler`` names the backend when the configuration does not (a spawner class of
    the site's own, defined in code). ``template_dir`` is where translated job-script
    templates are to be written (their paths go into the configuration).
    """
    hub = sections.get("JupyterHub", {})
    original = hub.get("spawner_class", "")
    own = short_name(original) if original else ""
    names = (own, *_WRAPPERS) if own else _WRAPPERS
    dropped: list[NotCarried] = []

    profiles_found = _find(sections, names, "profiles") or _find(sections, names, "default_profiles")
    child_found = _find(sections, names, "child_class")
    raw_profiles: list[tuple[str, str, Any, Mapping[str, Any]]] = []
    if profiles_found is not None:
        for index, entry in enumerate(profiles_found[1]):
            if not isinstance(entry, list | tuple) or len(entry) < 4:
                dropped.append(
                    NotCarried(
                        f"c.{profiles_found[0]}.profiles[{index}]",
                        "not a (display, key, class, config) tuple",
                    )
                )
                continue
            display, key, klass, conf = entry[:4]
            raw_profiles.append((str(display), str(key), klass, conf if isinstance(conf, Mapping) else {}))

    # the backend: from the profiles' classes, the configured class, the wrapped child, the sections
    candidates = [_backend_of(short_name(p[2])) for p in raw_profiles]
    if child_found is not None:
        candidates.append(_backend_of(short_name(child_found[1])))
    candidates.append(_backend_of(own))
    candidates.extend(_backend_of(name) for name in sections)
    backend = next((b for b in candidates if b), None) or scheduler
    if backend is None and any(short_name(p[2]) in _LOCAL for p in raw_profiles):
        backend = "local"  # only local servers (and profiles without a counterpart)
    if backend is None:
        raise MigrateError(
            f"cannot tell which scheduler {original or 'the spawner'} submits to (no batchspawner class "
            "in the configuration): pass --scheduler slurm (or pbs, torque, sge, lsf, htcondor)"
        )
    if backend not in BACKEND_CLASSES:
        raise MigrateError(f"no backend here for {backend!r}")

    kinds = {
        _backend_of(short_name(p[2])) or ("local" if short_name(p[2]) in _LOCAL else None)
        for p in raw_profiles
    }
    mixed = bool(kinds - {backend, None})
    entry_point, section = ("hpc", "HPCSpawner") if mixed else BACKEND_CLASSES[backend]
    migration = Migration(spawner_class=entry_point, section=section, original=str(original))
    if mixed:
        migration.traits["backend"] = backend

    def translate(values: Mapping[str, Any], where: str) -> dict[str, Any]:
        result = translate_settings(
            values, where, backend, spawner_traits=spawner_traits, own_traits=own_traits
        )
        migration.not_carried.extend(result.not_carried)
        if result.template is not None:
            name = (
                "jupyterhub-hpc-job.sh.j2"
                if where.startswith("c.")
                else f"jupyterhub-hpc-job-{where[9:-1]}.sh.j2"
            )
            path = f"{template_dir.rstrip('/')}/{name}"
            migration.templates[path] = result.template
            result.values["job_script_template"] = path
        return result.values

    # -- class sections, in batchspawner's inheritance order -------------------------------
    spawner_section = dict(sections.get("Spawner", {}))
    apply_map = spawner_section.pop("apply_user_options", None)
    for key in ("options_form", "options_from_form"):
        if key in spawner_section:
            spawner_section.pop(key)
            dropped.append(
                NotCarried(
                    f"c.Spawner.{key}",
                    "the form is built from profile_list (an HTML form of one's own is not read)",
                )
            )
    for key, value in translate(spawner_section, "c.Spawner").items():
        if key in spawner_traits:
            migration.spawner_traits[key] = value
        else:  # a trait of this project's spawner (startup_poll_interval -> status_fast_interval)
            migration.traits[key] = value
    order = [*_BATCH_BASES, *_SCHEDULER_SECTIONS[backend]]
    child_class = short_name(child_found[1]) if child_found is not None else None
    for extra in (own, child_class):
        if extra and extra not in order and extra not in _WRAPPERS:
            order.append(extra)
    # the batch classes' sections apply to batch profiles only: with a local profile as well,
    # they become those profiles' overrides (below); the wrapper's apply to every profile
    batch_values: dict[str, Any] = {}
    for name in [n for n in order if n in sections]:
        values = {k: v for k, v in sections[name].items() if k not in _STRUCTURE}
        batch_values.update(translate(values, f"c.{name}"))
    for name in [n for n in _WRAPPERS if n in sections]:
        values = {k: v for k, v in sections[name].items() if k not in _STRUCTURE}
        wrapper = translate(values, f"c.{name}")
        migration.traits.update(wrapper)
        for key in wrapper:
            batch_values.pop(key, None)  # wrapspawner links the wrapper's traits to the child
    if not mixed:
        migration.traits.update(batch_values)
    if child_found is not None:
        conf = _find(sections, names, "child_config")
        if conf is not None and isinstance(conf[1], Mapping):
            migration.traits.update(translate(conf[1], f"c.{conf[0]}.child_config"))
        elif conf is not None:
            dropped.append(NotCarried(f"c.{conf[0]}.child_config", "not a mapping of trait values"))
    form = _find(sections, names, "form_fields")
    if form is not None:
        dropped.append(
            NotCarried(
                f"c.{form[0]}.form_fields",
                "optionsspawner's field objects are code: write typed profile_options",
            )
        )

    # -- profiles ---------------------------------------------------------------------------
    default_profile = _find(sections, names, "default_profile")
    for display, key, klass, conf in raw_profiles:
        cname = short_name(klass)
        pbackend = _backend_of(cname)
        where = f"profiles[{key}]"
        if pbackend is None and cname not in _LOCAL:
            dropped.append(
                NotCarried(
                    where,
                    f"{klass}: no counterpart (this project starts batch jobs, or local servers for testing)",
                )
            )
            continue
        if pbackend is not None and cname not in SCHEDULERS:
            dropped.append(
                NotCarried(
                    f"{where}.class",
                    f"{klass} is a subclass of one of batchspawner's: its code (script, defaults) is not "
                    "configuration; only its configured values are carried",
                )
            )
        if pbackend is not None and pbackend != backend:
            dropped.append(
                NotCarried(where, f"a second scheduler ({pbackend}): one backend per migrated file")
            )
            continue
        override = translate(conf, where)
        if mixed and pbackend is not None:
            override = {**batch_values, **override}
        profile: dict[str, Any] = {"display_name": display, "slug": key}
        if mixed:
            profile["backend"] = "local" if pbackend is None else backend
        if default_profile is not None and default_profile[1] == key:
            profile["default"] = True
        if override:
            profile["spawner_override"] = override
        migration.profile_list.append(profile)

    # -- moss partitions, forms as data -------------------------------------------------------
    partitions = _find(sections, (own, "MOSlurmSpawner"), "partitions")
    if partitions is not None and isinstance(partitions[1], Mapping):
        profiles, limits, more = moss_profiles(partitions[1], f"c.{partitions[0]}.partitions")
        migration.profile_list.extend(profiles)
        migration.partition_limits.update(limits)
        dropped.extend(more)
    form_options: dict[str, dict[str, Any]] = {}
    fixed: dict[str, Any] = {}
    if isinstance(apply_map, Mapping):
        options, more = options_from_apply_user_options(apply_map, "c.Spawner.apply_user_options")
        form_options.update(options)
        dropped.extend(more)
    elif apply_map is not None:
        dropped.append(NotCarried("c.Spawner.apply_user_options", "a function: its code is not translated"))
    if "SbatchForm" in sections:
        ui_args = _find(sections, (own, "SlurmFormSpawner"), "ui_args")
        options, fixed, more = options_from_sbatchform(
            sections["SbatchForm"], ui_args[1] if ui_args else {}, "c.SbatchForm"
        )
        form_options.update(options)
        dropped.extend(more)
    for key in ("submit_template_path", "form_template_path", "error_template_path"):
        found = _find(sections, (own, "SlurmFormSpawner"), key)
        if found is not None:
            dropped.append(NotCarried(f"c.{found[0]}.{key}", "a Jinja2 file of slurmformspawner's: not read"))
    bin_path = _find(sections, (own, "SlurmFormSpawner"), "slurm_bin_path")
    if bin_path is not None:
        base = str(bin_path[1]).rstrip("/")
        programs = ("sbatch", "squeue", "scancel", "sacct", "sinfo", "sacctmgr")
        migration.traits["scheduler_commands"] = {
            **{p: f"{base}/{p}" for p in programs},
            **migration.traits.get("scheduler_commands", {}),
        }
    info = _find(sections, (own, "MOSlurmSpawner"), "slurm_info_cmd")
    if info is not None:
        dropped.append(
            NotCarried(
                f"c.{info[0]}.slurm_info_cmd",
                "partition limits come from the project's own sinfo query (profile_live_limits)",
            )
        )
    if form_options or fixed:
        if not migration.profile_list:
            migration.profile_list.append({"display_name": "Default", "slug": "default"})
        for profile in migration.profile_list:
            if profile.get("backend", backend) != backend:
                continue
            profile.setdefault("profile_options", {}).update(form_options)
            if fixed:
                profile.setdefault("spawner_override", {}).update(fixed)

    _hoist_common(migration, backend)

    # -- everything else of the file ------------------------------------------------------------
    read = {"Spawner", *order, *_WRAPPERS, "SbatchForm", "SlurmFormSpawner", "MOSlurmSpawner", own}
    for name, values in sections.items():
        if name in read:
            continue
        for key in values:
            if name == "JupyterHub" and key == "spawner_class":
                continue
            dropped.append(
                NotCarried(
                    f"c.{name}.{key}", "not a spawner setting: it stays as it is in the rest of the file"
                )
            )
    unique: list[NotCarried] = []
    for item in dropped + migration.not_carried:
        if item not in unique:
            unique.append(item)
    migration.not_carried = unique
    return migration


def _hoist_common(migration: Migration, backend: str) -> None:
    """An override every profile has, with the same value, becomes the class's trait: the
    same jobs, a shorter list (wrapspawner sites often repeat a default dict in each profile)."""
    profiles = migration.profile_list
    if len(profiles) < 2 or any(p.get("backend", backend) != backend for p in profiles):
        return
    overrides = [p.get("spawner_override", {}) for p in profiles]
    for key in list(overrides[0]):
        value = overrides[0][key]
        if all(key in o and o[key] == value for o in overrides[1:]):
            migration.traits[key] = value
            for profile, override in zip(profiles, overrides, strict=True):
                del override[key]
                if not override:
                    profile.pop("spawner_override", None)
