"""Accuracy, macro-F1, per-class F1 and the confusion matrix, computed by scikit-learn.

Not through Hugging Face `evaluate`: `evaluate.load("accuracy")` fetches its script from the hub, and a metric
module shipped here (which `evaluate.load(path)` reads offline) would only wrap these same scikit-learn calls,
while `import evaluate` costs 6.6 s of CPU on this project's machine (it imports transformers.pipelines) and
`evaluate.load` copies the module into ~/.cache/huggingface/modules.
"""

from __future__ import annotations

from collections.abc import Sequence


def classification_metrics(gold: Sequence[str], predicted: Sequence[str | None], labels: Sequence[str]) -> dict:
    from sklearn.metrics import accuracy_score, confusion_matrix, f1_score  # here: importing it costs ~2 s

    pred = [p if p is not None else "<none>" for p in predicted]
    per_class = f1_score(gold, pred, labels=list(labels), average=None, zero_division=0)
    return {
        "n": len(gold),
        "accuracy": float(accuracy_score(gold, pred)),
        "macro_f1": float(f1_score(gold, pred, labels=list(labels), average="macro", zero_division=0)),
        "per_class_f1": {label: float(f) for label, f in zip(labels, per_class)},
        "confusion": confusion_matrix(gold, pred, labels=list(labels)).tolist(),
    }


def multilabel_metrics(
    gold: Sequence[Sequence[str]], predicted: Sequence[Sequence[str] | None], labels: Sequence[str]
) -> dict:
    """Multi-label scores over label sets: micro- and macro-F1, subset accuracy (the whole set right; also
    given as `accuracy`), Hamming loss (the share of wrong item-label decisions) and per-label F1. An item
    left unlabelled (None) counts as an empty set."""
    import numpy as np
    from sklearn.metrics import accuracy_score, f1_score, hamming_loss

    names = list(labels)

    def matrix(sets):
        out = np.zeros((len(sets), len(names)), dtype=int)
        for row, found in enumerate(sets):
            for name in found or ():
                out[row, names.index(name)] = 1
        return out

    y, p = matrix(gold), matrix(predicted)
    per_class = f1_score(y, p, average=None, zero_division=0)
    subset = float(accuracy_score(y, p))
    return {
        "n": len(gold),
        "multi_label": True,
        "accuracy": subset,
        "subset_accuracy": subset,
        "micro_f1": float(f1_score(y, p, average="micro", zero_division=0)),
        "macro_f1": float(f1_score(y, p, average="macro", zero_division=0)),
        "hamming_loss": float(hamming_loss(y, p)),
        "per_class_f1": {label: float(f) for label, f in zip(names, per_class)},
    }
