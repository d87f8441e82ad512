"""The classical baselines (TF-IDF + LR, MiniLM embeddings + LR) behind the labelling-method protocol."""

import pytest

from promptclf.core.usage import Usage
from promptclf.methods.baselines import EmbeddingLR, TfidfLR

LABELS = ["World", "Sports", "Business", "Sci/Tech"]


@pytest.mark.parametrize("cls, source", [(TfidfLR, "tfidf"), (EmbeddingLR, "embedding")])
def test_a_label_without_training_rows_never_takes_another_labels_column(cls, source, sample_rows):
    train = [r for r in sample_rows if r["label"] != "Business"]
    method = cls(LABELS).fit([r["text"] for r in train], [r["label"] for r in train])
    predictions = [p for _, p in sorted(method.predict([r["text"] for r in train], Usage()))]
    assert all(p.scores["Business"] == 0.0 for p in predictions)
    assert {p.source for p in predictions} == {source}
    right = sum(p.label == r["label"] for p, r in zip(predictions, train))
    assert right >= 0.9 * len(train), right  # its own training rows, under the right names
