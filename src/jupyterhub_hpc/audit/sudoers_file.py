"""A reader of sudoers files, enough to audit the rules of the hub account.

It understands what sites write for a hub: aliases (``User_Alias``, ``Runas_Alias``,
``Cmnd_Alias``, ``Host_Alias``), ``Defaults`` lines, user specifications with a runas
list, tags and options, continuation lines and comments. It does not follow
``@include``/``#include`` lines (they are reported) and reads one ``host = commands``
part per user specification. Pure functions: text in, data out.
"""

from __future__ import annotations

import os
import re
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field

__all__ = ["DefaultsLine", "Grant", "SudoersFile", "applies_to", "grants_for", "parse_sudoers"]

#: the tags of a command specification (sudoers(5), "Tag_Spec")
TAGS = {
    "NOPASSWD",
    "PASSWD",
    "SETENV",
    "NOSETENV",
    "NOEXEC",
    "EXEC",
    "LOG_INPUT",
    "NOLOG_INPUT",
    "LOG_OUTPUT",
    "NOLOG_OUTPUT",
    "MAIL",
    "NOMAIL",
    "FOLLOW",
    "NOFOLLOW",
    "INTERCEPT",
    "NOINTERCEPT",
}
#: a tag and its opposite: the later one of a pair wins
_OPPOSITE = {
    "PASSWD": "NOPASSWD",
    "SETENV": "NOSETENV",
    "EXEC": "NOEXEC",
    "LOG_INPUT": "NOLOG_INPUT",
    "LOG_OUTPUT": "NOLOG_OUTPUT",
    "MAIL": "NOMAIL",
    "FOLLOW": "NOFOLLOW",
    "INTERCEPT": "NOINTERCEPT",
}
_OPPOSITE.update({v: k for k, v in list(_OPPOSITE.items())})
_OPTION = re.compile(
    r"^(ROLE|TYPE|CWD|CHROOT|TIMEOUT|NOTBEFORE|NOTAFTER|APPARMOR_PROFILE|PRIVS|LIMITPRIVS)=\S+\s*"
)
_TAG = re.compile(r"^([A-Z_]+)\s*:\s*")
_ALIAS_LINE = re.compile(r"^(User_Alias|Runas_Alias|Host_Alias|Cmnd_Alias|Cmd_Alias)\s+(.*)$")
_ALIAS_NAME = re.compile(r"^[A-Z][A-Z0-9_]*$")
_DEFAULTS = re.compile(r"^Defaults(?:([:@!>])\s*(\S+))?(?:\s+(.*))?$")
_INCLUDE = re.compile(r"^[#@]include(dir)?\s+(.+)$")
_COMMENT = re.compile(r"(^|\s)#(?![0-9])(?!include).*$")


@dataclass(frozen=True)
class Grant:
    """One command the listed users may run: ``command`` is ``ALL`` or ``path [args]`` as
    written (white space collapsed); ``runas`` is ``None`` when the spec names no runas
    list (sudo then runs the command as root only)."""

    users: tuple[str, ...]
    runas: tuple[str, ...] | None
    runas_groups: tuple[str, ...]
    tags: frozenset[str]
    command: str
    negated: bool
    line: int
    via: str = ""  # the Cmnd_Alias it came from

    @property
    def path(self) -> str:
        return self.command.split(" ", 1)[0]

    @property
    def args(self) -> str | None:
        """The argument part, None when the command takes any arguments."""
        parts = self.command.split(" ", 1)
        return parts[1] if len(parts) > 1 else None


@dataclass(frozen=True)
class DefaultsLine:
    """``Defaults`` (``kind`` ""), ``Defaults:users``, ``Defaults!cmnds``, ``Defaults>runas``
    or ``Defaults@hosts`` with its parameters (``binding``: the list after the sign)."""

    kind: str
    binding: tuple[str, ...]
    params: tuple[str, ...]
    line: int


@dataclass
class SudoersFile:
    grants: list[Grant] = field(default_factory=list)
    defaults: list[DefaultsLine] = field(default_factory=list)
    includes: list[str] = field(default_factory=list)
    aliases: dict[str, list[str]] = field(default_factory=dict)
    unparsed: list[tuple[int, str]] = field(default_factory=list)


def split_list(text: str, sep: str = ",") -> list[str]:
    """``text`` split at ``sep`` outside parentheses, brackets (``[:space:]`` in a regular
    expression) and double quotes, and not escaped."""
    out: list[str] = []
    depth, brackets, quoted, current = 0, 0, False, []
    i = 0
    while i < len(text):
        ch = text[i]
        if ch == "\\" and i + 1 < len(text):
            current.append(text[i : i + 2])
            i += 2
            continue
        if ch == '"':
            quoted = not quoted
        elif not quoted and ch == "(":
            depth += 1
        elif not quoted and ch == ")":
            depth -= 1
        elif not quoted and ch == "[":
            brackets += 1
        elif not quoted and ch == "]" and brackets:
            brackets -= 1
        if ch == sep and depth == 0 and brackets == 0 and not quoted:
            out.append("".join(current).strip())
            current = []
        else:
            current.append(ch)
        i += 1
    out.append("".join(current).strip())
    return [item for item in out if item]


def logical_lines(text: str) -> list[tuple[int, str]]:
    """(first line number, text) with continuation lines joined and comments removed."""
    out: list[tuple[int, str]] = []
    pending: list[str] = []
    start = 0
    for number, raw in enumerate(text.splitlines(), 1):
        if not pending:
            start = number
        if raw.endswith("\\") and not raw.endswith("\\\\"):
            pending.append(raw[:-1])
            continue
        pending.append(raw)
        joined = " ".join(pending).strip()
        pending = []
        if _INCLUDE.match(joined):
            out.append((start, joined))
            continue
        joined = _COMMENT.sub("", joined).strip()
        if joined:
            out.append((start, joined))
    if pending:
        out.append((start, " ".join(pending).strip()))
    return out


def _expand(items: Iterable[str], aliases: dict[str, list[str]], depth: int = 0) -> list[str]:
    """Alias names replaced by their members (recursively); ``!ALIAS`` negates each member."""
    out: list[str] = []
    for item in items:
        negated = item.startswith("!")
        name = item.lstrip("!").strip()
        if depth < 8 and _ALIAS_NAME.match(name) and name != "ALL" and name in aliases:
            for member in _expand(aliases[name], aliases, depth + 1):
                if negated:
                    member = member[1:] if member.startswith("!") else "!" + member
                out.append(member)
        else:
            out.append(("!" if negated else "") + name)
    return out


def _parse_runas(spec: str, aliases: dict[str, list[str]]) -> tuple[tuple[str, ...], tuple[str, ...]]:
    users, _, groups = spec.partition(":")
    return (
        tuple(_expand(split_list(users), aliases)),
        tuple(_expand(split_list(groups), aliases)),
    )


def _parse_spec(number: int, text: str, result: SudoersFile) -> None:
    left, eq, right = text.partition("=")
    head = re.sub(r"\s*,\s*", ",", left.strip()).split()
    if not eq or len(head) != 2:
        result.unparsed.append((number, text))
        return
    users = tuple(_expand(head[0].split(","), result.aliases))
    runas: tuple[str, ...] | None = None
    runas_groups: tuple[str, ...] = ()
    tags: set[str] = set()
    for item in split_list(right):
        rest = item.strip()
        if rest.startswith("("):
            close = rest.find(")")
            runas, runas_groups = _parse_runas(rest[1:close], result.aliases)
            rest = rest[close + 1 :].strip()
        while True:
            option = _OPTION.match(rest)
            if option:
                rest = rest[option.end() :]
                continue
            tag = _TAG.match(rest)
            if tag and tag.group(1) in TAGS:
                tags.discard(_OPPOSITE.get(tag.group(1), ""))
                tags.add(tag.group(1))
                rest = rest[tag.end() :]
                continue
            break
        command = " ".join(rest.split())
        negated = command.startswith("!")
        name = command.lstrip("!").strip()
        members = [name]
        via = ""
        if _ALIAS_NAME.match(name) and name != "ALL":
            if name not in result.aliases:
                result.unparsed.append((number, f"undefined alias {name}"))
                continue
            members, via = _expand([name], result.aliases), name
        for member in members:
            member_negated = negated != member.startswith("!")
            result.grants.append(
                Grant(
                    users,
                    runas,
                    runas_groups,
                    frozenset(tags),
                    " ".join(member.lstrip("!").split()),
                    member_negated,
                    number,
                    via,
                )
            )


def parse_sudoers(text: str) -> SudoersFile:
    result = SudoersFile()
    for number, line in logical_lines(text):
        include = _INCLUDE.match(line)
        if include:
            result.includes.append(include.group(2).strip())
            continue
        alias = _ALIAS_LINE.match(line)
        if alias:
            for part in split_list(alias.group(2), ":"):
                name, eq, members = part.partition("=")
                if eq and _ALIAS_NAME.match(name.strip()):
                    result.aliases[name.strip()] = split_list(members)
                else:
                    result.unparsed.append((number, line))
            continue
        defaults = _DEFAULTS.match(line)
        if defaults:
            kind, binding, params = defaults.groups()
            result.defaults.append(
                DefaultsLine(
                    kind or "",
                    tuple(_expand(split_list(binding or ""), result.aliases)),
                    tuple(split_list(params or "")),
                    number,
                )
            )
            continue
        _parse_spec(number, line, result)
    return result


def applies_to(items: Sequence[str], user: str, uid: int | None, groups: Iterable[str]) -> bool:
    """Does a (expanded) user list name ``user``: by name, ``#uid``, ``%group`` or ``ALL``,
    and no ``!`` entry excludes it?"""
    group_set = set(groups)

    def matches(entry: str) -> bool:
        if entry == "ALL" or entry == user:
            return True
        if uid is not None and entry == f"#{uid}":
            return True
        return entry.startswith("%") and entry[1:] in group_set

    positive = any(matches(e) for e in items if not e.startswith("!"))
    negative = any(matches(e[1:]) for e in items if e.startswith("!"))
    return positive and not negative


def grants_for(parsed: SudoersFile, user: str, uid: int | None, groups: Iterable[str]) -> list[Grant]:
    group_list = list(groups)
    return [g for g in parsed.grants if applies_to(g.users, user, uid, group_list)]


def program_name(path: str) -> str:
    return os.path.basename(path)
