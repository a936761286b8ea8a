"""A :class:`~.model.Migration` as the text of a ``jupyterhub_config.py``.

The printed file loads on its own (traitlets' loader, then ``check_profiles(c)``); the
settings that are not carried over follow as a commented table, and translated job-script
templates either are written next to it (``--write-templates``) or follow as comments.
"""

from __future__ import annotations

from typing import Any

from .model import Migration

__all__ = ["render_config", "render_table"]


def _value(value: Any, indent: int = 0) -> str:
    """A Python literal: short values on one line, longer mappings and lists one item a line."""
    flat = repr(value)
    if len(flat) + indent <= 96 or not isinstance(value, dict | list | tuple) or not value:
        return flat
    inner = " " * (indent + 4)
    if isinstance(value, dict):
        items = [f"{inner}{key!r}: {_value(item, indent + 4)}," for key, item in value.items()]
        return "{\n" + "\n".join(items) + "\n" + " " * indent + "}"
    items = [f"{inner}{_value(item, indent + 4)}," for item in value]
    brackets = "[]" if isinstance(value, list) else "()"
    return brackets[0] + "\n" + "\n".join(items) + "\n" + " " * indent + brackets[1]


def _cell(text: str) -> str:
    return text.replace("|", "\\|").replace("\n", " ")


def render_table(migration: Migration) -> list[str]:
    """The not-carried table, as Markdown lines (without the comment marks)."""
    if not migration.not_carried:
        return ["Every setting was carried over."]
    lines = ["| setting | why it is not carried over |", "|---|---|"]
    lines += [f"| `{_cell(item.setting)}` | {_cell(item.why)} |" for item in migration.not_carried]
    return lines


def render_config(migration: Migration, source: str, *, templates_written: bool) -> str:
    """The whole printed configuration."""
    out = [
        f"# jupyterhub-hpc configuration, migrated by `jupyterhub-hpc migrate` from {source}",
        f"# (the original spawner: {migration.original or 'not named'}). Review it, then replace the",
        "# spawner part of your configuration with it: see docs/migrating.md.",
        "from jupyterhub_hpc.profiles import check_profiles",
        "from jupyterhub_hpc.profiles.handlers import all_handlers",
        "",
        "c = get_config()  # noqa: F821",
        f"c.JupyterHub.spawner_class = {migration.spawner_class!r}",
        "c.JupyterHub.extra_handlers = all_handlers",
        "",
    ]
    for key, value in migration.spawner_traits.items():
        out.append(f"c.Spawner.{key} = {_value(value)}")
    for key, value in migration.traits.items():
        out.append(f"c.{migration.section}.{key} = {_value(value)}")
    if migration.partition_limits:
        out.append(f"c.{migration.section}.partition_limits = {_value(migration.partition_limits)}")
    if migration.profile_list:
        out.append(f"c.{migration.section}.profile_list = {_value(migration.profile_list)}")
    out += ["", "check_profiles(c)", "", "# Not carried over:", "#"]
    out += [f"# {line}" for line in render_table(migration)]
    for path, text in migration.templates.items():
        out.append("#")
        if templates_written:
            out.append(f"# The job-script template was written to {path}.")
            continue
        out.append(f"# Save this job-script template as {path} (or run again with --write-templates):")
        out += [f"#     {line}" if line else "#" for line in text.rstrip("\n").split("\n")]
    return "\n".join(out) + "\n"
