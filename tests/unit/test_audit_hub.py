"""`jupyterhub-hpc audit --config`: each hub check on constructed facts, and the facts read
from a deliberately weak and a recommended jupyterhub_config.py with real files in tmp."""

from __future__ import annotations

import contextlib
import io
import json
import os
import pwd
import re
import stat
from pathlib import Path
from typing import Any

import pytest

from jupyterhub_hpc import cli
from jupyterhub_hpc.audit.findings import Finding, exit_status, render_text
from jupyterhub_hpc.audit.hub import (
    FileFacts,
    HubFacts,
    check_hub,
    collect,
    config_secret_names,
    sqlite_path,
    token_in_url_sources,
)
from jupyterhub_hpc.sudoers import load_spawner

ME = pwd.getpwuid(os.getuid()).pw_name


def f(path: str, mode: int, uid: int = 999, owner: str = "jupyterhub") -> FileFacts:
    return FileFacts(path, True, stat.S_IFREG | mode, uid, owner)


RECOMMENDED = HubFacts(
    subdomain_host="https://hub.example.org",
    internal_ssl=True,
    cookie_secret_file=f("/srv/jh/jupyterhub_cookie_secret", 0o600),
    db_files=(f("/srv/jh/jupyterhub.sqlite", 0o600), FileFacts("/srv/jh/jupyterhub.sqlite-journal", False)),
    config_file_facts=f("/srv/jh/jupyterhub_config.py", 0o644),
    internal_keys=(f("/srv/jh/internal-ssl/hub-ca/hub-ca.key", 0o600),),
    hub_uid=999,
)


def checks(facts: HubFacts) -> dict[str, str]:
    return {finding.check: finding.severity for finding in check_hub(facts)}


def test_the_recommended_hub_has_no_finding() -> None:
    assert check_hub(RECOMMENDED) == []


def test_a_weak_hub_is_flagged_for_each_of_its_flaws() -> None:
    weak = HubFacts(
        subdomain_host="",
        internal_ssl=False,
        authenticate_prometheus=False,
        kernel_transport="tcp",
        server_bind="0.0.0.0",
        token_in_url=("c.Spawner.environment['JUPYTERHUB_ALLOW_TOKEN_IN_URL'] = '1'",),
        cookie_secret_env=True,
        cookie_secret_file=f("/srv/jh/jupyterhub_cookie_secret", 0o644, 0, "root"),
        db_files=(f("/srv/jh/jupyterhub.sqlite", 0o644),),
        config_secrets=("JupyterHub.cookie_secret",),
        config_file_facts=f("/srv/jh/jupyterhub_config.py", 0o644),
        internal_keys=(f("/srv/jh/internal-ssl/hub-ca/hub-ca.key", 0o644),),
        hub_uid=999,
        root_evidence=("jupyterhub process 1 runs as root",),
    )
    assert checks(weak) == {
        "hub.subdomain-host": "high",
        "hub.internal-ssl": "medium",
        "hub.cookie-secret-env": "info",
        "hub.cookie-secret-file": "high",
        "hub.cookie-secret-owner": "medium",
        "hub.db-file": "high",
        "hub.config-secrets": "high",
        "hub.internal-ssl-keys": "high",
        "hub.token-in-url": "medium",
        "hub.prometheus": "medium",
        "spawner.kernel-transport": "high",
        "spawner.server-bind": "medium",
        "hub.runs-as-root": "low",
    }
    assert exit_status(check_hub(weak)) == 2


def test_subdomain_host_is_high_only_on_shared_nodes() -> None:
    local = HubFacts(backend="local", shared_nodes=False, internal_ssl=True)
    [finding] = check_hub(local)
    assert (finding.check, finding.severity) == ("hub.subdomain-host", "medium")
    [finding] = check_hub(HubFacts(backend="slurm", shared_nodes=True, internal_ssl=True))
    assert finding.severity == "high" and "_xsrf" in finding.what and "'slurm'" in finding.what


def test_internal_ssl_explains_its_limit() -> None:
    [finding] = check_hub(HubFacts(subdomain_host="https://h", internal_ssl=False))
    assert "same CA" in finding.what and "co-located" in finding.what


def test_a_spawner_without_kernel_transport_is_high() -> None:
    [finding] = check_hub(RECOMMENDED.__class__(**{**RECOMMENDED.__dict__, "kernel_transport": None}))
    assert (finding.check, finding.severity) == ("spawner.kernel-transport", "high")
    assert "Upgrade" in finding.fix


def test_group_readable_secret_is_high_and_other_owner_medium() -> None:
    facts = HubFacts(
        subdomain_host="https://h",
        internal_ssl=True,
        cookie_secret_file=f("/s", 0o640),
        db_files=(f("/d", 0o600, 1000, "alice"),),
        hub_uid=999,
    )
    assert checks(facts) == {"hub.cookie-secret-file": "high", "hub.db-owner": "medium"}


def test_config_secrets_matter_only_when_others_can_read_the_file() -> None:
    base = {**RECOMMENDED.__dict__, "config_secrets": ("JupyterHub.cookie_secret",)}
    assert check_hub(HubFacts(**{**base, "config_file_facts": f("/c.py", 0o600)})) == []
    assert checks(HubFacts(**base)) == {"hub.config-secrets": "high"}


def test_sqlite_paths() -> None:
    assert sqlite_path("sqlite:///jupyterhub.sqlite") == "jupyterhub.sqlite"
    assert sqlite_path("sqlite:////srv/jh/db.sqlite") == "/srv/jh/db.sqlite"
    assert sqlite_path("sqlite:///db.sqlite?mode=rw") == "db.sqlite"
    assert sqlite_path("sqlite://") == ""
    assert sqlite_path("sqlite:///:memory:") == ""
    assert sqlite_path("postgresql://hub:pw@db/jupyterhub") is None


def test_token_in_url_sources() -> None:
    name = "JUPYTERHUB_ALLOW_TOKEN_IN_URL"
    assert token_in_url_sources({name: "0"}, [], [], {}) == ()
    assert token_in_url_sources({name: "false"}, ["--HubAuth.allow_token_in_url=False"], [], {}) == ()
    assert len(token_in_url_sources({name: "1"}, [], [], {})) == 1
    assert len(token_in_url_sources({}, ["--HubAuth.allow_token_in_url=True"], [], {})) == 1
    assert len(token_in_url_sources({}, [], [name], {name: "yes"})) == 1
    assert token_in_url_sources({}, [], [name], {}) == ()


def test_secret_settings_are_found_by_name_only() -> None:
    config = {
        "JupyterHub": {
            "cookie_secret": b"x" * 32,
            "db_url": "postgresql://hub:pw@db/jupyterhub",
            "services": [{"name": "m", "api_token": "t"}],
            "authenticate_prometheus": True,
        },
        "GenericOAuthenticator": {"client_secret": "s", "client_id": "id"},
        "Spawner": {"environment": {}},
    }
    names = config_secret_names(config)
    assert names == (
        "GenericOAuthenticator.client_secret",
        "JupyterHub.cookie_secret",
        "JupyterHub.db_url",
        "JupyterHub.services[].api_token",
    )
    assert config_secret_names({"JupyterHub": {"db_url": "sqlite:///x.sqlite"}}) == ()


# -- the facts of real files -------------------------------------------------------------------

WEAK_CONFIG = """
c.JupyterHub.spawner_class = "slurm"
c.JupyterHub.authenticate_prometheus = False
c.JupyterHub.cookie_secret_file = "secret"
c.JupyterHub.db_url = "sqlite:///hub.sqlite"
c.SlurmSpawner.server_bind = "0.0.0.0"
c.SlurmSpawner.kernel_transport = "tcp"
c.Spawner.environment = {"JUPYTERHUB_ALLOW_TOKEN_IN_URL": "1"}
c.JupyterHub.service_tokens = {"0123456789abcdef": "metrics"}
"""
GOOD_CONFIG = """
c.JupyterHub.spawner_class = "slurm"
c.JupyterHub.subdomain_host = "https://hub.example.org"
c.JupyterHub.internal_ssl = True
c.JupyterHub.cookie_secret_file = "secret"
c.JupyterHub.db_url = "sqlite:///hub.sqlite"
"""


def hub_dir(tmp_path: Path, config: str, mode: int) -> Path:
    (tmp_path / "jupyterhub_config.py").write_text(config)
    for name in ("secret", "hub.sqlite"):
        (tmp_path / name).write_text("x\n")
        (tmp_path / name).chmod(mode)
    (tmp_path / "jupyterhub_config.py").chmod(mode)
    return tmp_path / "jupyterhub_config.py"


def test_facts_of_a_weak_config(tmp_path: Path) -> None:
    config = hub_dir(tmp_path, WEAK_CONFIG, 0o644)
    spawner = load_spawner(str(config), None)
    facts = collect(spawner, config_file=str(config), hub_user=ME, hub_dir=str(tmp_path), environ={})
    assert facts.subdomain_host == "" and facts.internal_ssl is False
    assert facts.authenticate_prometheus is False
    assert facts.kernel_transport == "tcp" and facts.server_bind == "0.0.0.0"
    assert facts.cookie_secret_file == FileFacts(
        str(tmp_path / "secret"), True, stat.S_IFREG | 0o644, os.getuid(), ME
    )
    assert [d.path for d in facts.db_files if d.exists] == [str(tmp_path / "hub.sqlite")]
    assert facts.config_secrets == ("JupyterHub.service_tokens",)
    found = {x.check for x in check_hub(facts)}
    assert found >= {
        "hub.subdomain-host",
        "hub.internal-ssl",
        "hub.cookie-secret-file",
        "hub.db-file",
        "hub.config-secrets",
        "hub.token-in-url",
        "hub.prometheus",
        "spawner.kernel-transport",
        "spawner.server-bind",
    }
    assert "0123456789abcdef" not in render_text(check_hub(facts), "t")


def test_facts_of_the_recommended_config(tmp_path: Path) -> None:
    config = hub_dir(tmp_path, GOOD_CONFIG, 0o600)
    spawner = load_spawner(str(config), None)
    facts = collect(spawner, config_file=str(config), hub_user=ME, hub_dir=str(tmp_path), environ={})
    assert facts.kernel_transport == "ipc"
    high = [x for x in check_hub(facts) if x.severity in ("high", "medium")]
    assert high == []


def run_cli(*argv: str) -> tuple[int, str]:
    out = io.StringIO()
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(io.StringIO()):
        try:
            cli.main(["audit", *argv])
            code = 0
        except SystemExit as exc:
            code = int(exc.code or 0)
    return code, out.getvalue()


def test_the_command_json_and_exit_status(tmp_path: Path) -> None:
    config = hub_dir(tmp_path, WEAK_CONFIG, 0o644)
    code, text = run_cli("--config", str(config), "--hub-dir", str(tmp_path), "--hub-user", ME, "--json")
    answer: dict[str, Any] = json.loads(text)
    assert code == 2 == answer["exit_status"]
    assert answer["summary"]["high"] >= 3
    assert {x["check"] for x in answer["findings"]} >= {"hub.db-file", "hub.cookie-secret-file"}
    assert all(set(x) == {"check", "severity", "what", "fix", "subject", "ref"} for x in answer["findings"])
    code, text = run_cli("--config", str(tmp_path / "missing.py"))
    assert code == 1 and text == ""


def test_text_output_and_severities() -> None:
    findings = [Finding("a.b", "low", "w", "f", "s"), Finding("a.c", "high", "w2", "f2")]
    text = render_text(findings, "title")
    assert text.index("[HIGH] a.c") < text.index("[LOW] a.b")
    assert "fix: f2" in text and "see: docs/audit.md#c" in text
    assert text.rstrip().endswith("summary: 1 high, 0 medium, 1 low, 0 info (2 findings)")
    with pytest.raises(ValueError):
        Finding("x", "critical", "w", "f")  # type: ignore[arg-type]


def test_every_check_is_documented() -> None:
    """Each finding's ref points to a section of docs/audit.md that exists."""
    root = Path(__file__).resolve().parents[2]
    headings = set(re.findall(r"^### (\S+)$", (root / "docs" / "audit.md").read_text(), re.MULTILINE))
    source = "".join(p.read_text() for p in (root / "src" / "jupyterhub_hpc" / "audit").glob("*.py"))
    ids = set(re.findall(r'"((?:hub|spawner|sudoers|node)\.[a-z-]+)"', source))
    assert len(ids) >= 35
    assert {i.split(".", 1)[1] for i in ids} <= headings
    assert Finding("hub.db-file", "high", "w", "f").ref == "docs/audit.md#db-file"
