"""A method's cache identity, computed in one place: the kind of method, the model's identity, and what else
shapes an answer (the task as the prompt or the training holds it, the backend options that change answers).
The answer cache keys on it together with the label set and the item (promptclf.cache.store.answer_key), so two methods that
would answer alike share answers and any change that could change an answer is a new key."""

from __future__ import annotations

from typing import Any

from promptclf.core.hashing import fingerprint


def method_identity(kind: str | None, model: Any, *parts: Any, hashed: bool = False) -> str:
    """`kind|model|part|...` (readable), or with hashed=True a fixed-length hash of them, for parts too big to
    show (a text per label, thousands of example rows). `kind` None: the model's identity is the whole of it
    (a trained model answers by its weights alone)."""
    named = ((kind,) if kind is not None else ()) + (model, *parts)
    if hashed:
        return fingerprint(*named)
    return "|".join(map(str, named))
