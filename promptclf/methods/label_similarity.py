"""Embedding zero-shot: each label (its name, and its description where given) is written through a
template and embedded by the sentence encoder; an item's label probabilities are a softmax over its
cosine similarity to each label. No examples, no LLM: model string `embed` (or `embed:<encoder dir>`).

Given unlabelled texts (`classify(texts, labels)` passes the texts it labels), it self-trains: the texts take
the label they are most similar to, each label's centroid of its texts replaces the label's own vector, twice;
an item's score is then the mean of its similarity to the centroids and to the labels. Measured on the five
shared data sets (benchmarks/self_training.py): +7.5 points on average over the label names alone with 200
unlabelled texts, +8.8 with 800; below 200 texts the gain was not reliable, so it is not used."""

from __future__ import annotations

from collections.abc import Iterator, Sequence

import numpy as np

from promptclf.core.hashing import fingerprint
from promptclf.core.identity import method_identity
from promptclf.core.labels import LabelSet
from promptclf.core.methods import Outcome, from_probabilities
from promptclf.core.usage import Usage
from promptclf.methods.embeddings import UsesEncoder, cached_encode
from promptclf.methods.scoring import softmax

# Chosen on the five shared data sets (300 seeded test rows each, mean accuracy): the plain label name 0.527,
# "It is {label}." 0.520, "This text is about {label}." 0.517, "{label} text" 0.517. A description, where
# the user gives one, follows the name.
TEMPLATE = "{label}"
DESCRIBED = "{label}: {description}"
# Self-training (see the module's docstring and benchmarks/self_training.py): it needs this many unlabelled
# texts, and uses at most SAMPLE of them, chosen by content hash so the same texts always give the same sample.
MIN_UNLABELED = 200
SAMPLE = 800
ROUNDS = 2
MIX = 0.5  # weight of the centroids' similarity; the rest is the labels' own
# A cosine-similarity gap of 0.05 between two labels is an odds ratio of e. Not tuned: it only sets how
# sure the probabilities sound, and the offline combination's fitted weights rescale it.
TEMPERATURE = 0.05


class LabelSimilarity(UsesEncoder):
    """Zero-shot label probabilities from sentence-embedding similarity to the labels.

    `template` writes each label ("{label}", "{description}" available); `temperature` turns similarity
    gaps into odds; `unlabeled` texts (at least MIN_UNLABELED) self-train the label vectors into centroids.
    `examples` (rows of text and label), where given, move each label's starting vector to the mean of its
    label vector and its examples' centroid, and stay in their label's centroid while it self-trains.
    """

    cacheable = False

    def __init__(
        self,
        labels,
        *,
        encoder=None,
        template: str | None = None,
        temperature: float = TEMPERATURE,
        unlabeled: Sequence[str] = (),
        examples: Sequence[dict] = (),
    ):
        self.labels = LabelSet.of(labels)
        self.template, self.temperature = template, temperature
        self._encoder = encoder
        self._label_vectors = None
        self.unlabeled = unlabeled_sample(unlabeled)
        self.examples = [(r["text"], self.labels.index(r["label"])) for r in examples]
        self._seeds = self._centroids = None

    def label_texts(self) -> list[str]:
        texts = []
        for label in self.labels.labels:
            template = self.template or (DESCRIBED if label.description else TEMPLATE)
            texts.append(template.format(label=label.name, description=label.description))
        return texts

    @property
    def identity(self) -> str:
        return method_identity(
            "label-similarity",
            self.encoder_identity,
            self.label_texts(),
            self.temperature,
            fingerprint(self.unlabeled) if self.unlabeled else None,
            ROUNDS,
            MIX,
            self.examples or None,
            hashed=True,
        )

    @property
    def label_vectors(self) -> np.ndarray:
        if self._label_vectors is None:
            self._label_vectors = self.encoder.encode(self.label_texts())
        return self._label_vectors

    @property
    def seeds(self) -> np.ndarray:
        """Where each label starts: its own vector, moved halfway to its examples' centroid where it has any."""
        if self._seeds is None:
            self._seeds = self.label_vectors
            if self.examples:
                vectors, taken = self._example_vectors()
                means = [
                    normalise(vectors[taken == k].mean(axis=0)) if (taken == k).any() else np.zeros(v.shape)
                    for k, v in enumerate(self.label_vectors)
                ]
                self._seeds = normalise(self.label_vectors + np.stack(means))
        return self._seeds

    @property
    def centroids(self) -> np.ndarray | None:
        """The seeds self-trained on the unlabelled texts (None without them)."""
        if self._centroids is None and self.unlabeled:
            pinned = self._example_vectors() if self.examples else None
            self._centroids = self_train(cached_encode(self.encoder, self.unlabeled), self.seeds, ROUNDS, pinned)
        return self._centroids

    def _example_vectors(self) -> tuple[np.ndarray, np.ndarray]:
        return (
            cached_encode(self.encoder, [t for t, _ in self.examples]),
            np.array([k for _, k in self.examples], dtype=int),
        )

    def similarities(self, texts: Sequence[str]) -> np.ndarray:
        vectors = cached_encode(self.encoder, list(texts))
        plain = vectors @ self.seeds.T
        return plain if self.centroids is None else MIX * (vectors @ self.centroids.T) + (1 - MIX) * plain

    def probabilities(self, texts: Sequence[str]) -> np.ndarray:
        if not len(texts):
            return np.zeros((0, len(self.labels)))
        return softmax(self.similarities(texts) / self.temperature)

    def predict(self, texts: Sequence[str], usage: Usage) -> Iterator[tuple[int, Outcome]]:
        return from_probabilities(self.labels, self.probabilities, texts, usage, "embedding")


def unlabeled_sample(texts: Sequence[str]) -> list[str]:
    """The unlabelled texts self-training uses: at most SAMPLE of them (stable_sample), none below MIN_UNLABELED
    distinct ones. Taking it again from its own result gives the same list."""
    distinct = set(texts)
    return stable_sample(distinct, SAMPLE) if len(distinct) >= MIN_UNLABELED else []


def stable_sample(texts: Sequence[str], n: int) -> list[str]:
    """Up to n distinct texts, those with the smallest content hashes: the same for any order of the same
    texts, and mostly the same when a few are added."""
    from promptclf.core.hashing import digest

    return sorted(set(texts), key=digest)[:n]


def normalise(vectors: np.ndarray) -> np.ndarray:
    return vectors / np.maximum(np.linalg.norm(vectors, axis=-1, keepdims=True), 1e-12)


def self_train(
    vectors: np.ndarray, seeds: np.ndarray, rounds: int, pinned: tuple[np.ndarray, np.ndarray] | None = None
) -> np.ndarray:
    """Each round: every text takes its most similar label; a label's vector becomes the normalised mean of
    its texts and of its `pinned` (vectors, label indices) examples; a label with neither keeps its seed."""
    pinned_vectors, pinned_labels = pinned if pinned is not None else (vectors[:0], np.zeros(0, dtype=int))
    centroids = seeds
    for _ in range(rounds):
        taken = (vectors @ centroids.T).argmax(axis=1)
        members = [np.vstack([vectors[taken == k], pinned_vectors[pinned_labels == k]]) for k in range(len(seeds))]
        centroids = normalise(np.stack([m.mean(axis=0) if len(m) else seeds[k] for k, m in enumerate(members)]))
    return centroids
