"""An inline batchspawner ``batch_script`` -> a ``job_script_template`` of this project.

batchspawner formats its script with :meth:`str.format` (``{memory}``), or with Jinja2 when
it contains ``{{`` or ``{%``. The script is read line by line with the formatter's own
parser (:class:`string.Formatter`) or Jinja2's lexer, never with patterns:

- directive lines (``#SBATCH ...``) are replaced by the project's directives, built from
  the validated job request; a directive without variables is kept, as an
  ``job_extra_directives`` entry;
- the line that is ``{cmd}`` alone becomes the project's job body (``job-body.sh.j2``:
  the exit marker, the quoted environment, the prologue, the launcher and the epilogue);
- ``{prologue}`` / ``{epilogue}`` alone are dropped (the body writes them);
- every other line is the admin's shell text, kept as written (``{% raw %}``).

A variable anywhere else (``{image_path}``, ``{other}``, ``{cmd}`` inside a line) has no
counterpart among the project's template variables, which are shell-quoted: the script
is then not carried over, and the reason names the line.
"""

from __future__ import annotations

import string
from dataclasses import dataclass, field

import jinja2

__all__ = ["ScriptResult", "translate_script"]

DIRECTIVE_PREFIX = {
    "slurm": "#SBATCH",
    "torque": "#PBS",
    "pbs": "#PBS",
    "sge": "#$",
    "lsf": "#BSUB",
    "oar": "#OAR",
}
#: batchspawner's variables that a directive line of the project's own covers
REQUEST_VARIABLES = frozenset(
    {
        "partition",
        "queue",
        "runtime",
        "memory",
        "nprocs",
        "ngpus",
        "gres",
        "reservation",
        "account",
        "qos",
        "cluster",
        "nodes",
        "ntasks",
        "homedir",
        "keepvars",
        "username",
        "options",
        "host",
    }
)
_DROPPED_ALONE = frozenset({"prologue", "epilogue"})


@dataclass
class ScriptResult:
    template: str | None = None
    extra_directives: list[str] = field(default_factory=list)
    not_carried: list[str] = field(default_factory=list)


@dataclass
class _Line:
    text: str  # the literal text, as the original script writes it after formatting
    variables: list[str]
    alone: str | None  # the one variable that is the whole line, if so
    block: bool = False  # a Jinja2 statement ({% if %}) in the line


def _format_lines(script: str) -> list[_Line]:
    lines = []
    for raw in script.split("\n"):
        literal, names = "", []
        for text, name, _spec, _conv in string.Formatter().parse(raw):
            literal += text
            if name is not None:
                names.append(name)
        alone = names[0] if len(names) == 1 and raw.strip() == "{" + names[0] + "}" else None
        lines.append(_Line(literal, names, alone))
    return lines


def _jinja_lines(script: str) -> list[_Line]:
    env = jinja2.Environment()
    lines = []
    for raw in script.split("\n"):
        literal, names, block, expression = "", [], False, False
        for _lineno, kind, value in env.lex(raw):
            if kind == "data":
                literal += value
            elif kind in ("block_begin",):
                block = True
            elif kind == "variable_begin":
                expression = True
            elif kind == "variable_end":
                expression = False
            elif kind == "name" and expression:
                names.append(value)
        stripped = raw.strip()
        alone = (
            names[0] if len(names) == 1 and stripped.startswith("{{") and stripped.endswith("}}") else None
        )
        lines.append(_Line(literal, names, alone, block))
    return lines


def _raw(text: str) -> str:
    return "{% raw %}" + text + "{% endraw %}" if any(m in text for m in ("{{", "{%", "{#")) else text


def translate_script(script: str, backend: str) -> ScriptResult:
    """The template, or the reasons it is not carried over (line numbers from 1)."""
    result = ScriptResult()
    prefix = DIRECTIVE_PREFIX.get(backend)
    try:
        jinja = "{{" in script or "{%" in script
        lines = _jinja_lines(script) if jinja else _format_lines(script)
    except (ValueError, jinja2.TemplateSyntaxError) as exc:
        result.not_carried.append(f"batch_script cannot be read as batchspawner formats it: {exc}")
        return result
    body: list[str] = []
    directives_at: int | None = None
    commands = 0
    problems: list[str] = []
    for number, line in enumerate(lines, start=1):
        stripped = line.text.strip()
        if number == 1 and stripped.startswith("#!") and not line.variables:
            continue
        if line.block:
            problems.append(f"line {number}: a Jinja2 statement ({{% ... %}}) has no counterpart")
            continue
        if (prefix is not None and stripped.startswith(prefix + " ")) or (prefix and stripped == prefix):
            if directives_at is None:
                directives_at = len(body)
                body.append("{% for line in directives %}\n{{ line }}\n{% endfor %}")
            unknown = [v for v in line.variables if v not in REQUEST_VARIABLES]
            if unknown:
                problems.append(f"line {number}: {{{unknown[0]}}} in a directive has no counterpart")
            elif not line.variables:
                result.extra_directives.append(stripped[len(prefix) :].strip())
            continue
        if line.alone == "cmd":
            commands += 1
            body.append('{% include "job-body.sh.j2" %}')
            continue
        if line.alone in _DROPPED_ALONE:
            continue
        if line.variables:
            name = line.variables[0]
            if name == "cmd":
                problems.append(
                    f"line {number}: {{cmd}} inside a line (a wrapper around the server): the server is "
                    "started by the project's job body; put a wrapper's setup in job_script_prologue"
                )
            else:
                problems.append(f"line {number}: {{{name}}} has no counterpart among the template variables")
            continue
        body.append(_raw(line.text))
    if commands != 1 and not problems:
        problems.append(f"the server command {{cmd}} must stand alone on exactly one line (found {commands})")
    if problems:
        result.not_carried.extend(problems)
        result.extra_directives = []
        return result
    if directives_at is None:
        body.insert(0, "{% for line in directives %}\n{{ line }}\n{% endfor %}")
    while body and body[-1] == "":
        body.pop()
    result.template = "#!/bin/bash\n" + "\n".join(body) + "\n"
    return result
