"""``jupyterhub-hpc audit --sudoers FILE``: the hub account's sudo rules, checked one by one
and against the file ``jupyterhub-hpc sudoers`` generates for the same configuration.

Pure: a parsed file (:func:`~jupyterhub_hpc.audit.sudoers_file.parse_sudoers`) and the
expected rules in, findings out.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Sequence
from typing import Any

from .findings import Finding, Severity
from .sudoers_file import Grant, SudoersFile, applies_to, grants_for, program_name

__all__ = ["check_sudoers"]

READER = "jupyterhub-hpc-read-output"
#: variables that change what a program runs or loads: keeping one gives the hub account
#: code execution inside any program sudo runs
_DANGEROUS_ENV = re.compile(r"^(LD_\w*|PYTHON\w*|PERL\w*|RUBY\w*|PATH|BASH_ENV|ENV|IFS|SHELLOPTS|PS4)$")
_ENV_PARAM = re.compile(r'^(env_keep|env_check)\s*(\+=|=)\s*"?([^"]*)"?$')


def _norm(command: str) -> str:
    return " ".join(command.split())


def _runas_findings(grant: Grant, where: str) -> list[Finding]:
    fix = (
        "Grant the hub account only members of the users' group and never root: "
        "(%jupyterhub-users, !root), as `jupyterhub-hpc sudoers` writes it."
    )
    if grant.runas is None:
        return [
            Finding(
                "sudoers.runas-root",
                "high",
                f"{where}: no runas list, so sudo runs these commands as root.",
                fix,
                where,
            )
        ]
    positive = [r for r in grant.runas if not r.startswith("!")]
    broad = [r for r in positive if r in ("root", "#0", "ALL")]
    if broad:
        return [
            Finding(
                "sudoers.runas-root",
                "high",
                f"{where}: the hub account may run commands as {', '.join(broad)} "
                "(ALL: any account, service accounts too, root unless excluded).",
                fix,
                where,
            )
        ]
    if "!root" not in grant.runas and "!#0" not in grant.runas:
        return [
            Finding(
                "sudoers.not-root-missing",
                "high",
                f"{where}: the runas list ({', '.join(grant.runas)}) does not exclude root: "
                "once root is in that group (or the alias grows), the hub account is root.",
                "Add !root to the runas list: (%jupyterhub-users, !root).",
                where,
            )
        ]
    return []


def _command_findings(grant: Grant, where: str) -> list[Finding]:
    out: list[Finding] = []
    subject = f"{where}: {grant.command}"
    if grant.command == "ALL":
        out.append(
            Finding(
                "sudoers.all-commands",
                "high",
                f"{where}: the hub account may run ANY command as these users (ALL; it also implies SETENV).",
                "Grant only the submit, cancel and read commands the hub runs: "
                "`jupyterhub-hpc sudoers --config ... --group ...`.",
                subject,
            )
        )
    if program_name(grant.path) == "tail":
        out.append(
            Finding(
                "sudoers.tail",
                "high",
                f"{where}: a tail rule reads job output files as the user, following symlinks "
                "and opening FIFOs and devices: a user whose output path is a symlink makes the "
                "hub read another file of theirs (or hang on a FIFO), and the failure page shows it.",
                f"Replace it with the reader ({READER}), which opens the output file with "
                "O_NOFOLLOW and only a regular file: regenerate with `jupyterhub-hpc sudoers`.",
                subject,
            )
        )
    if "SETENV" in grant.tags or grant.command == "ALL":
        out.append(
            Finding(
                "sudoers.setenv",
                "high",
                f"{where}: SETENV lets the hub account pass any environment (LD_PRELOAD, "
                "PYTHONPATH, ...) to the command, which then runs code of its choice as the user.",
                "Remove SETENV; keep only the secret variables with env_keep on the submit command.",
                subject,
            )
        )
    if grant.command != "ALL" and grant.args is None:
        out.append(
            Finding(
                "sudoers.any-arguments",
                "medium",
                f"{where}: {grant.path} may be run with any arguments.",
                "Match the exact arguments (sudoers regular expressions ^...$), as the generated file does.",
                subject,
            )
        )
    elif grant.args and not grant.args.startswith("^") and any(c in grant.args for c in "*?["):
        out.append(
            Finding(
                "sudoers.wildcard",
                "medium",
                f"{where}: shell-style wildcards in the arguments match spaces and '/', so extra "
                "arguments and paths outside the intended directory match too.",
                "Use an anchored regular expression (^...$) with one component per path part.",
                subject,
            )
        )
    return out


def _defaults_findings(
    parsed: SudoersFile, hub_user: str, hub_uid: int | None, hub_groups: Sequence[str], env: set[str]
) -> list[Finding]:
    out: list[Finding] = []
    for line in parsed.defaults:
        if line.kind == "@" or (
            line.kind == ":" and not applies_to(line.binding, hub_user, hub_uid, hub_groups)
        ):
            continue
        where = f"line {line.line}"
        for param in line.params:
            text = param.strip()
            if text == "setenv":
                out.append(
                    Finding(
                        "sudoers.setenv",
                        "high",
                        f"{where}: Defaults setenv lets the caller keep any environment variable.",
                        "Remove the setenv default.",
                        f"{where}: Defaults {text}",
                    )
                )
            elif text == "!env_reset":
                out.append(
                    Finding(
                        "sudoers.env-reset",
                        "high",
                        f"{where}: !env_reset passes the hub's whole environment to the commands.",
                        "Remove !env_reset (sudo resets the environment by default).",
                        f"{where}: Defaults {text}",
                    )
                )
            match = _ENV_PARAM.match(text)
            if not match:
                continue
            names = set(match.group(3).split())
            dangerous = sorted(n for n in names if _DANGEROUS_ENV.match(n.split("=", 1)[0]))
            extra = sorted(names - env - set(dangerous))
            for severity, found in (("high", dangerous), ("medium", extra)):
                if found:
                    level: Severity = "high" if severity == "high" else "medium"
                    out.append(
                        Finding(
                            "sudoers.env-keep",
                            level,
                            f"{where}: {match.group(1)} keeps {' '.join(found)}"
                            + (" (changes what the program loads or runs)" if level == "high" else "")
                            + ", beyond the secrets the spawner passes.",
                            f"Keep only {' '.join(sorted(env)) or 'nothing'}, on the submit command only.",
                            f"{where}: Defaults {match.group(1)}",
                        )
                    )
    return out


def _comparison(grants: Sequence[Grant], expected: Sequence[Any]) -> list[Finding]:
    granted = {_norm(g.command) for g in grants if not g.negated}
    wanted = {_norm(r.cmnd()): r for r in expected}
    out = [
        Finding(
            "sudoers.differs",
            "medium",
            f"the file grants {command!r}, which this configuration never runs.",
            "Remove it: regenerate the file with `jupyterhub-hpc sudoers --config ...`.",
            command,
        )
        for command in sorted(granted - set(wanted))
    ]
    out += [
        Finding(
            "sudoers.differs",
            "medium",
            f"the file lacks {command!r} ({wanted[command].description}): the hub's sudo call fails.",
            "Regenerate the file with `jupyterhub-hpc sudoers --config ...`.",
            command,
        )
        for command in sorted(set(wanted) - granted)
    ]
    return out


def check_sudoers(
    parsed: SudoersFile,
    *,
    hub_user: str,
    hub_uid: int | None = None,
    hub_groups: Iterable[str] = (),
    expected: Sequence[Any] | None = None,
    expected_env: Iterable[str] = (),
    expected_error: str = "",
) -> list[Finding]:
    """Findings about what ``parsed`` lets ``hub_user`` do. ``expected``: the
    :class:`~jupyterhub_hpc.sudoers.SudoRule` list of the configuration (None when it could not
    be derived: ``expected_error`` says why)."""
    groups = list(hub_groups)
    grants = grants_for(parsed, hub_user, hub_uid, groups)
    out: list[Finding] = []
    if not grants:
        out.append(
            Finding(
                "sudoers.no-rules",
                "info",
                f"the file grants the hub account {hub_user!r} nothing.",
                "Check --hub-user; a hub that runs as the users' own account needs no rule.",
                hub_user,
            )
        )
    seen_runas: set[int] = set()
    for grant in grants:
        if grant.negated:
            continue
        where = f"line {grant.line}"
        if grant.line not in seen_runas:
            seen_runas.add(grant.line)
            out += _runas_findings(grant, where)
        out += _command_findings(grant, where)
    out += _defaults_findings(parsed, hub_user, hub_uid, groups, set(expected_env))
    out += [
        Finding(
            "sudoers.include",
            "info",
            f"the file includes {path}, which this audit does not read.",
            "Audit that file too (--sudoers).",
            path,
        )
        for path in parsed.includes
    ]
    out += [
        Finding(
            "sudoers.unparsed",
            "low",
            f"line {number} was not understood by the audit: {text}",
            "Check it by hand (visudo -cf FILE checks the syntax).",
            f"line {number}",
        )
        for number, text in parsed.unparsed
    ]
    if expected is not None:
        out += _comparison(grants, expected)
    elif expected_error:
        out.append(
            Finding(
                "sudoers.differs",
                "info",
                f"could not derive the expected rules from the configuration: {expected_error}",
                "Run `jupyterhub-hpc sudoers --config ...` to see why.",
                "",
            )
        )
    return out
