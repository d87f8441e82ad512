"""Self-training with examples: logistic regression on the examples' sentence embeddings and on the
unlabelled texts that the self-trained label similarity (label_similarity.py) labels most confidently.

The pseudo-labels come from the labels alone, not from the examples, so a few unrepresentative examples do
not steer which texts are taken; the examples then weigh as much, in total, as the pseudo-labelled texts.
Measured on the five shared data sets (benchmarks/few_labels.py; the settings grid in
benchmarks/self_training.py --with-examples): at 2 and 8 examples per class it beat the label similarity
self-trained from example-seeded centroids on every set."""

from __future__ import annotations

from collections.abc import Iterator, Sequence

import numpy as np

from promptclf.core.hashing import fingerprint
from promptclf.core.labels import LabelSet
from promptclf.core.methods import Outcome, from_probabilities
from promptclf.core.usage import Usage

KEEP = 0.5  # the most confident share of each label's pseudo-labelled texts
EXAMPLE_WEIGHT = 1.0  # the examples' total weight, relative to the pseudo-labelled texts'
C = 1.0


class PseudoLabelLR:
    """Logistic regression on `examples` (rows of text and label) and on the most confident KEEP of each
    label's `unlabeled` texts, labelled by the self-trained label similarity."""

    cacheable = False

    def __init__(self, labels, unlabeled: Sequence[str], examples: Sequence[dict] = (), *, encoder=None, seed: int = 0):
        from promptclf.methods.label_similarity import LabelSimilarity

        self.labels = LabelSet.of(labels)
        self.similarity = LabelSimilarity(self.labels, encoder=encoder, unlabeled=unlabeled)
        if not self.similarity.unlabeled:
            from promptclf.core.errors import ConfigError
            from promptclf.methods.label_similarity import MIN_UNLABELED

            raise ConfigError(f"pseudo-labels need {MIN_UNLABELED} or more distinct unlabelled texts")
        self.examples = [(r["text"], self.labels.index(r["label"])) for r in examples]
        self.seed = seed
        self.model = None

    @property
    def identity(self) -> str:
        return fingerprint("pseudo-label-lr", self.similarity.identity, self.examples, KEEP, EXAMPLE_WEIGHT, C)

    def _embed(self, texts: Sequence[str]) -> np.ndarray:
        from promptclf.methods.embeddings import cached_encode

        return cached_encode(self.similarity.encoder, list(texts))

    def fit(self) -> PseudoLabelLR:
        from sklearn.linear_model import LogisticRegression

        unlabeled = self.similarity.unlabeled
        probs = self.similarity.probabilities(unlabeled)
        kept = confident(probs, KEEP)
        x, y, weight = training_set(
            self._embed(unlabeled)[kept],
            probs[kept].argmax(axis=1),
            self._embed([t for t, _ in self.examples]) if self.examples else None,
            np.array([k for _, k in self.examples], dtype=int),
            EXAMPLE_WEIGHT,
        )
        self.model = LogisticRegression(C=C, max_iter=3000, random_state=self.seed).fit(x, y, sample_weight=weight)
        return self

    def probabilities(self, texts: Sequence[str]) -> np.ndarray:
        if self.model is None:
            self.fit()
        probs = np.zeros((len(texts), len(self.labels)))
        if len(texts):
            probs[:, self.model.classes_] = self.model.predict_proba(self._embed(texts))
        return probs

    def predict(self, texts: Sequence[str], usage: Usage) -> Iterator[tuple[int, Outcome]]:
        # fitting on first use is timed
        return from_probabilities(self.labels, self.probabilities, texts, usage, "embedding")


def confident(probs: np.ndarray, share: float) -> np.ndarray:
    """Indices of the `share` most confident rows of each row's top label (at least one per label taken)."""
    top, confidence = probs.argmax(axis=1), probs.max(axis=1)
    kept = []
    for k in np.unique(top):
        rows = np.flatnonzero(top == k)
        kept += rows[np.argsort(-confidence[rows], kind="stable")][: max(1, int(len(rows) * share))].tolist()
    return np.array(sorted(kept), dtype=int)


def training_set(
    pseudo_x: np.ndarray,
    pseudo_y: np.ndarray,
    example_x: np.ndarray | None,
    example_y: np.ndarray,
    example_weight: float,
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Examples and pseudo-labelled texts stacked, each pseudo-label weighing 1 and the examples together
    `example_weight` times as much as all the pseudo-labels."""
    if not len(example_y):
        return pseudo_x, pseudo_y, np.ones(len(pseudo_y))
    each = example_weight * len(pseudo_y) / len(example_y)
    return (
        np.vstack([example_x, pseudo_x]),
        np.concatenate([example_y, pseudo_y]),
        np.concatenate([np.full(len(example_y), each), np.ones(len(pseudo_y))]),
    )
