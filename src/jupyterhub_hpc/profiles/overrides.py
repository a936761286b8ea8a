"""The hub-start check of every value in the profiles' overrides, through the types that read it.

An override is the admin's value, so a bad one is the admin's error, found when the hub
starts, never a user's at their start (``Invalid option 'profile': ...``). Each value
(of ``spawner_override``/``kubespawner_override`` on profiles, options, choices and
write-ins, and a profile's ``backend``/``cluster``) goes through:

* the job request's own field rule for a job field (``partition``, ``memory``,
  ``walltime``, ``nodes``, ``cpus``, ...: :class:`~jupyterhub_hpc.request.JobRequest`),
  as :func:`~.validate.resolve` will read it;
* the spawner's trait, set and undone exactly as a start applies it
  (:meth:`~.mixin.ProfilesMixin.apply_profile_overrides`), so ``memory = "4gigs"`` is
  refused by the same :class:`~jupyterhub_hpc.units.MemoryTrait` as in the config.

``{value}`` in an option's override is replaced as at a start: by each choice's key, by
the option's bounds and default for numbers; a value that depends on what a user
writes in is left to the start. Callables are left to the start too.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from typing import Any

from traitlets import TraitError

from ..request import JobRequest, RequestError, shown
from ..units import UnitTraitError
from .model import JOB_FIELDS, Option, Profile, ProfileConfigError, ProfileList
from .validate import _substitute, wire_value

__all__ = ["check_override_values"]

PLACEHOLDER = "{value}"


def _has_placeholder(value: Any) -> bool:
    if isinstance(value, str):
        return PLACEHOLDER in value
    if isinstance(value, list | tuple):
        return any(_has_placeholder(v) for v in value)
    if isinstance(value, Mapping):
        return any(_has_placeholder(v) for v in value.values())
    return False


def _dicts(path: str, item: Any) -> Iterator[tuple[str, Mapping[str, Any]]]:
    """An item's two override dicts, each with its path."""
    for name in ("kubespawner_override", "spawner_override"):
        yield f"{path}.{name}", getattr(item, name)


def _number_texts(option: Option) -> list[str]:
    """What ``{value}`` becomes for a numeric option at its bounds and default."""
    numbers = [n for n in (option.bound("min"), option.bound("max")) if n is not None]
    if option.default is not None:
        numbers.append(option.parse_number(option.default))
    return [str(wire_value(option, n)) for n in numbers]


def _cases(where: str, profile: Profile) -> Iterator[tuple[str, str, Mapping[str, Any]]]:
    """(path, who sets it, overrides) for everything of ``profile`` that sets traits."""
    who = f"profile {profile.slug!r}"
    for path, values in _dicts(where, profile):
        yield path, who, values
    named = {k: getattr(profile, k) for k in ("backend", "cluster") if getattr(profile, k) is not None}
    if profile.container is not None:
        named["container_image"] = profile.container
    yield where, who, named
    for key, option in profile.profile_options.items():
        base = f"{where}.profile_options.{key}"
        option_who = f"{who}, option {key!r}"
        texts = list(option.choices) or (
            _number_texts(option) if option.type in ("integer", "memory", "walltime") else []
        )
        for path, values in _dicts(base, option):
            yield path, option_who, values  # without the values that depend on the user's
            for text in texts:
                yield path, f"{option_who} = {text!r}", _substitute(dict(values), text)
        for ckey, choice in option.choices.items():
            for path, values in _dicts(f"{base}.choices.{ckey}", choice):
                yield path, f"{option_who}, choice {ckey!r}", values
        for path, values in _dicts(f"{base}.unlisted_choice", option.unlisted_choice):
            yield path, f"{option_who}, its write-in", values


def _check_value(spawner: Any, where: str, who: str, key: str, value: Any) -> None:
    def fail(reason: str) -> ProfileConfigError:
        return ProfileConfigError(where, f"{who} sets {key} = {shown(value)}: {reason}")

    if key in JOB_FIELDS:
        try:
            JobRequest.from_mapping({key: value})
        except RequestError as exc:
            raise fail(exc.reason) from None
    if spawner is None or not spawner.has_trait(key):
        return
    if key == "container_image" and value:
        # the listed names are another trait's, which the trait's own check cannot see in order
        listed = [entry.get("name") for entry in getattr(spawner, "container_images", [])]
        if value not in listed:
            raise fail(f"not one of container_images ({', '.join(map(str, listed)) or 'none listed'})")
    try:
        spawner.apply_profile_overrides([(key, value)])
    except UnitTraitError as exc:
        raise fail(exc.reason) from None
    except (TraitError, ValueError, TypeError) as exc:
        raise fail(str(exc)) from None
    finally:
        spawner.undo_profile_overrides()


def _check_whole_job(spawner: Any, where: str, profile: Profile) -> None:
    """A profile's fixed values together (``spawner_override``, ``backend``, ``cluster``) as
    the job its default start asks for: fields that exclude each other (``gpus`` and a
    ``gpu`` in ``gres``) and fields its scheduler cannot ask for (``gres`` on LSF, several
    partitions on PBS) are the admin's error too. Only for spawners of this package."""
    if spawner is None or not hasattr(spawner, "job_request"):
        return
    fixed = {
        key: value
        for key, value in {**profile.kubespawner_override, **profile.spawner_override}.items()
        if spawner.has_trait(key) and not callable(value) and not _has_placeholder(value)
    }
    fixed.update({k: getattr(profile, k) for k in ("backend", "cluster") if getattr(profile, k) is not None})
    try:
        spawner.apply_profile_overrides(list(fixed.items()))
        spawner.scheduler.check_request(spawner.job_request())
    except RequestError as exc:
        raise ProfileConfigError(
            where, f"profile {profile.slug!r} asks for a job that is refused: {exc}"
        ) from None
    finally:
        spawner.undo_profile_overrides()


def check_override_values(profiles: ProfileList, spawner: Any = None) -> None:
    """Raise :class:`~.model.ProfileConfigError` for the first override value that a start
    would refuse, naming its path, the profile (and option, choice) and the value.

    ``spawner``: an instance of the hub's spawner class (built from the configuration) whose
    traits check the values; without it only the job fields are checked.
    """
    for i, profile in enumerate(profiles.profiles):
        for path, who, overrides in _cases(f"profile_list[{i}]", profile):
            for key, value in overrides.items():
                if not callable(value) and not _has_placeholder(value):
                    _check_value(spawner, f"{path}.{key}", who, key, value)
        _check_whole_job(spawner, f"profile_list[{i}]", profile)
