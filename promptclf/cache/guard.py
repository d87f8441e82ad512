"""A labelling run's cache, whose faults degrade the run instead of ending it: a corrupt SQLite file is moved
aside (never deleted) and a new one started; a cache that cannot be opened, or that fails mid-run (locked,
read-only, disk full, a Redis gone away), gives one warning and the run goes on without it. Answers still reach
the output; they are only not stored."""

from __future__ import annotations

import logging
import sqlite3
import time
from collections.abc import Iterable, Iterator
from pathlib import Path

from promptclf.cache.store import SQLITE_FILE, CacheBackend, CacheError, SQLiteCache
from promptclf.cache.url import open_cache

log = logging.getLogger("promptclf")

FAULTS = (sqlite3.Error, OSError, CacheError)


class GuardedCache:
    """Any CacheBackend, with its faults turned into one warning and a run without it from then on."""

    def __init__(self, inner: CacheBackend):
        self.inner, self.url = inner, inner.url
        self.fault: str | None = None

    def get_many(self, keys: Iterable[str]) -> dict[str, dict]:
        if self.fault is None:
            try:
                return self.inner.get_many(keys)
            except FAULTS as exc:
                self._give_up(exc)
        return {}

    def set_many(self, mapping: dict[str, dict]) -> int:
        if self.fault is None:
            try:
                return self.inner.set_many(mapping)
            except FAULTS as exc:
                self._give_up(exc)
        return 0

    def items(self) -> Iterator[tuple[str, str]]:
        return self.inner.items()

    def close(self) -> None:
        try:
            self.inner.close()
        except FAULTS:
            pass

    def __getattr__(self, name):  # the backend's own extras (len, clear, path) stay reachable
        return getattr(self.inner, name)

    def __reduce__(self):  # to another process (Ray): guarded there too
        return GuardedCache, (self.inner,)

    def _give_up(self, exc: BaseException) -> None:
        self.fault = f"{type(exc).__name__}: {exc}"
        log.warning(
            "promptclf: the answer cache %s failed (%s); going on without it: answers are not stored or "
            "read from it for the rest of this run",
            self.url,
            self.fault,
        )


def open_guarded(cache) -> GuardedCache | None:
    """The cache `cache` names (see cache.url.open_cache), guarded. A corrupt SQLite file is moved aside to
    `answers.sqlite3.corrupt-<time>` and a new one started; a cache that cannot be opened (a directory that cannot
    be written, a file locked past the timeout) is a warning and no cache. A cache URL that is wrong (an unknown
    kind, a Redis that refuses) stays an error: the user named it."""
    try:
        opened = open_cache(cache)
    except (sqlite3.OperationalError, OSError) as exc:  # locked, cannot be created or written
        log.warning(
            "promptclf: the answer cache %s cannot be opened (%s: %s); going on without it",
            cache,
            type(exc).__name__,
            exc,
        )
        return None
    except sqlite3.DatabaseError as exc:  # "file is not a database", "database disk image is malformed"
        opened = _reopen_after_corruption(cache, exc)
    except sqlite3.Error as exc:
        log.warning(
            "promptclf: the answer cache %s cannot be opened (%s: %s); going on without it",
            cache,
            type(exc).__name__,
            exc,
        )
        return None
    if opened is None or isinstance(opened, GuardedCache):
        return opened
    return GuardedCache(opened)


def _reopen_after_corruption(cache, exc: BaseException) -> CacheBackend | None:
    directory = _sqlite_directory(cache)
    if directory is None or not (directory / SQLITE_FILE).exists():
        log.warning("promptclf: the answer cache %s cannot be opened (%s); going on without it", cache, exc)
        return None
    aside = directory / f"{SQLITE_FILE}.corrupt-{time.strftime('%Y%m%d-%H%M%S')}"
    try:
        (directory / SQLITE_FILE).rename(aside)
        for suffix in ("-wal", "-shm"):
            side = directory / f"{SQLITE_FILE}{suffix}"
            if side.exists():
                side.rename(Path(f"{aside}{suffix}"))
        reopened = SQLiteCache(directory)
    except (sqlite3.Error, OSError) as again:
        log.warning(
            "promptclf: the answer cache %s is damaged (%s) and could not be replaced (%s); going on without it",
            directory,
            exc,
            again,
        )
        return None
    log.warning(
        "promptclf: the answer cache file was damaged (%s); moved to %s and a new one started (its answers "
        "will be asked again)",
        exc,
        aside,
    )
    return reopened


def _sqlite_directory(cache) -> Path | None:
    """The directory of the SQLite cache a setting names, or None for another kind."""
    from promptclf.cache.store import home

    if cache is True:
        return home() / "answers"
    text = str(cache)
    if text.startswith("sqlite://"):
        return Path(text[len("sqlite://") :] or home() / "answers").expanduser()
    return None if "://" in text else Path(text).expanduser()
