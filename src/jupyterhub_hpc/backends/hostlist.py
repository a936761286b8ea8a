"""Slurm's compressed host lists (``cpu[1-3,07],gpu1``, ``r[1-2]n[1-2]``) expanded, as one pure
function shared by the job status parser and the reservation parser."""

from __future__ import annotations

import re

__all__ = ["MAX_NODES", "expand_hostlist"]

#: bounded: a node list of a huge job or reservation is summarised by its first nodes
MAX_NODES = 4096

_EMPTY = {"", "(NULL)", "N/A", "NONE"}
_RANGE = re.compile(r"\[([^\]]*)\]")


def expand_hostlist(text: str) -> tuple[str, ...]:
    """The host names of ``text`` in order, zero padding kept, at most :data:`MAX_NODES`.

    >>> expand_hostlist("cpu[1-3],gpu1")
    ('cpu1', 'cpu2', 'cpu3', 'gpu1')
    >>> expand_hostlist("n[08-10,12]")
    ('n08', 'n09', 'n10', 'n12')
    >>> expand_hostlist("r[1-2]n[1-2]")
    ('r1n1', 'r1n2', 'r2n1', 'r2n2')
    >>> expand_hostlist("(null)")
    ()

    A bracket that is not a list of numbers and ranges is kept as written (``n[a]``).
    """
    text = text.strip()
    if text.upper() in _EMPTY:
        return ()
    names: list[str] = []
    for item in _split_outside_brackets(text):
        _expand_into(item, names)
        if len(names) >= MAX_NODES:
            break
    return tuple(names[:MAX_NODES])


def _split_outside_brackets(text: str) -> list[str]:
    items, depth, current = [], 0, ""
    for char in text:
        depth += char == "["
        depth -= char == "]"
        if char == "," and depth == 0:
            items.append(current)
            current = ""
        else:
            current += char
    items.append(current)
    return [i for i in (s.strip() for s in items) if i]


def _expand_into(item: str, out: list[str]) -> None:
    match = _RANGE.search(item)
    if match is None:
        out.append(item)
        return
    head, tail = item[: match.start()], item[match.end() :]
    parts = match.group(1).split(",")
    if not all(_is_range(p) for p in parts):
        out.append(item)
        return
    for part in parts:
        low, _, high = part.partition("-")
        for number in range(int(low), int(high or low) + 1):
            _expand_into(f"{head}{number:0{len(low)}d}{tail}", out)
            if len(out) >= MAX_NODES:
                return


def _is_range(part: str) -> bool:
    low, dash, high = part.partition("-")
    return low.isdigit() and (not dash or high.isdigit())
