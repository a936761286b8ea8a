"""`jupyterhub-hpc audit --sudoers`: the sudoers reader, and each check on a deliberately weak
file and on the file `jupyterhub-hpc sudoers` generates."""

from __future__ import annotations

from typing import Any

import pytest

from jupyterhub_hpc.audit.sudoers_checks import check_sudoers
from jupyterhub_hpc.audit.sudoers_file import applies_to, grants_for, logical_lines, parse_sudoers
from jupyterhub_hpc.sudoers import load_spawner, render_sudoers, rules_for_spawner

HUB = "jupyterhub"
SECRETS = ["JUPYTERHUB_API_TOKEN", "JPY_API_TOKEN", "JUPYTERHUB_HPC_SSL_KEY"]


@pytest.fixture(scope="module")
def expected() -> list[Any]:
    return rules_for_spawner(load_spawner(None, None))


@pytest.fixture(scope="module")
def generated(expected: list[Any]) -> str:
    return render_sudoers(HUB, "jupyterhub-users", expected)


def findings(text: str, expected: list[Any] | None = None, **kw: Any) -> set[tuple[str, str]]:
    parsed = parse_sudoers(text)
    found = check_sudoers(parsed, hub_user=HUB, expected=expected, expected_env=SECRETS, **kw)
    return {(f.check, f.severity) for f in found}


def test_the_generated_file_reads_back_as_its_rules(generated: str, expected: list[Any]) -> None:
    parsed = parse_sudoers(generated)
    grants = grants_for(parsed, HUB, None, [])
    assert sorted(g.command for g in grants) == sorted(r.cmnd() for r in expected)
    assert {g.runas for g in grants} == {("%jupyterhub-users", "!root")}
    assert {g.tags for g in grants} == {frozenset({"NOPASSWD"})}
    assert parsed.unparsed == [] and parsed.includes == []


def test_the_generated_file_has_no_finding(generated: str, expected: list[Any]) -> None:
    assert findings(generated, expected) == set()


def test_a_weak_file_is_flagged_for_each_of_its_flaws(expected: list[Any]) -> None:
    weak = """
# a hand-written file
Cmnd_Alias HUBCMDS = /usr/bin/sbatch, \\
                     /usr/bin/tail -n * /home/*/.jupyterhub-hpc-*.log
jupyterhub ALL = (%jupyterhub-users) NOPASSWD: SETENV: HUBCMDS
jupyterhub ALL = (root) NOPASSWD: /usr/bin/scancel ^[0-9]+$
Defaults:jupyterhub env_keep += "JUPYTERHUB_API_TOKEN LD_PRELOAD EDITOR"
"""
    assert findings(weak, expected) == {
        ("sudoers.tail", "high"),
        ("sudoers.setenv", "high"),
        ("sudoers.not-root-missing", "high"),
        ("sudoers.runas-root", "high"),
        ("sudoers.any-arguments", "medium"),
        ("sudoers.wildcard", "medium"),
        ("sudoers.env-keep", "high"),  # LD_PRELOAD
        ("sudoers.env-keep", "medium"),  # EDITOR
        ("sudoers.differs", "medium"),
    }


@pytest.mark.parametrize(
    ("line", "check"),
    [
        ("jupyterhub ALL = (ALL) NOPASSWD: ALL", "sudoers.all-commands"),
        ("jupyterhub ALL = (ALL) NOPASSWD: /usr/bin/sbatch ^--parsable$", "sudoers.runas-root"),
        ("jupyterhub ALL = (ALL, !root) NOPASSWD: /usr/bin/sbatch ^--parsable$", "sudoers.runas-root"),
        ("jupyterhub ALL = NOPASSWD: /usr/bin/sbatch ^--parsable$", "sudoers.runas-root"),
        ("jupyterhub ALL = (#0) /usr/bin/sbatch ^--parsable$", "sudoers.runas-root"),
        ("jupyterhub ALL = (%users) NOPASSWD: /usr/bin/sbatch ^--parsable$", "sudoers.not-root-missing"),
        ("Defaults !env_reset\njupyterhub ALL = (%u, !root) /bin/true", "sudoers.env-reset"),
        ("Defaults:jupyterhub setenv\njupyterhub ALL = (%u, !root) /bin/true", "sudoers.setenv"),
    ],
)
def test_each_high_rule(line: str, check: str) -> None:
    assert (check, "high") in findings(line)


def test_rules_for_other_accounts_do_not_count() -> None:
    text = "alice ALL = (ALL) ALL\nDefaults:alice setenv\n%wheel ALL = (ALL) ALL\n"
    assert findings(text) == {("sudoers.no-rules", "info")}
    assert ("sudoers.all-commands", "high") in findings(text, hub_groups=["wheel"])


def test_differences_with_the_generated_rules(generated: str, expected: list[Any]) -> None:
    lacking = "\n".join(
        ln for ln in generated.splitlines() if not ln.startswith("Cmnd_Alias JUPYTERHUB_HPC_CANCEL")
    )
    lacking = lacking.replace(", JUPYTERHUB_HPC_CANCEL", "")
    found = check_sudoers(parse_sudoers(lacking), hub_user=HUB, expected=expected, expected_env=SECRETS)
    assert [(f.check, f.severity) for f in found] == [("sudoers.differs", "medium")]
    assert "lacks" in found[0].what and "scancel" in found[0].subject
    extra = generated + "jupyterhub ALL = (JUPYTERHUB_HPC_USERS) NOPASSWD: /usr/bin/id ^-u$\n"
    found = check_sudoers(parse_sudoers(extra), hub_user=HUB, expected=expected, expected_env=SECRETS)
    assert [(f.check, f.subject) for f in found] == [("sudoers.differs", "/usr/bin/id ^-u$")]


def test_includes_and_unreadable_lines_are_reported() -> None:
    text = "@includedir /etc/sudoers.d\n#include /etc/other\njupyterhub ALL = (%u, !root) NOPASSWD: NOALIAS\n"
    assert findings(text) >= {("sudoers.include", "info"), ("sudoers.unparsed", "low")}


def test_reader_details() -> None:
    lines = logical_lines("# comment\nA \\\n  B # trailing\n\nC #1 uid\n")
    assert lines == [(2, "A    B"), (5, "C #1 uid")]
    assert applies_to(["%g", "!bob"], "alice", None, ["g"])
    assert not applies_to(["%g", "!alice"], "alice", None, ["g"])
    assert applies_to(["#999"], "alice", 999, [])
    assert not applies_to(["bob"], "alice", 999, [])
    parsed = parse_sudoers(
        "User_Alias HUBS = jupyterhub, hub2\nHUBS ALL = (%u, !root) NOEXEC: /bin/a x, PASSWD: /bin/b\n"
    )
    grants = grants_for(parsed, "hub2", None, [])
    assert [(g.command, sorted(g.tags)) for g in grants] == [
        ("/bin/a x", ["NOEXEC"]),
        ("/bin/b", ["NOEXEC", "PASSWD"]),
    ]


def test_regular_expressions_with_colons_and_commas_stay_whole() -> None:
    text = (
        "Cmnd_Alias READ = /usr/bin/tail ^-n [0-9]+ /home/[^/[:space:]]+/\\.log$, /bin/x ^[a,b]$ "
        ": OTHER = /bin/y\n"
        "jupyterhub ALL = (%u, !root) NOPASSWD: READ, OTHER\n"
    )
    parsed = parse_sudoers(text)
    assert parsed.aliases["READ"] == [
        "/usr/bin/tail ^-n [0-9]+ /home/[^/[:space:]]+/\\.log$",
        "/bin/x ^[a,b]$",
    ]
    assert parsed.aliases["OTHER"] == ["/bin/y"]
    assert [g.command for g in grants_for(parsed, HUB, None, [])] == [
        "/usr/bin/tail ^-n [0-9]+ /home/[^/[:space:]]+/\\.log$",
        "/bin/x ^[a,b]$",
        "/bin/y",
    ]
