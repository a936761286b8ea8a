"""Live limits from the scheduler, cached: one query per scheduler per TTL for the whole hub.

One partition query (Slurm: ``sinfo``; and ``sacctmgr`` where accounting exists) per
scheduler client per TTL serves every user of the hub process: :class:`LimitsCache`
keeps the last answer, hands it out while a refresh runs, and never lets a failing
scheduler break a page (the last good data, or none, is returned with the error
noted). The queries are the backend's and run through its
:class:`~jupyterhub_hpc.client.SchedulerClient` (over SSH on a remote submit host); the
types are :mod:`jupyterhub_hpc.backends.limits`. Values configured by the admin
(``partition_limits``) override live ones.
"""

from __future__ import annotations

import asyncio
import logging
import time
from dataclasses import replace

from ..backends.base import QueryError
from ..backends.limits import (
    Associations,
    ClusterLimits,
    PartitionInfo,
    configured_partition_fields,
    parse_gres,
)
from ..client import SchedulerClient
from ..commands import CommandError

__all__ = [
    "Associations",
    "ClusterLimits",
    "LimitsCache",
    "PartitionInfo",
    "configured_partition_fields",
    "get_limits_cache",
    "parse_gres",
]

log = logging.getLogger(__name__)


class LimitsCache:
    """The limits of one scheduler, shared by all users; at most one query per ``ttl`` seconds."""

    def __init__(self, client: SchedulerClient) -> None:
        self.client = client
        self.current: ClusterLimits | None = None
        self.queries = 0
        self._refresh: asyncio.Task[ClusterLimits] | None = None

    async def get(self, ttl: float, timeout: float) -> ClusterLimits:
        """Fresh data, or the last data while a refresh runs; the first call waits (up to ``timeout``)."""
        now = time.time()
        if self.current is not None and now - self.current.fetched_at < ttl:
            return self.current
        if self._refresh is None or self._refresh.done():
            self._refresh = asyncio.ensure_future(self._fetch(timeout))
        if self.current is not None:
            return self.current
        return await asyncio.shield(self._refresh)

    async def _fetch(self, timeout: float) -> ClusterLimits:
        self.queries += 1
        previous = self.current or ClusterLimits()
        try:
            result = await self.client.limits(timeout)
        except (CommandError, QueryError) as exc:
            log.warning("scheduler limits unavailable (%s): %s", self.client.describe(), exc)
            result = replace(previous, fetched_at=time.time(), live=False, error=str(exc))
        self.current = result
        return result


_CACHES: dict[tuple[object, ...], LimitsCache] = {}


def get_limits_cache(client: SchedulerClient) -> LimitsCache:
    """The one cache for this scheduler client in this process (created on first use)."""
    cache = _CACHES.get(client.key)
    if cache is None:
        cache = _CACHES[client.key] = LimitsCache(client)
    return cache
