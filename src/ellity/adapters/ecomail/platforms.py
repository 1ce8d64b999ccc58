"""``MarketingPlatforms`` for Ecomail: one httpx client and one request limiter for the process.

Built once by the composition root and closed with ``aclose``; ``for_key`` hands out a light
``EcomailMarketingPlatform`` per merchant that shares both. Redirects are not followed: the
API never redirects, and following one could send the key somewhere else.
"""

from __future__ import annotations

from dataclasses import dataclass
from types import TracebackType

import httpx

from ellity.adapters.ecomail.client import DEFAULT_BASE_URL, EcomailMarketingPlatform
from ellity.adapters.ecomail.limiter import RequestLimiter
from ellity.ports.operations import WorkCounters

USER_AGENT = "Ellity/0.1 (loyalty points)"


@dataclass(frozen=True, slots=True)
class EcomailSettings:
    base_url: str = DEFAULT_BASE_URL
    connect_timeout: float = 5.0  # seconds
    read_timeout: float = 20.0
    write_timeout: float = 20.0
    pool_timeout: float = 10.0  # waiting for a free connection of the shared pool
    max_connections: int = 50
    max_keepalive_connections: int = 10


class EcomailPlatforms:
    """Owns the shared ``httpx.AsyncClient`` and the limiter it is given (closes both)."""

    def __init__(
        self,
        limiter: RequestLimiter,
        settings: EcomailSettings | None = None,
        *,
        transport: httpx.AsyncBaseTransport | None = None,
        counters: WorkCounters | None = None,
    ) -> None:
        """``transport`` replaces the network (tests: ``httpx.MockTransport``); ``counters``
        count Ecomail's 429 answers."""
        self.settings = settings or EcomailSettings()
        self._limiter = limiter
        self._counters = counters
        self._http = httpx.AsyncClient(
            timeout=httpx.Timeout(
                connect=self.settings.connect_timeout,
                read=self.settings.read_timeout,
                write=self.settings.write_timeout,
                pool=self.settings.pool_timeout,
            ),
            limits=httpx.Limits(
                max_connections=self.settings.max_connections,
                max_keepalive_connections=self.settings.max_keepalive_connections,
            ),
            headers={"User-Agent": USER_AGENT},
            follow_redirects=False,
            transport=transport,
        )

    def for_key(
        self, api_key: str, *, account: str, share: float | None = None
    ) -> EcomailMarketingPlatform:
        """With a ``share``, the platform's requests stay within that share of the key's
        budget (the limiter's share lane) besides counting against all of it."""
        return EcomailMarketingPlatform(
            self._http,
            api_key,
            account=account,
            limiter=self._limiter,
            base_url=self.settings.base_url,
            counters=self._counters,
            share=share,
        )

    async def aclose(self) -> None:
        try:
            await self._http.aclose()
        finally:
            await self._limiter.aclose()

    async def __aenter__(self) -> EcomailPlatforms:
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        await self.aclose()
