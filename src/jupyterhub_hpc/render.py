"""Job-script rendering: Jinja2 with shell-quoting on by default.

Every ``{{ value }}`` in a template is passed through :func:`shlex.quote`
unless the template marks it ``| safe`` (used only for admin-written text and
for directive lines built from a validated :class:`~jupyterhub_hpc.request.JobRequest`).
Undefined names are errors (``StrictUndefined``), not empty strings.
"""

from __future__ import annotations

import shlex
from collections.abc import Iterable, Mapping, Sequence
from pathlib import Path
from typing import Any

import jinja2

__all__ = ["Safe", "check_directive", "directive_lines", "render_script"]

TEMPLATE_DIR = Path(__file__).parent / "backends" / "templates"


class Safe(str):
    """A string the template writes as it is (admin text, prepared directive lines)."""


def _finalize(value: Any) -> str:
    if isinstance(value, Safe):
        return str(value)
    if isinstance(value, bool):
        return "1" if value else "0"
    if isinstance(value, int):
        return str(value)
    return shlex.quote(str(value))


def _safe(value: Any) -> Safe:
    return Safe(value)


def _argv(values: Iterable[Any]) -> Safe:
    """A command line from a list: each element quoted on its own."""
    return Safe(" ".join(shlex.quote(str(v)) for v in values))


def _environment(search_path: Sequence[Path]) -> jinja2.Environment:
    env = jinja2.Environment(
        loader=jinja2.FileSystemLoader([str(p) for p in search_path]),
        undefined=jinja2.StrictUndefined,
        finalize=_finalize,
        autoescape=False,
        keep_trailing_newline=True,
        trim_blocks=True,
        lstrip_blocks=True,
    )
    env.filters["safe"] = _safe
    env.filters["argv"] = _argv
    return env


def render_script(template: str, context: Mapping[str, Any], *, extra_dirs: Sequence[str | Path] = ()) -> str:
    """Render ``template`` (a file name in the template search path, or an
    absolute path) with ``context``; values are shell-quoted unless marked safe."""
    path = Path(template)
    dirs = [Path(d) for d in extra_dirs]
    if path.is_absolute():
        dirs.insert(0, path.parent)
        template = path.name
    env = _environment([*dirs, TEMPLATE_DIR])
    return env.get_template(template).render(**context)


def check_directive(text: str) -> str:
    """Refuse a directive argument that could leave its line.

    Directive values come from a validated request or from the admin's
    configuration; this is the last line of defence against a newline or a
    control character ending the directive block.
    """
    if any(ord(c) < 32 or ord(c) == 127 for c in text):
        raise ValueError(f"control character in a job directive: {text!r}")
    return text


def directive_lines(
    prefix: str,
    directives: Sequence[str],
    *,
    skip: Sequence[str] = (),
    extra: Sequence[str] = (),
) -> list[Safe]:
    """Whole directive lines (``#SBATCH --mem=1024M``) after the admin escape hatches.

    A directive is dropped when any string in ``skip`` occurs in it (substring
    match, as in dask-jobqueue's ``job_directives_skip``); ``extra`` directives
    are appended after the generated ones, so the scheduler lets them win.
    """
    kept = [d for d in directives if not any(s in d for s in skip)]
    return [Safe(f"{prefix} {check_directive(d)}") for d in [*kept, *extra]]
