"""How the fake ``condor_submit`` reads a submit description, after HTCondor's manual.

- a line ending with a backslash continues on the next one; a line starting with
  ``#`` is a comment; blank lines are ignored;
- ``key = value``: the key is case-insensitive, the value is the rest of the line
  with the blanks at both ends trimmed; ``+Attr = value`` sets a job ClassAd
  attribute;
- ``$(NAME)`` is a macro: ``$(DOLLAR)`` is ``$``, ``$(Cluster)``/``$(ClusterId)`` and
  ``$(Process)``/``$(ProcId)`` the job's id, any other name an earlier command's
  value (empty when there is none);
- ``queue [N]`` submits; ``-append`` commands come just before it;
- ``environment = "A=1 B='two words' C='it''s'"`` (the new syntax: double quotes
  around it all, ``""`` for a double quote, single quotes around a value with
  blanks, ``''`` for a single quote in them); ``A=1;B=2`` (the old one).

Standard library only.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field

MACRO = re.compile(r"\$\(([A-Za-z_][A-Za-z0-9_.]*)\)")


class DescriptionError(ValueError):
    """The description is not one condor_submit takes (its message is the error text)."""


@dataclass
class Description:
    commands: dict[str, str] = field(default_factory=dict)
    attributes: dict[str, str] = field(default_factory=dict)
    count: int = 0

    def get(self, key: str, default: str = "") -> str:
        return self.commands.get(key.lower(), default)


def logical_lines(text: str) -> list[str]:
    lines: list[str] = []
    pending = ""
    for raw in text.splitlines():
        if raw.endswith("\\"):
            pending += raw[:-1]
            continue
        lines.append(pending + raw)
        pending = ""
    if pending:
        lines.append(pending)
    return lines


def expand(value: str, commands: dict[str, str], cluster: int, process: int = 0) -> str:
    def one(match: re.Match[str]) -> str:
        name = match.group(1).lower()
        fixed = {"dollar": "$", "cluster": str(cluster), "clusterid": str(cluster)}
        fixed.update(process=str(process), procid=str(process))
        return fixed[name] if name in fixed else commands.get(name, "")

    return MACRO.sub(one, value)


def parse(text: str, appended: list[str], cluster: int) -> Description:
    """The description of ``text`` plus the ``-append`` commands, with macros expanded."""
    lines = [ln.strip() for ln in logical_lines(text)]
    lines = [ln for ln in lines if ln and not ln.startswith("#")]
    queue_at = next((i for i, ln in enumerate(lines) if ln.split()[0].lower() == "queue"), None)
    if queue_at is None:
        raise DescriptionError("ERROR: the submit description has no queue statement")
    lines[queue_at:queue_at] = [a.strip() for a in appended]
    desc = Description()
    for line in lines:
        words = line.split()
        if words[0].lower() == "queue":
            desc.count = int(words[1]) if len(words) > 1 else 1
            break
        key, eq, value = line.partition("=")
        if not eq or not key.strip():
            raise DescriptionError(f"ERROR: Parse error in submit file: {line!r}")
        key = key.strip()
        if key.startswith("+"):
            desc.attributes[key[1:]] = expand(value.strip(), desc.commands, cluster)
        else:
            desc.commands[key.lower()] = expand(value.strip(), desc.commands, cluster)
    return desc


def environment(value: str) -> dict[str, str]:
    """The variables of an ``environment`` command (its value, macros expanded)."""
    value = value.strip()
    if not value.startswith('"'):
        pairs = [p for p in value.split(";") if p]
        return dict(p.partition("=")[::2] for p in pairs)
    if len(value) < 2 or not value.endswith('"'):
        raise DescriptionError(f"ERROR: environment: unterminated double quote: {value}")
    body = value[1:-1].replace('""', '"')
    found: dict[str, str] = {}
    i = 0
    while i < len(body):
        if body[i] in " \t":
            i += 1
            continue
        name_end = body.index("=", i)
        name, i = body[i:name_end], name_end + 1
        chars: list[str] = []
        while i < len(body) and body[i] not in " \t":
            if body[i] == "'":
                i += 1
                while True:
                    if i >= len(body):
                        raise DescriptionError(f"ERROR: environment: unterminated single quote: {value}")
                    if body[i] == "'" and body.startswith("''", i):
                        chars.append("'")
                        i += 2
                    elif body[i] == "'":
                        i += 1
                        break
                    else:
                        chars.append(body[i])
                        i += 1
            else:
                chars.append(body[i])
                i += 1
        found[name] = "".join(chars)
    return found
