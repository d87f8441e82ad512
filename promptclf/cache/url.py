"""The answer-cache backend a setting names (SQLite, Redis or none): kept apart from store.py so the backends
it chooses between can build on store.py without importing each other in a circle."""

from __future__ import annotations

from promptclf.cache.store import CacheBackend, SQLiteCache
from promptclf.core.errors import ConfigError


def open_cache(cache) -> CacheBackend | None:
    """The backend `cache` names: True (the default SQLite directory), False/None/"none" (no cache), a
    directory, a URL (`sqlite://dir`, `redis://[:password@]host:port/db`, `rediss://…`), or a backend."""
    if cache is True:
        return SQLiteCache()
    if cache is False or cache is None:
        return None
    if isinstance(cache, CacheBackend):
        return cache
    text = str(cache)
    if text == "none":
        return None
    if text.startswith("sqlite://"):
        return SQLiteCache(text[len("sqlite://") :] or None)
    if text.startswith(("redis://", "rediss://", "unix://")):
        from promptclf.cache.redis_store import RedisCache

        return RedisCache(text)
    if "://" in text:
        from promptclf.core.credentials import redact_url

        raise ConfigError(
            f"cache {redact_url(text)!r}: unknown kind; use sqlite://<directory>, redis://host:port/db or none"
        )
    return SQLiteCache(text)  # a plain path: a directory, as before URLs
