"""Choosing, for each item, the most similar examples of a pool by sentence-embedding similarity."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from promptclf.core.hashing import fingerprint
from promptclf.methods.embeddings import UsesEncoder, cached_encode
from promptclf.task.examples import ExampleError


class SimilarExamples(UsesEncoder):
    """Picks, for each input, the k nearest pool examples by MiniLM cosine similarity.

    For a batch, the union of each item's neighbours is used, most similar last (closest to the items).
    An example whose text is one of the items being labelled is never chosen.
    """

    def __init__(
        self, pool: Sequence[dict], k: int = 8, encoder=None, max_per_batch: int = 40, nearest_last: bool = True
    ):
        if not pool:
            raise ExampleError("similar-example selection needs a non-empty example pool")
        self.pool, self.k, self.max_per_batch = list(pool), k, max_per_batch
        # Measured (Gemma 270M, 4 nearest, 1,000 AG News items): nearest last 0.841, nearest first 0.818.
        self.nearest_last = nearest_last
        self._encoder = encoder
        self._vectors = self._fingerprint = None

    @property
    def vectors(self) -> np.ndarray:
        """Pool embeddings, computed once per pool and kept in the promptclf cache directory."""
        if self._vectors is None:
            self._vectors = cached_encode(self.encoder, [r["text"] for r in self.pool])
        return self._vectors

    def fingerprint(self) -> str:
        if self._fingerprint is None:  # the pool can be thousands of rows: hash it once
            encoder = self.encoder_identity
            self._fingerprint = fingerprint(
                "similar",
                self.k,
                self.max_per_batch,
                self.nearest_last,
                encoder,
                [[r["text"], r["label"]] for r in self.pool],
            )
        return self._fingerprint

    def neighbours(self, texts: Sequence[str]) -> list[list[tuple[float, int]]]:
        """For each text: up to k (similarity, pool index), most similar first, skipping the text itself."""
        sims = self.encoder.encode(list(texts)) @ self.vectors.T
        result = []
        for text, row in zip(texts, sims):
            order = np.argsort(-row)
            picked = [(float(row[j]), int(j)) for j in order[: self.k + 4] if self.pool[j]["text"] != text]
            result.append(picked[: self.k])
        return result

    def select_each(self, texts: Sequence[str]) -> list[list[dict]]:
        """Per text: its k nearest examples, most similar last (closest to the item in the prompt) by default."""
        order = reversed if self.nearest_last else list
        return [[self.pool[j] for _, j in order(picked)] for picked in self.neighbours(texts)]

    def select(self, texts: Sequence[str]) -> list[dict]:
        banned = set(texts)
        best: dict[int, float] = {}
        for picked in self.neighbours(texts):
            for sim, j in picked:
                if self.pool[j]["text"] not in banned:
                    best[j] = max(sim, best.get(j, -1.0))
        ranked = sorted(best, key=best.get)[-self.max_per_batch :]
        return [self.pool[j] for j in ranked]
