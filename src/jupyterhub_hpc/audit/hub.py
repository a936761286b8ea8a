"""The hub side of ``jupyterhub-hpc audit``: checks of ``jupyterhub_config.py`` and of the
hub's secret files.

:func:`collect` reads the configuration (through the loader of ``jupyterhub-hpc sudoers``)
and ``stat``s the files into a :class:`HubFacts`; every check is a pure function of those
facts that returns findings, so each is tested on constructed facts.
"""

from __future__ import annotations

import logging
import os
import pwd
import re
import stat
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from typing import Any

from .findings import Finding

__all__ = ["FileFacts", "HubFacts", "check_hub", "collect", "file_facts"]

#: settings whose non-empty value is a secret (only their names are ever reported)
_SECRET_KEY = re.compile(r"(secret|password|passwd|api_token|tokens|crypt|keys?)$", re.IGNORECASE)
_WILDCARD_BINDS = {"0.0.0.0", "::", "[::]", "*"}


@dataclass(frozen=True)
class FileFacts:
    """What ``lstat`` says about a file (``exists`` False: there is none)."""

    path: str
    exists: bool
    mode: int = 0
    uid: int = -1
    owner: str = ""
    symlink: bool = False


@dataclass(frozen=True)
class HubFacts:
    """What the checks need to know about a hub, read from its configuration and files."""

    config_file: str = ""
    subdomain_host: str = ""
    internal_ssl: bool = False
    authenticate_prometheus: bool = True
    backend: str = "slurm"
    #: servers of several users share a node (every batch backend; the local one with sudo)
    shared_nodes: bool = True
    kernel_transport: str | None = "ipc"
    server_bind: str = ""
    #: where the single-user servers are told to accept ``?token=`` (setting names)
    token_in_url: tuple[str, ...] = ()
    cookie_secret_in_config: bool = False
    cookie_secret_env: bool = False
    cookie_secret_file: FileFacts | None = None
    #: "sqlite" (a file), "memory", or the URL scheme of another database
    db_kind: str = "sqlite"
    db_files: tuple[FileFacts, ...] = ()
    #: secret-bearing settings in the config file (names only) and the file itself
    config_secrets: tuple[str, ...] = ()
    config_file_facts: FileFacts | None = None
    internal_keys: tuple[FileFacts, ...] = ()
    hub_user: str = "jupyterhub"
    hub_uid: int | None = None
    #: why the hub looks like it runs as root ("" when it does not)
    root_evidence: tuple[str, ...] = ()


def _others_can(mode: int, bits: int = 0o077) -> bool:
    return bool(stat.S_IMODE(mode) & bits)


def _mode(facts: FileFacts) -> str:
    return f"{stat.S_IMODE(facts.mode):04o}, owner {facts.owner or facts.uid}"


# -- the checks (pure) --------------------------------------------------------------------------


def check_subdomain_host(facts: HubFacts) -> list[Finding]:
    if facts.subdomain_host:
        return []
    why = (
        "c.JupyterHub.subdomain_host is not set: every user's server is served from the hub's own "
        "origin. A server (or whoever answers on its port) then runs JavaScript on the hub's origin: "
        "it can read the hub's _xsrf cookie and page, and call the hub as the user who opens it."
    )
    if facts.shared_nodes:
        why += (
            f" With the {facts.backend!r} backend servers of different users share compute nodes, "
            "where another user can bind a victim's port first: the hub then routes "
            "/user/<victim>/ to them, on the hub's origin."
        )
    return [
        Finding(
            "hub.subdomain-host",
            "high" if facts.shared_nodes else "medium",
            why,
            "Set c.JupyterHub.subdomain_host = 'https://hub.example.org' with wildcard DNS and a "
            "wildcard certificate for *.hub.example.org: each user's server becomes its own origin.",
            "c.JupyterHub.subdomain_host",
        )
    ]


def check_internal_ssl(facts: HubFacts) -> list[Finding]:
    if facts.internal_ssl:
        return []
    return [
        Finding(
            "hub.internal-ssl",
            "medium",
            "c.JupyterHub.internal_ssl is off: hub, proxy and servers talk plain HTTP across the "
            "cluster network, so the user's cookies and API tokens cross it in clear text, and the "
            "proxy does not check who answers on a server's port. internal_ssl adds TLS with "
            "certificates of the hub's own CA. Its limit: another hub user's server on the same "
            "node holds a certificate of the same CA valid for that node, so it does not stop a "
            "co-located hub user (the launcher's check that the port belongs to the user's own "
            "process does).",
            "Set c.JupyterHub.internal_ssl = True (and keep the launcher's port ownership check).",
            "c.JupyterHub.internal_ssl",
        )
    ]


def check_cookie_secret(facts: HubFacts) -> list[Finding]:
    out: list[Finding] = []
    if facts.cookie_secret_env:
        out.append(
            Finding(
                "hub.cookie-secret-env",
                "info",
                "JPY_COOKIE_SECRET is set in this environment: the hub takes its cookie secret from "
                "it (before the file). Anything that can read the hub's environment (its unit file, "
                "/proc/<pid>/environ as the hub account) can forge every user's login cookie.",
                "Keep the variable out of world-readable unit files and scripts, or use a 0600 "
                "cookie_secret_file owned by the hub account.",
                "JPY_COOKIE_SECRET",
            )
        )
    secret = facts.cookie_secret_file
    if secret is None or not secret.exists:
        return out
    if _others_can(secret.mode):
        out.append(
            Finding(
                "hub.cookie-secret-file",
                "high",
                f"the cookie secret file is readable or writable by others than its owner "
                f"({_mode(secret)}): whoever reads it can forge a login cookie for any user.",
                f"chmod 0600 {secret.path}; chown {facts.hub_user} {secret.path}; then rotate it "
                "(delete the file and restart the hub: every user logs in again).",
                secret.path,
            )
        )
    if facts.hub_uid is not None and secret.uid not in (facts.hub_uid,):
        out.append(
            Finding(
                "hub.cookie-secret-owner",
                "medium",
                f"the cookie secret file is owned by {secret.owner or secret.uid}, not the hub "
                f"account {facts.hub_user!r}: that account can read and replace it.",
                f"chown {facts.hub_user} {secret.path} (mode 0600).",
                secret.path,
            )
        )
    return out


def check_database(facts: HubFacts) -> list[Finding]:
    out: list[Finding] = []
    for db in facts.db_files:
        if not db.exists:
            continue
        if _others_can(db.mode, 0o066):
            out.append(
                Finding(
                    "hub.db-file",
                    "high",
                    f"the hub database is readable or writable by others ({_mode(db)}): it holds "
                    "users' cookie ids, hashed API tokens, OAuth state, server URLs and spawner "
                    "state; with write access anyone can make himself admin.",
                    f"chmod 0600 {db.path}; chown {facts.hub_user} {db.path}; keep the directory "
                    "owned by the hub account. (sqlite creates it with the umask: run the hub "
                    "with umask 077.)",
                    db.path,
                )
            )
        elif facts.hub_uid is not None and db.uid != facts.hub_uid:
            out.append(
                Finding(
                    "hub.db-owner",
                    "medium",
                    f"the hub database is owned by {db.owner or db.uid}, not {facts.hub_user!r}.",
                    f"chown {facts.hub_user} {db.path}",
                    db.path,
                )
            )
    return out


def check_config_file(facts: HubFacts) -> list[Finding]:
    config = facts.config_file_facts
    if config is None or not config.exists or not facts.config_secrets:
        return []
    if not _others_can(config.mode, 0o044):
        return []
    return [
        Finding(
            "hub.config-secrets",
            "high",
            f"the config file holds secrets ({', '.join(facts.config_secrets)}; values not shown) "
            f"and is readable by others ({_mode(config)}).",
            f"chmod 0600 {config.path} (owned by the hub account), or load the secrets from files "
            "only the hub account can read.",
            config.path,
        )
    ]


def check_internal_keys(facts: HubFacts) -> list[Finding]:
    return [
        Finding(
            "hub.internal-ssl-keys",
            "high",
            f"a private key of internal_ssl is readable by others ({_mode(key)}): with a CA key "
            "anyone can issue certificates the hub and the servers trust.",
            f"chmod 0600 {key.path} (and 0700 on its directory), owned by the hub account.",
            key.path,
        )
        for key in facts.internal_keys
        if key.exists and _others_can(key.mode, 0o044)
    ]


def check_token_in_url(facts: HubFacts) -> list[Finding]:
    if not facts.token_in_url:
        return []
    return [
        Finding(
            "hub.token-in-url",
            "medium",
            "the single-user servers accept API tokens in the URL (?token=...): "
            f"{', '.join(facts.token_in_url)}. A token in a URL ends up in browser history, "
            "proxy logs and Referer headers, and a shared link logs the receiver in as the user.",
            "Remove JUPYTERHUB_ALLOW_TOKEN_IN_URL from c.Spawner.environment / env_keep and "
            "--HubAuth.allow_token_in_url from c.Spawner.args (JupyterHub >= 5 refuses URL "
            "tokens by default; HubAuth.allow_token_in_url).",
            "HubAuth.allow_token_in_url",
        )
    ]


def check_prometheus(facts: HubFacts) -> list[Finding]:
    if facts.authenticate_prometheus:
        return []
    return [
        Finding(
            "hub.prometheus",
            "medium",
            "c.JupyterHub.authenticate_prometheus is False: anyone who reaches the hub can read "
            "/hub/metrics, which tell how many users and servers there are, and this package's "
            "metrics the jobs, queues and scheduler health.",
            "Set c.JupyterHub.authenticate_prometheus = True (the default) and give the scraper a "
            "service token with the read:metrics scope.",
            "c.JupyterHub.authenticate_prometheus",
        )
    ]


def check_kernel_transport(facts: HubFacts) -> list[Finding]:
    if facts.kernel_transport == "ipc":
        return []
    if facts.kernel_transport is None:
        what = "this jupyterhub-hpc has no kernel_transport setting: kernels use ZMQ over TCP on 127.0.0.1, "
        fix = "Upgrade jupyterhub-hpc to a version with kernel_transport (default 'ipc')."
    else:
        what = f"kernel_transport is {facts.kernel_transport!r}: kernels listen on TCP ports, "
        fix = "Set c.HPCSpawner.kernel_transport = 'ipc' (the default)."
    return [
        Finding(
            "spawner.kernel-transport",
            "high" if facts.shared_nodes else "medium",
            what + "where any other user on the node can subscribe to the kernel's iopub channel "
            "(every output of every cell) without the key; IPC sockets sit in the user's 0700 "
            "runtime directory.",
            fix,
            "kernel_transport",
        )
    ]


def check_server_bind(facts: HubFacts) -> list[Finding]:
    if facts.server_bind.strip() not in _WILDCARD_BINDS:
        return []
    return [
        Finding(
            "spawner.server-bind",
            "medium",
            f"server_bind is {facts.server_bind!r}: servers listen on every interface of the "
            "node, reachable from every network it is on (not only the one the hub uses).",
            "Leave server_bind empty (the node's own address) or name the interface the hub "
            "reaches (e.g. 'ib0').",
            "server_bind",
        )
    ]


def check_root(facts: HubFacts) -> list[Finding]:
    if not facts.root_evidence:
        return []
    return [
        Finding(
            "hub.runs-as-root",
            "low",
            "the hub runs as root (" + "; ".join(facts.root_evidence) + "): a flaw in the hub, an "
            "authenticator or a spawner is then a root compromise.",
            "Run the hub as an unprivileged account (e.g. 'jupyterhub') with the sudoers file "
            "`jupyterhub-hpc sudoers --config ... --group ...` prints.",
            facts.hub_user,
        )
    ]


HUB_CHECKS: tuple[Callable[[HubFacts], list[Finding]], ...] = (
    check_subdomain_host,
    check_internal_ssl,
    check_cookie_secret,
    check_database,
    check_config_file,
    check_internal_keys,
    check_token_in_url,
    check_prometheus,
    check_kernel_transport,
    check_server_bind,
    check_root,
)


def check_hub(facts: HubFacts) -> list[Finding]:
    return [finding for check in HUB_CHECKS for finding in check(facts)]


# -- reading the facts -----------------------------------------------------------------------------


def file_facts(path: str) -> FileFacts:
    try:
        info = os.lstat(path)
    except OSError:
        return FileFacts(path, False)
    try:
        owner = pwd.getpwuid(info.st_uid).pw_name
    except KeyError:
        owner = ""
    return FileFacts(path, True, info.st_mode, info.st_uid, owner, stat.S_ISLNK(info.st_mode))


def _truthy_env(value: str) -> bool:
    """JupyterHub's reading of a boolean variable (``jupyterhub.utils._bool_env``)."""
    return value != "" and value.lower() not in {"0", "false"}


def token_in_url_sources(
    environment: Mapping[str, Any], args: Iterable[str], env_keep: Iterable[str], hub_env: Mapping[str, str]
) -> tuple[str, ...]:
    name = "JUPYTERHUB_ALLOW_TOKEN_IN_URL"
    found = []
    value = environment.get(name)
    if callable(value):
        found.append(f"c.Spawner.environment[{name!r}] (a callable: check what it returns)")
    elif value is not None and _truthy_env(str(value)):
        found.append(f"c.Spawner.environment[{name!r}] = {value!r}")
    if name in env_keep and _truthy_env(hub_env.get(name, "")):
        found.append(f"{name} in c.Spawner.env_keep and set in the hub's environment")
    for arg in args:
        if "allow_token_in_url" in arg.lower() and not arg.lower().endswith(("=false", "=0")):
            found.append(f"c.Spawner.args: {arg}")
    return tuple(found)


def sqlite_path(db_url: str) -> str | None:
    """The file of a ``sqlite:///`` URL ('' for an in-memory database), None for another database."""
    if not db_url.startswith("sqlite:"):
        return None
    rest = db_url.split("?", 1)[0][len("sqlite:") :]
    if rest in ("", "//", "///:memory:"):
        return ""
    return rest[3:] if rest.startswith("///") else rest.lstrip("/")


def config_secret_names(config: Mapping[str, Any]) -> tuple[str, ...]:
    """``Section.key`` of every setting that holds a secret (non-empty)."""
    names = []
    for section, values in config.items():
        if not isinstance(values, Mapping):
            continue
        for key, value in values.items():
            if isinstance(value, bool) or not value:
                continue
            if _SECRET_KEY.search(key) or (key == "db_url" and re.match(r"^[a-z+]+://[^/@]*:[^/@]+@", value)):
                names.append(f"{section}.{key}")
            if key == "services" and isinstance(value, list):
                if any(isinstance(s, Mapping) and s.get("api_token") for s in value):
                    names.append(f"{section}.services[].api_token")
    return tuple(sorted(names))


def running_hubs(proc: str = "/proc") -> list[tuple[int, int]]:
    """(pid, uid) of the processes that look like a running ``jupyterhub``."""
    found = []
    for entry in os.listdir(proc):
        if not entry.isdigit():
            continue
        try:
            with open(os.path.join(proc, entry, "cmdline"), "rb") as handle:
                argv = handle.read().split(b"\0")
            uid = os.stat(os.path.join(proc, entry)).st_uid
        except OSError:
            continue
        names = [os.path.basename(a.decode(errors="replace")) for a in argv[:2]]
        if "jupyterhub" in names:
            found.append((int(entry), uid))
    return found


def collect(
    spawner: Any,
    *,
    config_file: str | None,
    hub_user: str,
    hub_dir: str,
    db_url: str | None = None,
    environ: Mapping[str, str] | None = None,
) -> HubFacts:
    """The facts of the hub that ``spawner`` (from :func:`~jupyterhub_hpc.sudoers.load_spawner`)
    belongs to; relative paths are taken from ``hub_dir``, the hub's working directory."""
    from jupyterhub.app import JupyterHub

    env = os.environ if environ is None else environ
    quiet = logging.getLogger("jupyterhub_hpc.audit.quiet")
    quiet.setLevel(logging.CRITICAL)
    hub = JupyterHub(config=spawner.config, log=quiet)

    def here(path: str) -> str:
        return os.path.normpath(os.path.join(hub_dir, os.path.expanduser(path)))

    url = db_url or hub.db_url
    if "://" not in url:
        url = f"sqlite:///{url}"
    db_path = sqlite_path(url)
    db_files: tuple[FileFacts, ...] = ()
    if db_path:
        base = here(db_path)
        db_files = tuple(file_facts(base + suffix) for suffix in ("", "-journal", "-wal", "-shm"))
    try:
        hub_uid: int | None = pwd.getpwnam(hub_user).pw_uid
    except KeyError:
        hub_uid = None
    secret_file = file_facts(here(hub.cookie_secret_file))
    config_facts = file_facts(os.path.abspath(config_file)) if config_file else None
    keys: list[FileFacts] = []
    if hub.internal_ssl:
        certs = here(hub.internal_certs_location)
        for dirpath, _dirs, names in os.walk(certs):
            keys += [file_facts(os.path.join(dirpath, n)) for n in names if n.endswith(".key")]
    evidence = []
    if hub_user == "root":
        evidence.append("--hub-user root")
    for facts in (secret_file, *db_files[:1]):
        if facts.exists and facts.uid == 0:
            evidence.append(f"{facts.path} is owned by root")
    evidence += [f"jupyterhub process {pid} runs as root" for pid, uid in running_hubs() if uid == 0]
    backend = str(getattr(spawner, "backend", ""))
    transport = getattr(spawner, "kernel_transport", None)
    return HubFacts(
        config_file=config_file or "",
        subdomain_host=hub.subdomain_host,
        internal_ssl=hub.internal_ssl,
        authenticate_prometheus=hub.authenticate_prometheus,
        backend=backend,
        shared_nodes=backend != "local" or bool(getattr(spawner, "submit_prefix", [])),
        kernel_transport=None if transport is None else str(transport).lower(),
        server_bind=str(getattr(spawner, "server_bind", "")),
        token_in_url=token_in_url_sources(spawner.environment, spawner.args, spawner.env_keep, env),
        cookie_secret_in_config=bool(hub.cookie_secret),
        cookie_secret_env=bool(env.get("JPY_COOKIE_SECRET")),
        cookie_secret_file=secret_file,
        db_kind="sqlite" if db_path else ("memory" if db_path == "" else url.split(":", 1)[0]),
        db_files=db_files,
        config_secrets=config_secret_names(spawner.config),
        config_file_facts=config_facts,
        internal_keys=tuple(keys),
        hub_user=hub_user,
        hub_uid=hub_uid,
        root_evidence=tuple(evidence),
    )
