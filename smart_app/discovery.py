"""Each EHR's ``.well-known/smart-configuration``, read once per a few minutes rather than on every launch.

``/smart/launch`` is anonymous: without a cache every GET made this service fetch the EHR's configuration, so a flood
of launches became a flood on the EHR (and a slow EHR held a connection per launch). Here each issuer's answer is
kept for ``ttl_s``; a failure is kept only ``failure_ttl_s`` (an EHR back up is used again within seconds, and one that
is down is not asked by every launch meanwhile); concurrent launches for one issuer share one fetch; at most
``max_issuers`` issuers are kept (only allowed issuers reach the cache, so the bound is a backstop).
"""

from __future__ import annotations

import asyncio
import time
from collections import OrderedDict
from collections.abc import Awaitable, Callable
from dataclasses import dataclass

import httpx

from .oauth import OAuthProblem, SmartConfiguration, discover


@dataclass(frozen=True, slots=True)
class _Entry:
    config: SmartConfiguration | None
    problem: OAuthProblem | None
    until: float


class SmartConfigurations:
    def __init__(self, http: httpx.AsyncClient, *, ttl_s: float = 300, failure_ttl_s: float = 10,
                 max_issuers: int = 64, clock: Callable[[], float] = time.monotonic,
                 fetch: Callable[[httpx.AsyncClient, str], Awaitable[SmartConfiguration]] = discover) -> None:
        self._http = http
        self._ttl_s, self._failure_ttl_s, self._max = ttl_s, failure_ttl_s, max_issuers
        self._clock = clock
        self._fetch = fetch
        self._entries: OrderedDict[str, _Entry] = OrderedDict()
        self._pending: dict[str, asyncio.Future[_Entry]] = {}

    async def get(self, iss: str) -> SmartConfiguration:
        """The issuer's configuration; raises :class:`OAuthProblem` (a page) when it cannot be read."""
        key = iss.rstrip("/")
        entry = self._entries.get(key)
        if entry is None or entry.until <= self._clock():
            entry = await self._refresh(key)
        else:
            self._entries.move_to_end(key)
        if entry.problem is not None:
            raise entry.problem
        assert entry.config is not None
        return entry.config

    async def _refresh(self, key: str) -> _Entry:
        pending = self._pending.get(key)
        if pending is not None:
            await asyncio.wait({pending})  # raises only when this caller is cancelled, not when the fetch failed
            if not pending.cancelled() and pending.exception() is None:
                return pending.result()
            return await self._refresh(key)  # the launch that fetched went away: fetch for this one
        future: asyncio.Future[_Entry] = asyncio.get_running_loop().create_future()
        self._pending[key] = future
        try:
            try:
                config = await self._fetch(self._http, key)
            except OAuthProblem as exc:
                entry = _Entry(None, exc, self._clock() + self._failure_ttl_s)
            else:
                entry = _Entry(config, None, self._clock() + self._ttl_s)
            self._entries[key] = entry
            self._entries.move_to_end(key)
            while len(self._entries) > self._max:
                self._entries.popitem(last=False)
            future.set_result(entry)
            return entry
        except BaseException:  # the fetching launch was cancelled (or a bug): those waiting fetch for themselves
            future.cancel()
            raise
        finally:
            del self._pending[key]
