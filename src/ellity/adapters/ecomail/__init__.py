"""Ecomail over HTTP (httpx lives only here) and the shared pacing of its requests."""

from ellity.adapters.ecomail.client import DEFAULT_BASE_URL, EcomailMarketingPlatform
from ellity.adapters.ecomail.limiter import (
    LocalRequestLimiter,
    RedisRequestLimiter,
    RequestLimiter,
    limiter_key,
    request_limiter,
)
from ellity.adapters.ecomail.platforms import EcomailPlatforms, EcomailSettings

__all__ = [
    "DEFAULT_BASE_URL",
    "EcomailMarketingPlatform",
    "EcomailPlatforms",
    "EcomailSettings",
    "LocalRequestLimiter",
    "RedisRequestLimiter",
    "RequestLimiter",
    "limiter_key",
    "request_limiter",
]
