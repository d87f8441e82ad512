"""A persistent answer cache on diskcache (SQLite: safe for several processes sharing the directory)."""

from __future__ import annotations

import hashlib
import json
import os
from pathlib import Path

import diskcache


def model_digest(directory: str | Path) -> str:
    """A short digest of a model directory: names, sizes and modification times of its files. It changes
    when the model does (another model, a retrained one), without reading gigabytes of weights."""
    files = sorted(f for f in Path(directory).iterdir() if f.is_file())
    stats = [(f.name, f.stat().st_size, f.stat().st_mtime_ns) for f in files]
    return hashlib.sha256(json.dumps(stats).encode()).hexdigest()[:16]


def home() -> Path:
    """promptclf's data directory: $PROMPTCLF_HOME, else the platform cache dir."""
    if os.environ.get("PROMPTCLF_HOME"):
        return Path(os.environ["PROMPTCLF_HOME"]).expanduser()
    base = os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache"
    return Path(base) / "promptclf"


class AnswerCache:
    """Labels keyed by (method identity: backend, model, prompt fingerprint; label set; item text).

    Each answer is written as soon as its batch returns, so an interrupted run resumes without paying again.
    Only labels are stored: never keys, headers or prompts.
    """

    def __init__(self, directory: str | Path | None = None):
        self.directory = Path(directory) if directory else home() / "answers"
        self._cache = diskcache.Cache(str(self.directory), timeout=60)

    @staticmethod
    def key(identity: str, labels_fingerprint: str, text: str) -> str:
        payload = json.dumps([identity, labels_fingerprint, text], ensure_ascii=False)
        return hashlib.sha256(payload.encode()).hexdigest()

    def get(self, key: str) -> dict | None:
        return self._cache.get(key)

    def set(self, key: str, value: dict) -> None:
        self._cache.set(key, value)

    def __len__(self) -> int:
        return len(self._cache)

    def clear(self) -> None:
        self._cache.clear()

    def close(self) -> None:
        self._cache.close()
