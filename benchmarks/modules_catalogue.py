"""The module catalogue at scale: 5,000 generated Lua modulefiles in a temporary tree.

Measures, with Debian's real Lmod (``scripts/modules.sh install``):

- the time of Lmod's ``spider -o spider-json`` over the tree (the hub's listing command);
- the hub cache's memory for that catalogue (tracemalloc: what one refresh keeps, parsed);
- the spawn form's render time with that catalogue in a ``modules`` option (target < 100 ms),
  the first render (which filters the catalogue by the option's allow/deny once) and later ones;
- the listings per TTL per cluster: many concurrent and later callers of one cache (target 1).

Run: ``/opt/jupyterhub-hpc/venv/bin/python benchmarks/modules_catalogue.py [--modules 5000]``;
it prints the numbers (and ``--json`` them as one object).
"""

from __future__ import annotations

import argparse
import asyncio
import gc
import json
import shutil
import statistics
import subprocess
import tempfile
import time
import tracemalloc
from pathlib import Path
from typing import Any

from jupyterhub_hpc.backends.slurm import SlurmBackend
from jupyterhub_hpc.client import ClientSettings, SchedulerClient
from jupyterhub_hpc.module_access import CatalogueCache
from jupyterhub_hpc.modules import ModuleSystem
from jupyterhub_hpc.profiles.form import render_form
from jupyterhub_hpc.profiles.model import parse_profile_list
from jupyterhub_hpc.profiles.validate import Context, reconcile

SPIDER = "/usr/share/lmod/lmod/libexec/spider"
VERSIONS = 5  # versions per package: 1,000 packages for 5,000 modulefiles


def generate(root: Path, count: int) -> None:
    """``count`` Lua modulefiles: package ``pkgNNNN``, versions 1.0..5.0, each with a whatis
    line, a help text and a PATH entry, the middle version marked default."""
    for n in range(count // VERSIONS):
        package = root / f"pkg{n:04d}"
        package.mkdir()
        for v in range(1, VERSIONS + 1):
            (package / f"{v}.0.lua").write_text(
                f'whatis("Generated package {n} version {v}.0 for the catalogue benchmark")\n'
                f"help([[pkg{n:04d} {v}.0: a generated module]])\n"
                f'prepend_path("PATH", "/opt/generated/pkg{n:04d}/{v}.0/bin")\n'
            )
        (package / ".modulerc.lua").write_text(f'module_version("pkg{n:04d}/3.0", "default")\n')


def spider_seconds(tree: Path, runs: int) -> tuple[list[float], int]:
    times, size = [], 0
    for _ in range(runs):
        t0 = time.perf_counter()
        done = subprocess.run([SPIDER, "-o", "spider-json", str(tree)], capture_output=True, check=True)
        times.append(time.perf_counter() - t0)
        size = len(done.stdout)
    return times, size


async def cache_numbers(system: ModuleSystem, callers: int) -> dict[str, Any]:
    client = SchedulerClient(SlurmBackend(), ClientSettings(timeout=300))
    cache = CatalogueCache(client, system)
    gc.collect()
    tracemalloc.start()
    before = tracemalloc.take_snapshot()
    t0 = time.perf_counter()
    results = await asyncio.gather(*(cache.get(ttl=3600, timeout=300) for _ in range(callers)))
    first = time.perf_counter() - t0
    gc.collect()
    after = tracemalloc.take_snapshot()
    tracemalloc.stop()
    kept = sum(stat.size_diff for stat in after.compare_to(before, "filename"))
    for _ in range(callers):  # later callers within the TTL
        await cache.get(ttl=3600, timeout=300)
    source = results[0]
    assert source.catalogue is not None, source.error
    return {
        "source": source,
        "fetch_and_parse_s": first,
        "cache_bytes": kept,
        "modules": len(source.catalogue.modules),
        "listings": cache.refreshes,
        "listing_commands": client.counts.get("modules", 0),
        "callers": 2 * callers,
        "same_object": all(r is source for r in results),
    }


def render_numbers(source: Any, renders: int) -> dict[str, Any]:
    profiles = parse_profile_list(
        [
            {
                "display_name": "Modules",
                "slug": "mods",
                "profile_options": {
                    "modules": {
                        "type": "modules",
                        "preset": ["pkg0001"],
                        "sticky": ["pkg0000/1.0"],
                        "deny": ["pkg09*"],
                    },
                    "cpus": {"type": "integer", "job_field": "cpus", "min": 1, "max": 8},
                },
            },
            {"display_name": "Plain", "slug": "plain"},
        ]
    )
    ctx = Context(user="hpcuser1", modules={"mods": source})
    times, html = [], ""
    for _ in range(renders):
        t0 = time.perf_counter()
        prefill, notices = reconcile(profiles, {"profile": "mods", "modules": ["pkg0002/4.0"]}, ctx)
        html = render_form(profiles, ctx, prefill, notices)
        times.append(time.perf_counter() - t0)
    return {
        "first_ms": times[0] * 1000,
        "median_ms": statistics.median(times[1:]) * 1000,
        "html_bytes": len(html),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--modules", type=int, default=5000)
    parser.add_argument("--spider-runs", type=int, default=3)
    parser.add_argument("--renders", type=int, default=21)
    parser.add_argument("--callers", type=int, default=200)
    parser.add_argument("--json", action="store_true", help="print one JSON object instead")
    args = parser.parse_args()
    root = Path(tempfile.mkdtemp(prefix="modules-bench-"))
    try:
        t0 = time.perf_counter()
        generate(root, args.modules)
        generated = time.perf_counter() - t0
        spider, size = spider_seconds(root, args.spider_runs)
        system = ModuleSystem(kind="lmod", modulepath=(str(root),))
        cached = asyncio.run(cache_numbers(system, args.callers))
        rendered = render_numbers(cached.pop("source"), args.renders)
    finally:
        shutil.rmtree(root, ignore_errors=True)
    numbers = {
        "modulefiles": args.modules,
        "generate_s": round(generated, 2),
        "spider_s": [round(s, 2) for s in spider],
        "spider_median_s": round(statistics.median(spider), 2),
        "spider_json_bytes": size,
        **{k: round(v, 3) if isinstance(v, float) else v for k, v in cached.items()},
        "cache_mib": round(cached["cache_bytes"] / 2**20, 1),
        "form_first_ms": round(rendered["first_ms"], 1),
        "form_median_ms": round(rendered["median_ms"], 1),
        "form_html_kib": round(rendered["html_bytes"] / 1024),
        "form_target_ms": 100,
    }
    if args.json:
        print(json.dumps(numbers))
        return
    print(f"{args.modules} generated Lua modulefiles ({numbers['generate_s']} s to write)")
    print(
        f"Lmod spider -o spider-json: {numbers['spider_s']} s (median {numbers['spider_median_s']} s), "
        f"{size / 2**20:.1f} MiB of JSON"
    )
    print(
        f"cache: first fetch + parse {numbers['fetch_and_parse_s']} s, {numbers['modules']} modules, "
        f"{numbers['cache_mib']} MiB kept (tracemalloc)"
    )
    print(
        f"listings per TTL for {numbers['callers']} callers of one cluster: {numbers['listings']} "
        f"(commands run: {numbers['listing_commands']}, one shared catalogue: {numbers['same_object']})"
    )
    print(
        f"form render with the catalogue: first {numbers['form_first_ms']} ms, then median "
        f"{numbers['form_median_ms']} ms (target < 100 ms), {numbers['form_html_kib']} KiB of HTML"
    )


if __name__ == "__main__":
    main()
