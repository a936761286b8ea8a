"""Who the reader is, as the hub knows it: the hub's groups of a user and the profile, cluster and
partition of each of their active servers, fetched with the service's own token (its role has
``read:users:groups`` and ``read:servers``; see ``config.announcements_service``).

A user's token (or the service's OAuth cookie) only says who they are; what they belong to comes
from the hub, so a reader cannot claim a group or a partition."""

from __future__ import annotations

import asyncio
import json
import logging
import time
from collections.abc import Mapping
from datetime import datetime, timezone
from typing import Any
from urllib.parse import quote

from tornado.httpclient import AsyncHTTPClient, HTTPClientError, HTTPRequest

from .model import UserContext
from .reservations import windows_of

__all__ = ["WRITE_SCOPE", "HubDirectory", "can_write", "context_from_hub"]

log = logging.getLogger(__name__)

#: the custom scope writers need (``c.JupyterHub.custom_scopes``), never the admin bit
WRITE_SCOPE = "custom:announcements:write"


def can_write(model: Mapping[str, Any]) -> bool:
    """Whether the hub's model of a token or OAuth cookie carries the write scope."""
    return WRITE_SCOPE in (model.get("scopes") or ())


def context_from_hub(user: Mapping[str, Any], cards: list[Mapping[str, Any]]) -> UserContext:
    """The audience context of the hub's user model ``user`` and the hub cards (the card
    contract's JSON, ``GET /hub/api/hpc/card/{user}/{server}``) of their active servers."""
    profiles, clusters, partitions = set(), set(), set()
    maintenance = []
    for card in cards:
        maintenance.extend(windows_of(card))
        if isinstance(card.get("profile"), str) and card["profile"]:
            profiles.add(card["profile"])
        if isinstance(card.get("cluster"), str) and card["cluster"]:
            clusters.add(card["cluster"])
        job = card.get("job")
        if isinstance(job, Mapping) and isinstance(job.get("partition"), str) and job["partition"]:
            partitions.add(job["partition"])
    groups = [g for g in user.get("groups") or () if isinstance(g, str)]
    return UserContext(
        name=str(user["name"]),
        groups=frozenset(groups),
        profiles=frozenset(profiles),
        clusters=frozenset(clusters),
        partitions=frozenset(partitions),
        maintenance=tuple(maintenance),
    )


class HubDirectory:
    """Resolves ``UserContext`` through the hub's REST API, cached ``cache_seconds`` per user
    (so N open Lab tabs polling the service ask the hub at most once per interval per user)."""

    def __init__(
        self,
        api_url: str,
        api_token: str,
        card_path: str = "hpc/card/{user}/{server}",
        cache_seconds: float = 10.0,
        timeout: float = 10.0,
    ) -> None:
        self.api_url = api_url.rstrip("/") + "/"
        self._token = api_token
        self.card_path = card_path
        self.cache_seconds = cache_seconds
        self.timeout = timeout
        self._cache: dict[str, tuple[float, UserContext]] = {}
        self._seen: dict[str, datetime] = {}
        self._client = AsyncHTTPClient()

    async def _get(self, path: str) -> Any:
        request = HTTPRequest(
            self.api_url + path,
            headers={"Authorization": f"token {self._token}", "Accept": "application/json"},
            request_timeout=self.timeout,
        )
        response = await self._client.fetch(request)
        return json.loads(response.body)

    async def _card(self, user: str, server: str) -> dict[str, Any] | None:
        path = self.card_path.format(user=quote(user, safe=""), server=quote(server, safe=""))
        try:
            card = await self._get(path)
        except HTTPClientError as exc:
            # 404: no card (yet) for this server, or a hub without the card API; either way no
            # profile/partition to target by
            if exc.code not in (403, 404):
                log.warning("hub card %s: HTTP %s", path, exc.code)
            return None
        except (OSError, ValueError) as exc:
            log.warning("hub card %s: %s", path, exc)
            return None
        return card if isinstance(card, dict) else None

    async def context(self, name: str) -> UserContext:
        cached = self._cache.get(name)
        now = time.monotonic()
        if cached and now - cached[0] < self.cache_seconds:
            return cached[1]
        try:
            user = await self._get(f"users/{quote(name, safe='')}")
        except (HTTPClientError, OSError, ValueError) as exc:
            # without the hub's view the reader gets what is for everyone or for them by name
            log.warning("hub user model of %s: %s", name, exc)
            return UserContext(name=name)
        servers = user.get("servers") or {}
        cards = await asyncio.gather(*(self._card(name, server) for server in sorted(servers)))
        ctx = context_from_hub(user, [c for c in cards if c is not None])
        if len(self._cache) > 10_000:
            self._cache.clear()
        self._cache[name] = (now, ctx)
        self._note_seen(ctx)
        return ctx

    def _note_seen(self, ctx: UserContext) -> None:
        if len(self._seen) > 10_000:
            self._seen.clear()
        at = datetime.now(timezone.utc)
        for window in ctx.maintenance:
            self._seen.setdefault(window.id, at)

    @property
    def seen(self) -> Mapping[str, datetime]:
        """When this process first saw each reservation (its announcement's ``starts``)."""
        return self._seen
