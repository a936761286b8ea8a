"""The catalogue of a module system: what users may pick, parsed from the tools' own JSON.

Pure functions over recorded text (no tool is run here):

- Lmod: ``$LMOD_DIR/spider -o spider-json $MODULEPATH`` (``{package: {modulefile: {fullName,
  Version, Description, whatis, hidden, wV, family, ...}}}``). The marked default is the entry whose
  ``wV`` starts with ``^``; without one, Lmod's default is the highest version, as here.
- Environment Modules (Tmod): ``module avail -j`` (4.5+; ``spider -j``, 5.6+, has the same shape):
  ``{modulepath: {name: {name, type, symbols, tags, pathname}}}``; the default carries the
  ``default`` symbol, otherwise the highest version is (Tmod's implicit default).

Hidden modules (Lmod's ``hidden``, a name part starting with ``.``, Tmod's ``hidden`` tags) are
never offered.
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterable, Mapping
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict

__all__ = [
    "Catalogue",
    "Module",
    "check_module_name",
    "parse_lmod_spider_json",
    "parse_tmod_avail_json",
]

Kind = Literal["lmod", "tmod"]

#: a module name: parts of letters, digits and ``._+-`` joined by ``/``; a part starts with a
#: letter, digit or ``_`` (no ``-`` that a tool would read as an option, no ``.``/``..``)
_PART = r"[A-Za-z0-9_][A-Za-z0-9._+-]*"
MODULE_NAME_PATTERN = rf"{_PART}(?:/{_PART})*"
_NAME = re.compile(rf"\A{MODULE_NAME_PATTERN}\Z")
MAX_NAME = 200


def check_module_name(text: object) -> str:
    """``text`` if it is a module name (``gcc``, ``gcc/12``, ``py-numpy/1.26+mkl``), else
    ``ValueError`` saying why: nothing a shell or the module tool would read as more than a name
    gets through (blanks, ``;$`()|&<>*?``, quotes, ``..``, a leading ``-`` or ``/``)."""
    if not isinstance(text, str):
        raise ValueError(f"a module name is text, not {type(text).__name__}")
    if not text:
        raise ValueError("a module name cannot be empty")
    if len(text) > MAX_NAME:
        raise ValueError(f"a module name has at most {MAX_NAME} characters")
    if not _NAME.match(text) or any(part in ("..", ".") for part in text.split("/")):
        raise ValueError(
            f"{text[:60]!r} is not a module name (letters, digits and . _ + - in parts joined by /)"
        )
    return text


class Module(BaseModel):
    """One loadable module version."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    #: the full name, as ``module load`` takes it (``gcc/12``)
    name: str
    #: the name without the version (``gcc``)
    package: str
    #: ``""`` for a module without versions
    version: str = ""
    #: the version ``module load <package>`` loads
    default: bool = False
    description: str = ""
    #: Lmod's family (only one module of a family is loaded at a time)
    family: str | None = None


def _version_key(version: str) -> tuple[tuple[int, int | str], ...]:
    """Natural order of versions: ``3.9 < 3.10 < 3.10.1``; numbers before words."""
    return tuple((0, int(p)) if p.isdigit() else (1, p) for p in re.findall(r"\d+|[A-Za-z]+", version))


class Catalogue(BaseModel):
    """The modules a cluster offers (hidden ones dropped), sorted by package then version."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    system: Kind
    modules: tuple[Module, ...] = ()

    @classmethod
    def of(cls, system: Kind, modules: Iterable[Module]) -> Catalogue:
        """A catalogue of ``modules`` in order, one default per package (the marked one, else the
        highest version)."""
        by_package: dict[str, list[Module]] = {}
        for module in modules:
            by_package.setdefault(module.package, []).append(module)
        ordered: list[Module] = []
        for package in sorted(by_package, key=str.lower):
            versions = sorted(
                {m.name: m for m in by_package[package]}.values(), key=lambda m: _version_key(m.version)
            )
            marked = [m for m in versions if m.default]
            default = marked[-1] if marked else versions[-1]
            ordered.extend(m.model_copy(update={"default": m is default}) for m in versions)
        return cls(system=system, modules=tuple(ordered))

    def find(self, name: str) -> Module | None:
        """The module ``name`` (``gcc/12``), or a package's default (``gcc``); None if neither."""
        package_default = None
        for module in self.modules:
            if module.name == name:
                return module
            if module.package == name and module.default:
                package_default = module
        return package_default

    def names(self) -> list[str]:
        return [m.name for m in self.modules]

    def to_json(self) -> dict[str, Any]:
        return {"system": self.system, "modules": [m.model_dump() for m in self.modules]}

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> Catalogue:
        return cls.model_validate(data)


def _hidden_name(name: str) -> bool:
    return any(part.startswith(".") for part in name.split("/"))


def _valid(name: str) -> bool:
    try:
        check_module_name(name)
    except ValueError:
        return False
    return True


def _description(entry: Mapping[str, Any]) -> str:
    text = entry.get("Description")
    if isinstance(text, str) and text.strip():
        return text.strip()
    for line in entry.get("whatis") or ():
        if isinstance(line, str) and line.lower().startswith("description:"):
            return line.split(":", 1)[1].strip()
    return ""


def parse_lmod_spider_json(text: str) -> Catalogue:
    """The catalogue in Lmod's ``spider -o spider-json`` output (Lmod 8.x)."""
    data = json.loads(text)
    if not isinstance(data, dict):
        raise ValueError("spider-json: not a JSON object")
    modules: list[Module] = []
    for package, files in data.items():
        if not isinstance(files, dict):
            continue
        for entry in files.values():
            if not isinstance(entry, dict):
                continue
            full = entry.get("fullName")
            if (
                not isinstance(full, str)
                or entry.get("hidden") is True
                or _hidden_name(full)
                or not _valid(full)
            ):
                continue
            raw_version = entry.get("Version")
            version = raw_version if isinstance(raw_version, str) else ""
            if version and full.endswith("/" + version):
                name_of_package = full[: -len(version) - 1]
            elif "/" in full:
                name_of_package, version = full.rsplit("/", 1)
            else:
                name_of_package, version = full, ""
            family = entry.get("family")
            modules.append(
                Module(
                    name=full,
                    package=name_of_package or str(package),
                    version=version,
                    default=str(entry.get("wV", "")).startswith("^"),
                    description=_description(entry),
                    family=family if isinstance(family, str) and family else None,
                )
            )
    return Catalogue.of("lmod", modules)


def _json_documents(text: str) -> list[Any]:
    """The JSON values one after another in ``text`` (Tmod prints one per sub-command)."""
    decoder = json.JSONDecoder()
    values: list[Any] = []
    at = 0
    while True:
        while at < len(text) and text[at].isspace():
            at += 1
        if at >= len(text):
            return values
        value, at = decoder.raw_decode(text, at)
        values.append(value)


def parse_tmod_avail_json(text: str) -> Catalogue:
    """The catalogue in Environment Modules' ``avail -j`` output (5.6's ``spider -j`` has the same
    shape), optionally followed by ``whatis -j`` (descriptions)."""
    documents = _json_documents(text)
    if not documents or not all(isinstance(d, dict) for d in documents):
        raise ValueError("avail -j: not a JSON object")
    whatis: dict[str, str] = {}
    found: dict[str, dict[str, Any]] = {}
    for document in documents:
        for entries in document.values():
            if not isinstance(entries, dict):
                continue
            for key, entry in entries.items():
                if not isinstance(entry, dict):
                    continue
                name = entry.get("name", key)
                if not isinstance(name, str):
                    continue
                if "type" in entry:
                    found.setdefault(name, entry)
                elif isinstance(entry.get("whatis"), list):
                    whatis[name] = " ".join(w for w in entry["whatis"] if isinstance(w, str)).strip()
    modules: list[Module] = []
    for name, entry in found.items():
        tags = entry.get("tags") or ()
        if entry.get("type") not in ("modulefile", "virtual") or _hidden_name(name) or "hidden" in tags:
            continue
        if not _valid(name):
            continue
        package, _, version = name.rpartition("/") if "/" in name else (name, "", "")
        modules.append(
            Module(
                name=name,
                package=package,
                version=version,
                default="default" in (entry.get("symbols") or ()),
                description=whatis.get(name, ""),
            )
        )
    return Catalogue.of("tmod", modules)
