"""The answer cache on Redis, shared by every worker that can reach the server (pip install promptclf[redis])."""

from __future__ import annotations

import os
from collections.abc import Iterable, Iterator

from promptclf.cache.store import CacheError, OneByOne, answer_key, decode, encode
from promptclf.core.credentials import redact_url
from promptclf.core.errors import ConfigError

PREFIX = "promptclf:answer:"
# The password for a URL that holds none: what lets a cache travel to another process (Ray, multiprocessing)
# without its password in the pickle.
PASSWORD_VAR = "PROMPTCLF_REDIS_PASSWORD"


class RedisCache(OneByOne):
    """JSON answers under `promptclf:answer:<sha256>`: `MGET` per chunk of keys, `SET NX` (first answer wins)
    in one pipeline per chunk, so each chunk costs one round trip. The password is the URL's, else
    $PROMPTCLF_REDIS_PASSWORD's (the only form that can be sent to another process)."""

    CHUNK = 1000
    key = staticmethod(answer_key)

    def __init__(self, url: str, timeout: float = 30.0):
        try:
            import redis
        except ImportError as exc:
            raise ConfigError(
                f"cache {redact_url(url)}: the redis client is missing; pip install 'promptclf[redis]'"
            ) from exc
        self.url, self._address = redact_url(url), url
        self._errors = redis.RedisError
        try:
            self._password_in_url = "password" in redis.connection.parse_url(url)
            password = None if self._password_in_url else os.environ.get(PASSWORD_VAR) or None
            self._redis = redis.Redis.from_url(
                url, password=password, socket_timeout=timeout, socket_connect_timeout=timeout
            )
            self._redis.ping()
        except (redis.RedisError, ValueError) as exc:
            raise ConfigError(f"cache {self.url}: cannot use it: {self._reason(exc)}") from None

    def __reduce__(self):
        """To another worker (multiprocessing, Ray), which connects to the same server: the URL travels, a
        password never does (a pickle is stored and logged where a password must not be)."""
        if self._password_in_url:
            raise ConfigError(
                f"cache {self.url}: a Redis cache whose URL holds its password is not sent to other "
                f"processes (the pickle would carry the password): give the URL without it and the "
                f"password in {PASSWORD_VAR}, set for every worker (Ray: runtime_env env_vars)"
            )
        return RedisCache, (self._address,)

    def _reason(self, exc: Exception) -> str:
        return redact_url(str(exc)) if "://" in str(exc) else str(exc)

    def _guard(self, call):
        try:
            return call()
        except self._errors as exc:
            raise CacheError(f"cache {self.url}: {type(exc).__name__}: {self._reason(exc)}") from None

    def get_many(self, keys: Iterable[str]) -> dict[str, dict]:
        keys, found = list(keys), {}
        for start in range(0, len(keys), self.CHUNK):
            chunk = keys[start : start + self.CHUNK]
            values = self._guard(lambda chunk=chunk: self._redis.mget([PREFIX + k for k in chunk]))
            for key, text in zip(chunk, values):
                value = decode(key, text)
                if value is not None:
                    found[key] = value
        return found

    def set_many(self, mapping: dict[str, dict]) -> int:
        items, stored = list(mapping.items()), 0
        for start in range(0, len(items), self.CHUNK):
            pipe = self._redis.pipeline(transaction=False)
            for key, value in items[start : start + self.CHUNK]:
                pipe.set(PREFIX + key, encode(value), nx=True)
            stored += sum(bool(r) for r in self._guard(pipe.execute))
        return stored

    def _names(self) -> Iterator[bytes]:
        """Every answer's Redis key, by SCAN (which never blocks the server as KEYS would)."""
        try:
            yield from self._redis.scan_iter(match=PREFIX + "*", count=self.CHUNK)
        except self._errors as exc:
            raise CacheError(f"cache {self.url}: {type(exc).__name__}: {self._reason(exc)}") from None

    def items(self) -> Iterator[tuple[str, str]]:
        batch = []
        for name in self._names():
            batch.append(name)
            if len(batch) == self.CHUNK:
                yield from self._values(batch)
                batch = []
        yield from self._values(batch)

    def _values(self, names: list) -> Iterator[tuple[str, str]]:
        if not names:
            return
        values = self._guard(lambda: self._redis.mget(names))
        for name, text in zip(names, values):
            if text is not None:  # removed since the scan
                yield name.decode()[len(PREFIX) :], text.decode()

    def __len__(self) -> int:
        return sum(1 for _ in self._names())

    def clear(self) -> None:
        names = list(self._names())
        for start in range(0, len(names), self.CHUNK):
            self._guard(lambda start=start: self._redis.delete(*names[start : start + self.CHUNK]))

    def close(self) -> None:
        self._redis.close()
