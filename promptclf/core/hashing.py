"""The one hash behind every identity and key: sha256, as hex. Each caller keeps its own payload (the JSON
settings and cut it has always used), because cache keys and manifests written before must still match."""

from __future__ import annotations

import hashlib
import json
from collections.abc import Iterable
from typing import Any


def digest(data: str | bytes | Iterable[str | bytes], length: int | None = None) -> str:
    """sha256 of a string (as UTF-8), of bytes, or of a stream of them fed in order, in hex, cut to `length`."""
    hasher = hashlib.sha256()
    for chunk in [data] if isinstance(data, (str, bytes)) else data:
        hasher.update(chunk.encode() if isinstance(chunk, str) else chunk)
    return hasher.hexdigest()[:length]


def json_digest(value: Any, length: int | None = None, **dumps) -> str:
    """`digest` of `value` as `json.dumps(value, **dumps)` writes it."""
    return digest(json.dumps(value, **dumps), length)


def fingerprint(*parts: Any) -> str:
    """A stable hash of template texts and variables (JSON-serialised, keys sorted)."""
    return json_digest(parts, 16, sort_keys=True, default=str, ensure_ascii=False)
