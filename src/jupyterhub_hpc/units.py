"""Trait types for the units of a job: memory, walltime and a port range, parsed once, at config load.

Like JupyterHub's own ``ByteSpecification``, each type parses the admin's text when the
value is set (from ``jupyterhub_config.py``, a profile's override, or code) and stores it
in canonical units:

* :class:`MemoryTrait`: ``"8G"``, ``"512M"`` or a number of MiB -> whole MiB (``int``);
* :class:`WalltimeTrait`: ``"08:00:00"``, ``"1-00:00:00"``, ``"90"`` or a number of
  minutes -> :class:`~jupyterhub_hpc.request.Seconds` (an ``int`` of seconds);
* :class:`PortRangeTrait`: ``"9000-9100"`` -> a
  :class:`~jupyterhub_hpc.singleuser.portrange.PortRange`, ``""`` -> ``None``.

The text is read by the very functions that read a user's request
(:func:`~jupyterhub_hpc.request.check_memory`, :func:`~jupyterhub_hpc.request.check_walltime`)
and the launcher's ``--port-range``
(:func:`~jupyterhub_hpc.singleuser.portrange.parse_port_range`), so what the hub accepts
from its admin is what it accepts from a user and what the job reads. A stored value set
again means the same (a :class:`~jupyterhub_hpc.request.Seconds` is not taken for minutes).

A bad value raises :class:`UnitTraitError` (a ``TraitError``) naming the trait and the
value: ``SlurmSpawner.memory: not a memory size: '4gigs' (...)``. The spawner is built
lazily per user, so the hub checks its configuration at start with
:func:`~jupyterhub_hpc.startcheck.check_spawner_config` (called by ``check_profiles(c)``).
"""

from __future__ import annotations

from typing import Any, TypeVar

from traitlets import TraitError, TraitType

from .request import Seconds, check_memory, check_walltime, shown, walltime_text
from .singleuser.portrange import PortRange, parse_port_range

__all__ = ["MemoryTrait", "PortRange", "PortRangeTrait", "UnitTraitError", "WalltimeTrait"]

T = TypeVar("T")


class UnitTraitError(TraitError):
    """A value a unit trait cannot read: ``trait`` (``Class.name``), ``value`` and ``reason``."""

    def __init__(self, trait: str, value: object, reason: str) -> None:
        super().__init__(f"{trait}: {reason}")
        self.trait = trait
        self.value = value
        self.reason = reason


class _UnitTrait(TraitType[T, Any]):
    """A trait whose value is parsed by :meth:`parse` when it is set; the default is
    parsed at class definition (a bad default is a programming error, found at import)."""

    def __init__(self, default_value: Any, **kwargs: Any) -> None:
        self._default_text = default_value
        super().__init__(self.parse(default_value), **kwargs)

    def parse(self, value: Any) -> T:
        raise NotImplementedError

    def validate(self, obj: Any, value: Any) -> T:
        try:
            return self.parse(value)
        except ValueError as exc:
            owner = type(obj).__name__ if obj is not None else "config"
            reason = str(exc)
            if shown(value) not in reason:
                reason = f"{reason} (got {shown(value)})"
            raise UnitTraitError(f"{owner}.{self.name}", value, reason) from None

    def from_string(self, s: str) -> Any:
        """Command-line text as it is: :meth:`validate` parses it when it is set."""
        return s

    def default_value_repr(self) -> str:
        """The default as an admin writes it (``'1G'``, ``'08:00:00'``), for ``--help-all``."""
        return repr(self._default_text)


class MemoryTrait(_UnitTrait[int]):
    """Memory per node, stored as whole MiB: ``"8G"``, ``"512M"``, ``"1.5GiB"`` or an int of MiB."""

    info_text = "a memory size such as '4G' or '512M' (a bare number is MiB)"

    def parse(self, value: Any) -> int:
        return check_memory(value)


class WalltimeTrait(_UnitTrait[Seconds]):
    """A time limit, stored as :class:`~jupyterhub_hpc.request.Seconds`: ``"08:00:00"``,
    ``"1-00:00:00"``, ``"90"`` or an int of minutes (Slurm's ``--time`` forms)."""

    info_text = "a time limit such as '08:00:00', '1-00:00:00' or minutes"

    def parse(self, value: Any) -> Seconds:
        return check_walltime(value)

    def default_value_repr(self) -> str:
        text = self._default_text
        return repr(text if isinstance(text, str) else walltime_text(self.default_value))


class PortRangeTrait(_UnitTrait[PortRange | None]):
    """Ports ``"LOW-HIGH"``, stored as a :class:`PortRange`; ``""`` or ``None``: no range."""

    info_text = "a port range 'LOW-HIGH', or '' for any port"
    allow_none = True

    def parse(self, value: Any) -> PortRange | None:
        if value is None or value == "":
            return None
        if isinstance(value, PortRange):
            return value
        if not isinstance(value, str):
            raise ValueError(f"must be text LOW-HIGH such as '9000-9100' (got {shown(value)})")
        return parse_port_range(value)
