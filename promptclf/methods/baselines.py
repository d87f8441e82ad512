"""Classical baselines every LLM method has to beat: TF-IDF + logistic regression, and frozen MiniLM
sentence embeddings + logistic regression ("transfer learning on embeddings")."""

from __future__ import annotations

import time
from collections.abc import Iterator, Sequence

import numpy as np
from sklearn.feature_extraction.text import TfidfVectorizer
from sklearn.linear_model import LogisticRegression
from sklearn.multiclass import OneVsRestClassifier
from sklearn.pipeline import make_pipeline

from promptclf.core.hashing import fingerprint
from promptclf.core.identity import method_identity
from promptclf.core.labels import LabelSet
from promptclf.core.methods import Outcome, Prediction
from promptclf.core.multilabel import SEPARATOR, check_label_sets, indicator
from promptclf.core.usage import Usage


class _SklearnMethod:
    """A scikit-learn classifier over features of the text, behind the labelling-method protocol."""

    cacheable = False
    source = "embedding"  # Prediction.source

    def __init__(self, labels, seed: int = 0, C: float = 1.0):
        self.labels, self.seed, self.C = LabelSet.of(labels), seed, C
        self.model = None
        self._trained_on = None

    @property
    def identity(self) -> str:
        return method_identity(type(self).__name__, f"C={self.C}", self._trained_on)

    def features(self, texts: Sequence[str]):
        raise NotImplementedError

    def fit(self, texts: Sequence[str], labels: Sequence):
        """`labels`: one label per text, or a label set per text (a list, or names joined by `;`): then one
        classifier per label (one-vs-rest), and the scores are a probability per label that need not sum to 1
        (core.multilabel.Thresholded turns them into label sets)."""
        if any(not isinstance(label, str) or SEPARATOR in label for label in labels):
            y = indicator(check_label_sets(labels, self.labels, "training labels"), self.labels).astype(int)
            self.model = OneVsRestClassifier(self._estimator()).fit(self.features(texts), y)
            self._trained_on = fingerprint(list(texts), y.tolist())
            return self
        y = [self.labels.index(self.labels.check(lab, f"training row {i}")) for i, lab in enumerate(labels)]
        self.model = self._estimator().fit(self.features(texts), y)
        self._trained_on = fingerprint(list(texts), y)
        return self

    def _estimator(self):
        return LogisticRegression(C=self.C, max_iter=2000, random_state=self.seed)

    def predict(self, texts: Sequence[str], usage: Usage) -> Iterator[tuple[int, Outcome]]:
        if self.model is None:
            raise RuntimeError(f"{type(self).__name__} is not fitted: call fit(texts, labels) first")
        started = time.perf_counter()
        probs = np.zeros((len(texts), len(self.labels)))
        probs[:, self.model.classes_] = self.model.predict_proba(self.features(texts))  # labels seen in training
        usage.add(compute_s=time.perf_counter() - started)
        for i, row in enumerate(probs):
            best = int(np.argmax(row))
            yield (
                i,
                Prediction(
                    self.labels.names[best],
                    float(row[best]),
                    self.source,
                    scores=dict(zip(self.labels.names, map(float, row))),
                ),
            )


class TfidfLR(_SklearnMethod):
    """Word 1-2-gram TF-IDF (sublinear tf) + logistic regression."""

    source = "tfidf"

    def _estimator(self):
        return make_pipeline(
            TfidfVectorizer(ngram_range=(1, 2), sublinear_tf=True, min_df=1),
            LogisticRegression(C=self.C * 10, max_iter=2000, random_state=self.seed),
        )

    def features(self, texts):
        return list(texts)


class EmbeddingLR(_SklearnMethod):
    """Mean-pooled MiniLM sentence embeddings (frozen) + logistic regression."""

    def __init__(self, labels, seed: int = 0, C: float = 10.0, encoder=None):
        super().__init__(labels, seed, C)
        self._encoder = encoder

    def features(self, texts):
        from promptclf.methods.embeddings import cached_encode, default_encoder

        self._encoder = self._encoder or default_encoder()
        return cached_encode(self._encoder, list(texts))
