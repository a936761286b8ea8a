"""``jupyterhub-hpc audit``: the red team's checklist, run by an admin against their own deployment.

Three scopes:

- ``jupyterhub-hpc audit --config jupyterhub_config.py [--sudoers FILE]`` checks the hub:
  its configuration (``subdomain_host``, ``internal_ssl``, ``kernel_transport``,
  ``server_bind``, tokens in URLs, ``authenticate_prometheus``), the permissions of its
  cookie secret, database and keys, whether it runs as root, and the hub account's sudo
  rules, also against the file ``jupyterhub-hpc sudoers`` generates for the same config.
- ``jupyterhub-hpc audit --image IMAGE`` (repeatable) checks the container images an admin
  lists, offline: setuid and setgid files, a usable ``sudo`` or ``su``, a default uid 0,
  world-writable directories and files, writable ``/etc/passwd``, and whether
  ``jupyterhub-singleuser`` is inside.
- ``jupyterhub-hpc audit --node``, run as an ordinary user in a job on a compute node,
  checks what that user can reach of other users' servers, kernels, job outputs and
  runtime files.

Each finding has a severity (high, medium, low, info), what was found, the fix and a
reference (``docs/audit.md``). The exit status is 2 when any finding is high, 0 otherwise
(1: the audit could not run).
"""

from __future__ import annotations

import argparse
import grp
import json
import os
import pwd
import socket
import sys

from .findings import Finding, exit_status, render_json, render_text, report

__all__ = ["Finding", "add_arguments", "run"]


def add_arguments(parser: argparse.ArgumentParser) -> None:
    from .node import DEFAULT_OUTPUT_GLOBS, DEFAULT_RUNTIME_GLOBS

    parser.add_argument("--json", action="store_true", help="print the findings as JSON")
    hub = parser.add_argument_group("hub (default scope)")
    hub.add_argument("--config", "-f", help="the hub's jupyterhub_config.py (default: none)")
    hub.add_argument("--spawner-class", help="overrides c.JupyterHub.spawner_class (default: slurm)")
    hub.add_argument("--hub-user", default="jupyterhub", help="the account the hub runs as")
    hub.add_argument(
        "--hub-dir",
        default=".",
        help="the hub's working directory, where relative paths (cookie secret, sqlite "
        "database, internal-ssl) are (default: the current directory)",
    )
    db = hub.add_mutually_exclusive_group()
    db.add_argument("--db-url", help="overrides c.JupyterHub.db_url")
    db.add_argument("--db-file", help="the hub's sqlite database file")
    hub.add_argument("--sudoers", help="a sudoers file granting the hub account its commands")
    hub.add_argument("--secure-path", help="sudo's secure_path (for the expected sudoers rules)")
    hub.add_argument(
        "--program",
        action="append",
        default=[],
        dest="programs",
        metavar="NAME=PATH",
        help="absolute path of a program for the expected sudoers rules (repeatable)",
    )
    node = parser.add_argument_group("node (--node)")
    node.add_argument(
        "--node", action="store_true", help="audit this compute node as the current user (run inside a job)"
    )
    node.add_argument(
        "--output-glob",
        action="append",
        default=[],
        help=f"job output files to look for (repeatable; default {' '.join(DEFAULT_OUTPUT_GLOBS)})",
    )
    node.add_argument(
        "--runtime-glob",
        action="append",
        default=[],
        help=f"Jupyter runtime directories (repeatable; default {' '.join(DEFAULT_RUNTIME_GLOBS)})",
    )
    node.add_argument("--no-probe", action="store_true", help="do not connect to other users' ports")
    node.add_argument("--probe-timeout", type=float, default=1.0, help="seconds per port probe (default 1)")
    image = parser.add_argument_group("image (--image)")
    image.add_argument(
        "--image",
        action="append",
        default=[],
        dest="images",
        metavar="PATH",
        help="a container image to check, offline: a root file system directory, a tar of one "
        "(podman export), a docker- or OCI-archive (podman image save), SquashFS (needs unsquashfs); "
        "repeatable",
    )


def _hub_identity(hub_user: str) -> tuple[int | None, list[str]]:
    try:
        entry = pwd.getpwnam(hub_user)
    except KeyError:
        return None, []
    names = []
    for gid in os.getgrouplist(hub_user, entry.pw_gid):
        try:
            names.append(grp.getgrgid(gid).gr_name)
        except KeyError:
            continue
    return entry.pw_uid, names


def hub_findings(args: argparse.Namespace) -> list[Finding]:
    """Raises :class:`~jupyterhub_hpc.sudoers.SudoersError` or OSError when it cannot run."""
    from .. import sudoers
    from . import hub
    from .sudoers_checks import check_sudoers
    from .sudoers_file import parse_sudoers

    spawner = sudoers.load_spawner(args.config, args.spawner_class)
    db_url = f"sqlite:///{os.path.abspath(args.db_file)}" if args.db_file else args.db_url
    facts = hub.collect(
        spawner,
        config_file=args.config,
        hub_user=args.hub_user,
        hub_dir=os.path.abspath(args.hub_dir),
        db_url=db_url,
    )
    findings = hub.check_hub(facts)
    if args.sudoers:
        with open(args.sudoers, encoding="utf-8") as handle:
            parsed = parse_sudoers(handle.read())
        commands = dict(item.split("=", 1) for item in args.programs if "=" in item)
        expected = None
        error = ""
        try:
            expected = sudoers.rules_for_spawner(
                spawner, secure_path=args.secure_path or sudoers.DEFAULT_SECURE_PATH, commands=commands
            )
        except sudoers.SudoersError as exc:
            error = str(exc)
        uid, groups = _hub_identity(args.hub_user)
        findings += check_sudoers(
            parsed,
            hub_user=args.hub_user,
            hub_uid=uid,
            hub_groups=groups,
            expected=expected,
            expected_env=spawner.secret_env_names,
            expected_error=error,
        )
    return findings


def node_findings(args: argparse.Namespace) -> list[Finding]:
    from . import node, node_probe

    facts = node_probe.collect(
        args.output_glob or node.DEFAULT_OUTPUT_GLOBS,
        args.runtime_glob or node.DEFAULT_RUNTIME_GLOBS,
        do_probe=not args.no_probe,
        timeout=args.probe_timeout,
    )
    return node.check_node(facts)


def image_findings(path: str) -> tuple[str, list[Finding]]:
    """The scope heading and the findings of one image; raises ImageError when it cannot be read."""
    from .image_checks import check_image
    from .image_read import read_image

    contents = read_image(path)
    return f"image {path} ({contents.kind})", list(contents.problems) + check_image(
        contents.entries, user=contents.user
    )


def run_images(args: argparse.Namespace) -> int:
    """Each ``--image`` under its own heading; the exit status is the worst: 2 when any image has
    a high finding, else 1 when one could not be read."""
    from .image_read import ImageError

    missing = [path for path in args.images if not os.path.lexists(path)]
    if missing:
        print(f"jupyterhub-hpc audit: no such image: {', '.join(missing)}", file=sys.stderr)
        return 1
    reports = []
    statuses = []
    for path in args.images:
        try:
            scope, findings = image_findings(path)
        except (ImageError, OSError) as exc:
            print(f"jupyterhub-hpc audit: {exc}", file=sys.stderr)
            statuses.append(1)
            continue
        statuses.append(exit_status(findings))
        if args.json:
            reports.append(report(findings, scope))
        else:
            sys.stdout.write(render_text(findings, f"jupyterhub-hpc audit: {scope}") + "\n")
    status = 2 if 2 in statuses else max(statuses, default=0)
    if args.json:
        sys.stdout.write(json.dumps({"images": reports, "exit_status": status}, indent=2) + "\n")
    return status


def run(args: argparse.Namespace) -> int:
    if args.images:
        if args.node:
            print("jupyterhub-hpc audit: --image and --node are separate runs", file=sys.stderr)
            return 1
        return run_images(args)
    if args.node and os.geteuid() == 0:
        print(
            "jupyterhub-hpc audit: run --node as an ordinary user (in a job): root reads everything",
            file=sys.stderr,
        )
        return 1
    try:
        if args.node:
            try:
                me = pwd.getpwuid(os.getuid()).pw_name
            except KeyError:
                me = f"uid {os.getuid()}"
            scope = f"node {socket.gethostname()}, as {me}"
            findings = node_findings(args)
        else:
            scope = f"hub config {args.config or '(defaults)'}"
            findings = hub_findings(args)
    except Exception as exc:  # the configuration's own errors, unreadable files: say so, exit 1
        print(f"jupyterhub-hpc audit: {type(exc).__name__}: {exc}", file=sys.stderr)
        return 1
    if args.json:
        sys.stdout.write(render_json(findings, scope))
    else:
        sys.stdout.write(render_text(findings, f"jupyterhub-hpc audit: {scope}"))
    return exit_status(findings)
