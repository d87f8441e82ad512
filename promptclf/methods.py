"""The one protocol every labelling method follows, and what a method answers for each item."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Iterator, Protocol, Sequence, runtime_checkable

from .labels import LabelSet
from .usage import Usage


@dataclass(frozen=True)
class Prediction:
    """One item's label. `source` is "llm" (the configured method answered), "cache" or "fallback"."""

    label: str
    confidence: float | None = None
    source: str = "llm"
    scores: dict | None = None


@dataclass(frozen=True)
class Failure:
    """A method could not label an item; `reason` says why (it goes to the fallback or into the error)."""

    reason: str


Outcome = Prediction | Failure


@runtime_checkable
class Method(Protocol):
    """A labelling method: zero-/few-shot chat, label scoring, fine-tuned, embeddings + LR, TF-IDF + LR.

    `identity` names everything that determines an answer (backend, model, prompt fingerprint, ...);
    the cache keys on it. `predict` yields (position, outcome) pairs as they are ready, in any order,
    so the caller can cache each answer the moment it is paid for.
    """

    labels: LabelSet
    identity: str
    cacheable: bool

    def predict(self, texts: Sequence[str], usage: Usage) -> Iterator[tuple[int, Outcome]]: ...


class FittableMethod(Method, Protocol):
    def fit(self, texts: Sequence[str], labels: Sequence[str]) -> "FittableMethod": ...
