"""The answer cache: a `CacheBackend` protocol, chosen by URL (`sqlite://dir`, `redis://host:port/db`, `none`).

Values are JSON, never pickles: whoever can write a shared cache must not be able to run code in the reader
(diskcache 5.6.3 unpickles its values, CVE-2025-69872). The local default is an SQLite file of JSON text.
"""

from __future__ import annotations

import functools
import json
import logging
import os
import sqlite3
import threading
import time
from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import Protocol, runtime_checkable

from promptclf.core.hashing import digest, json_digest

log = logging.getLogger("promptclf")

SQLITE_FILE = "answers.sqlite3"
OLD_DISKCACHE_FILE = "cache.db"  # promptclf <= 0.1 kept pickled answers here; it is never read


class CacheError(RuntimeError):
    """A shared cache stopped answering mid-run; what was stored before stays stored."""


def model_digest(directory: str | Path) -> str:
    """A short digest of a model directory's files (names and contents), the same wherever and whenever the
    same model is installed: cache keys name a model by it, and a shared cache outlives reinstalls. Files are
    read whole (a retrained head or a few retrained tensors change few bytes), once per process."""
    files = sorted(f for f in Path(directory).iterdir() if f.is_file())
    return _digest(tuple((str(f), *_stat_key(f)) for f in files))


def _stat_key(path: Path) -> tuple:
    st = path.stat()
    return st.st_size, st.st_mtime_ns, st.st_ctime_ns, st.st_ino


@functools.lru_cache(maxsize=16)
def _digest(files: tuple) -> str:  # keyed by the files' stats too, so that a rewritten file is read again
    return digest(_file_chunks(files), 16)


def _file_chunks(files: tuple):
    for path, size, *_ in files:
        yield f"{Path(path).name}\0{size}\0"
        with open(path, "rb") as f:
            while block := f.read(2**22):
                yield block


def home() -> Path:
    """promptclf's data directory: $PROMPTCLF_HOME, else the platform cache dir."""
    if os.environ.get("PROMPTCLF_HOME"):
        return Path(os.environ["PROMPTCLF_HOME"]).expanduser()
    base = os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache"
    return Path(base) / "promptclf"


def answer_key(identity: str, labels_fingerprint: str, text: str) -> str:
    """sha256 of (method identity: backend, model, prompt fingerprint; label set; item text). Identities name
    no credentials (see promptclf.core.model_spec.ModelSpec.id), so neither do keys."""
    return json_digest([identity, labels_fingerprint, text], ensure_ascii=False)


@runtime_checkable
class CacheBackend(Protocol):
    """A store of JSON objects by key, shared by whoever opens the same URL.

    `set_many` keeps what is already there (first answer wins, like Redis `SET NX`) and returns how many keys
    were new. Values that are not JSON objects are dropped by `get_many`, as misses.
    """

    url: str  # where it is, without credentials

    def get_many(self, keys: Iterable[str]) -> dict[str, dict]: ...

    def set_many(self, mapping: dict[str, dict]) -> int: ...

    def items(self) -> Iterator[tuple[str, str]]: ...  # (key, JSON text) of every entry, for export

    def close(self) -> None: ...


class OneByOne:
    """`get`/`set` of one key, on top of `get_many`/`set_many` (for callers that ask one at a time)."""

    def get(self, key: str) -> dict | None:
        return self.get_many([key]).get(key)

    def set(self, key: str, value: dict) -> None:
        self.set_many({key: value})


def decode(key: str, text: str | bytes | None) -> dict | None:
    """A stored value, or None where it is not a JSON object (written by something else, or damaged)."""
    if text is None:
        return None
    try:
        value = json.loads(text)
    except (ValueError, UnicodeDecodeError):
        value = None
    if not isinstance(value, dict):
        log.warning("promptclf: cache entry %s… is not a JSON object; ignored", key[:12])
        return None
    return value


def encode(value: dict) -> str:
    return json.dumps(value, ensure_ascii=False, separators=(",", ":"))


class SQLiteCache(OneByOne):
    """JSON answers in one SQLite file (`answers.sqlite3`) in a local directory. Several processes on one
    machine can share it (WAL; writers wait up to 60 s). Not for a network filesystem: use Redis there, or
    export/import Parquet.
    """

    CHUNK = 500  # keys per query: under SQLite's limit on bound parameters
    TIMEOUT = 60.0  # seconds a writer waits for another
    key = staticmethod(answer_key)

    def __init__(self, directory: str | Path | None = None):
        self.directory = Path(directory).expanduser() if directory else home() / "answers"
        self.directory.mkdir(parents=True, exist_ok=True)
        self.path = self.directory / SQLITE_FILE
        self.url = f"sqlite://{self.directory}"
        self._local = threading.local()  # a connection per thread (and per process: see _db)
        self._connections: list[sqlite3.Connection] = []
        self._lock = threading.Lock()
        with self._db() as db:
            db.execute("CREATE TABLE IF NOT EXISTS answers (key TEXT PRIMARY KEY, value TEXT NOT NULL) WITHOUT ROWID")
        if (self.directory / OLD_DISKCACHE_FILE).exists():
            log.warning(
                "promptclf: %s is a cache from an older promptclf (pickled values); it is not read, so "
                "its answers will be asked again. Delete it to free the space.",
                self.directory / OLD_DISKCACHE_FILE,
            )

    def __reduce__(self):  # to another process (multiprocessing, Ray): it opens the same file there
        return SQLiteCache, (self.directory,)

    def _db(self) -> sqlite3.Connection:
        db = getattr(self._local, "db", None)
        if db is None or self._local.pid != os.getpid():  # a forked child must not share its parent's handle
            db = sqlite3.connect(self.path, timeout=self.TIMEOUT, check_same_thread=False)
            _switch_to_wal(db, self.TIMEOUT)
            db.execute("PRAGMA synchronous=NORMAL")  # WAL stays consistent; a power cut may lose the last commits
            self._local.db, self._local.pid = db, os.getpid()
            with self._lock:
                self._connections.append(db)
        return db

    def get_many(self, keys: Iterable[str]) -> dict[str, dict]:
        keys, found = list(keys), {}
        db = self._db()
        for start in range(0, len(keys), self.CHUNK):
            chunk = keys[start : start + self.CHUNK]
            rows = db.execute(f"SELECT key, value FROM answers WHERE key IN ({','.join('?' * len(chunk))})", chunk)
            for key, text in rows:
                value = decode(key, text)
                if value is not None:
                    found[key] = value
        return found

    def set_many(self, mapping: dict[str, dict]) -> int:
        if not mapping:
            return 0
        with self._db() as db:  # one transaction
            before = db.total_changes
            db.executemany(
                "INSERT OR IGNORE INTO answers (key, value) VALUES (?, ?)",
                [(key, encode(value)) for key, value in mapping.items()],
            )
            return db.total_changes - before

    def items(self) -> Iterator[tuple[str, str]]:
        yield from self._db().execute("SELECT key, value FROM answers ORDER BY key")

    def __len__(self) -> int:
        return self._db().execute("SELECT COUNT(*) FROM answers").fetchone()[0]

    def clear(self) -> None:
        with self._db() as db:
            db.execute("DELETE FROM answers")

    def close(self) -> None:
        with self._lock:
            for db in self._connections:
                db.close()
            self._connections.clear()
        self._local = threading.local()


def _switch_to_wal(db: sqlite3.Connection, timeout: float) -> None:
    """Processes that open a new file at once each hold a read lock while asking for the write lock the switch
    needs; SQLite refuses one of them at once ("database is locked": its busy timeout does not cover a
    deadlock), so the refused one waits and asks again."""
    deadline, pause = time.monotonic() + timeout, 0.01
    while True:
        try:
            db.execute("PRAGMA journal_mode=WAL")
            return
        except sqlite3.OperationalError as error:
            if "locked" not in str(error) or time.monotonic() + pause > deadline:
                raise
            time.sleep(pause)
            pause = min(pause * 2, 0.5)


AnswerCache = SQLiteCache  # the name callers used before backends could be chosen


class ChunkedWriter:
    """Stores answers as they arrive, a small chunk per write (one round trip): at `size` pending answers, or
    with the next answer once `seconds` have passed since the last write, and whatever is pending when the
    block ends, interrupted or not. A process killed outright loses at most the pending chunk."""

    def __init__(self, cache: CacheBackend | None, size: int = 100, seconds: float = 1.0):
        self.cache, self.size, self.seconds = cache, size, seconds
        self.pending: dict[str, dict] = {}
        self._since = time.monotonic()

    def add(self, key: str, value: dict) -> None:
        if self.cache is None:
            return
        self.pending[key] = value
        if len(self.pending) >= self.size or time.monotonic() - self._since >= self.seconds:
            self.flush()

    def flush(self) -> None:
        if self.pending:
            self.cache.set_many(self.pending)
            self.pending = {}
        self._since = time.monotonic()

    def __enter__(self) -> ChunkedWriter:
        return self

    def __exit__(self, *exc) -> None:
        self.flush()
