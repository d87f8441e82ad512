"""The answer cache in front of any Method: stored answers first (one lookup), the method for the rest, each new
answer stored as it arrives (a small chunk per write, see promptclf.cache.store.ChunkedWriter). Classifier and each stage of a
cascade answer through it, so the same method's answers are shared between them."""

from __future__ import annotations

import logging
from collections.abc import Iterator, Sequence

from promptclf.cache.store import CacheBackend, ChunkedWriter, answer_key
from promptclf.core.labels import LabelSet
from promptclf.core.methods import Method, Outcome, Prediction, relay
from promptclf.core.usage import Usage

log = logging.getLogger("promptclf")


def stored_prediction(hit: dict | None, labels: LabelSet) -> Prediction | None:
    """A stored answer, unless it names no label of this set (a shared cache written by something else)."""
    if hit is None:
        return None
    if "labels" in hit:  # a multi-label answer (only multi-label methods' keys lead to one)
        return _stored_label_set(hit, labels)
    confidence, scores = hit.get("confidence"), hit.get("scores")
    if (
        hit.get("label") not in labels.names
        or not isinstance(confidence, (int, float, type(None)))
        or not isinstance(scores, (dict, type(None)))
    ):
        log.warning(
            "promptclf: a cached answer (label %.40r) does not fit this label set; asked again "
            "(clear the cache to replace it)",
            hit.get("label"),
        )
        return None
    return Prediction(hit["label"], confidence, "cache", scores)


def _stored_label_set(hit: dict, labels: LabelSet) -> Prediction | None:
    from promptclf.core.multilabel import multi_prediction

    names, confidence, scores = hit.get("labels"), hit.get("confidence"), hit.get("scores")
    if (
        not isinstance(names, list)
        or any(name not in labels.names for name in names)
        or not isinstance(confidence, (int, float, type(None)))
        or not isinstance(scores, (dict, type(None)))
    ):
        log.warning(
            "promptclf: a cached answer (labels %.40r) does not fit this label set; asked again "
            "(clear the cache to replace it)",
            names,
        )
        return None
    return multi_prediction(names, confidence, "cache", scores)


def answer(
    method: Method, texts: Sequence[str], usage: Usage, cache: CacheBackend | None, labels: LabelSet
) -> Iterator[tuple[int, Outcome]]:
    """(position, outcome) for every text: cache hits first (source "cache"), then the method's answers."""
    if cache is None or not getattr(method, "cacheable", False) or not texts:
        yield from method.predict(list(texts), usage)
        return
    identity, fingerprint = method.identity, labels.fingerprint()  # once: they hash the whole prompt
    keys = [answer_key(identity, fingerprint, text) for text in texts]
    hits = cache.get_many(keys)
    misses = []
    for pos, key in enumerate(keys):
        found = stored_prediction(hits.get(key), labels)
        if found is None:
            misses.append(pos)
        else:
            usage.add(cache_hits=1)
            yield pos, found
    # A method that promised a confidence but got an answer without one (a server that stopped returning
    # logprobs) names where such an answer belongs: not under the key that promises a confidence.
    unconfident = getattr(method, "identity_without_confidence", None)
    with ChunkedWriter(cache) as store:

        def keep(item: tuple[int, Outcome]) -> None:
            j, outcome = item
            if isinstance(outcome, Prediction):
                stored = {"label": outcome.label, "confidence": outcome.confidence, "scores": outcome.scores}
                if outcome.labels is not None:
                    stored["labels"] = list(outcome.labels)
                key = keys[misses[j]]
                if outcome.confidence is None and unconfident is not None:
                    key = answer_key(unconfident, fingerprint, texts[misses[j]])
                store.add(key, stored)

        # relayed, so that Ctrl-C thrown in here reaches the method, whose answers in flight are then stored
        yield from relay(
            method.predict([texts[p] for p in misses], usage), keep, lambda item: (misses[item[0]], item[1])
        )
