"""Translate a batchspawner / wrapspawner / jupyterhub-moss configuration to this project's.

``jupyterhub-hpc migrate jupyterhub_config.py`` reads the file as data (:mod:`.load`),
translates it with pure functions (:mod:`.translate`, :mod:`.batch`, :mod:`.commands`,
:mod:`.script`, :mod:`.forms`) and prints an equivalent configuration followed by a table of
every setting it could not carry over, and why (:mod:`.emit`). See docs/migrating.md.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import Any

from .model import MigrateError, Migration, NotCarried

__all__ = ["MigrateError", "Migration", "NotCarried", "add_arguments", "migrate_file", "run"]


def _trait_names() -> tuple[frozenset[str], frozenset[str]]:
    """JupyterHub's Spawner traits, and those of this project's spawners."""
    from jupyterhub.spawner import Spawner

    from ..spawner import HPCSpawner

    return frozenset(Spawner.class_trait_names()), frozenset(HPCSpawner.class_trait_names())


def _spawner_class(entry_point: str) -> Any:
    from importlib.metadata import entry_points

    for ep in entry_points(group="jupyterhub.spawners"):
        if ep.name == entry_point:
            return ep.load()
    from ..spawner import HPCSpawner

    return HPCSpawner


def migrate_file(
    path: str | Path, *, scheduler: str | None = None, template_dir: str | None = None
) -> Migration:
    """Read ``path`` and translate it (:func:`.translate.migrate_sections`)."""
    from .load import load_config_file, sections_of
    from .translate import migrate_sections

    sections, dropped = sections_of(load_config_file(path))
    spawner_traits, own_traits = _trait_names()
    directory = template_dir or str(Path(path).resolve().parent)
    migration = migrate_sections(
        sections,
        spawner_traits=spawner_traits,
        own_traits=own_traits,
        scheduler=scheduler,
        template_dir=directory,
    )
    migration.not_carried = dropped + migration.not_carried
    _check_values(migration)
    return migration


def _check_values(migration: Migration) -> None:
    """Move every carried value that its trait refuses (a text where a number belongs, a
    placeholder the original filled in by code) to the not-carried list, with the reason."""
    from traitlets import TraitError

    cls = _spawner_class(migration.spawner_class)
    instance = cls()
    for section, values in (("Spawner", migration.spawner_traits), (migration.section, migration.traits)):
        for key in list(values):
            if not instance.has_trait(key):
                continue
            try:
                setattr(instance, key, values[key])
            except (TraitError, ValueError) as exc:
                del values[key]
                migration.not_carried.append(NotCarried(f"c.{section}.{key}", f"{exc}".split("\n")[0]))


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("config", help="the batchspawner / wrapspawner / moss jupyterhub_config.py")
    parser.add_argument(
        "--scheduler",
        choices=["slurm", "pbs", "torque", "sge", "lsf", "htcondor"],
        help="the scheduler, when the file's spawner is a class of the site's own",
    )
    parser.add_argument(
        "--template-dir",
        help="where translated job-script templates go (default: the config file's directory)",
    )
    parser.add_argument(
        "--write-templates",
        action="store_true",
        help="write the translated job-script templates (else they are printed as comments)",
    )


def run(args: argparse.Namespace) -> int:
    from .emit import render_config

    try:
        migration = migrate_file(args.config, scheduler=args.scheduler, template_dir=args.template_dir)
    except MigrateError as exc:
        print(f"jupyterhub-hpc migrate: {exc}", file=sys.stderr)
        return 2
    if args.write_templates:
        for path, text in migration.templates.items():
            Path(path).parent.mkdir(parents=True, exist_ok=True)
            Path(path).write_text(text)
    sys.stdout.write(render_config(migration, args.config, templates_written=bool(args.write_templates)))
    return 0
