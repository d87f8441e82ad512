"""The one protocol every labelling method follows, and what a method answers for each item."""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from typing import Protocol, runtime_checkable

import numpy as np

from promptclf.core.labels import LabelSet
from promptclf.core.usage import Usage


@dataclass(frozen=True)
class Prediction:
    """One item's label. `source` names what answered: the method's component ("api" for a model behind an
    API, chat or completions; "gemma" for the embedded LLM, "local-llm" for another local causal LM;
    "embedding" for label similarity, self-training and embeddings + LR; "setfit"; "lora"; "tfidf"; offline's
    combination joins its components with "+", e.g. "gemma+embedding"), or "cache" or "fallback"; in a cascade,
    "local" or "api" (the stage that answered); "batch" for a batch API's answer. A method that does not say
    gets "llm". A multi-label answer (promptclf.core.multilabel) has its label set in `labels` and the names
    joined by `;` in `label`; a single-label one has labels None.

    A row that could not be labelled (`Classifier.stream`, `predict(errors="keep")`) has label None, source
    "failed" and `error` saying why.

    With a validation sample (Classifier's `validation=`), `confidence` and `scores` are calibrated on it
    (promptclf.core.trust), and with a `target_accuracy`, `accepted` says whether the label is auto-accepted
    (decided on the model's own confidence, before calibration); None where no target was set."""

    label: str | None
    confidence: float | None = None
    source: str = "llm"
    scores: dict | None = None
    labels: tuple[str, ...] | None = None
    error: str | None = None
    accepted: bool | None = None

    @classmethod
    def failed(cls, reason: str) -> Prediction:
        return cls(None, source="failed", error=reason)


@dataclass(frozen=True)
class Failure:
    """A method could not label an item; `reason` says why (it goes to the fallback or into the error)."""

    reason: str


Outcome = Prediction | Failure

NOT_ASKED = "not asked: run stopped"  # a Failure's reason for an item a stopped run never asked


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
    def fit(self, texts: Sequence[str], labels: Sequence[str]) -> FittableMethod: ...


def relay(outcomes: Iterator, on_each: Callable, map_each: Callable = lambda item: item) -> Iterator:
    """Yield map_each(item) for each item of `outcomes`, calling on_each(item) first. An exception thrown into
    the relay (Ctrl-C that landed in the caller) is thrown into `outcomes`, as `yield from` would: a method
    then still yields what it has in flight (already paid for) before the exception goes on. Ctrl-C landing in
    the relay's own frame (while an item is kept) is handled the same way, once the item is kept."""
    thrown: BaseException | None = None
    while True:
        try:
            item = next(outcomes) if thrown is None else outcomes.throw(thrown)
        except StopIteration:
            return
        thrown = None
        try:
            _keep_through_interrupt(on_each, item)
        except KeyboardInterrupt as interrupt:
            thrown = interrupt
            continue
        try:
            yield map_each(item)
        except GeneratorExit:
            outcomes.close()
            raise
        except BaseException as exc:  # noqa: BLE001 - handed on to the method, which re-raises it
            thrown = exc


def _keep_through_interrupt(on_each: Callable, item) -> None:
    """on_each(item); if Ctrl-C lands while it runs, run it again (keeping an item twice stores the same answer
    under the same key) and then raise the interrupt."""
    try:
        on_each(item)
    except KeyboardInterrupt:
        on_each(item)
        raise


def from_probabilities(
    labels: LabelSet,
    probabilities: Callable[[Sequence[str]], np.ndarray],
    texts: Sequence[str],
    usage: Usage,
    source: str,
) -> Iterator[tuple[int, Outcome]]:
    """`predict` for a method that computes per-label probabilities: timed, then one Prediction per row,
    answered by `source` (Prediction.source)."""
    started = time.perf_counter()
    probs = probabilities(texts)
    usage.add(compute_s=time.perf_counter() - started)
    for i, row in enumerate(probs):
        best = int(np.argmax(row))
        yield (
            i,
            Prediction(labels.names[best], float(row[best]), source, scores=dict(zip(labels.names, map(float, row)))),
        )
