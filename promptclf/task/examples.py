"""Few-shot examples: validation, per-class sampling with a seed, and nearest-neighbour selection."""

from __future__ import annotations

import random
from collections.abc import Iterable, Sequence

from promptclf.core.labels import LabelSet


class ExampleError(ValueError):
    pass


def check_examples(
    examples: Iterable, labels: LabelSet, what: str = "example", multi_label: bool = False
) -> list[dict]:
    """[{"text", "label"}] with labels resolved onto the set; bad rows raise naming the row. Multi-label: a row
    may instead give `labels` (a list, or names joined by `;`), or a `label` holding such a set (one column of a
    file), kept as {"text", "labels"} in label-set order."""
    from promptclf.core.multilabel import check_names, holds_a_set, split_labels

    if multi_label:
        check_names(labels)
    rows = []
    for n, row in enumerate(examples or ()):
        key = "labels" if multi_label and isinstance(row, dict) and "labels" in row else "label"
        if not isinstance(row, dict) or "text" not in row or key not in row:
            wanted = "'label' (or 'labels')" if multi_label else "'label'"
            raise ExampleError(f"{what} {n} must be a dict with 'text' and {wanted}, got {row!r:.80}")
        if not isinstance(row["text"], str) or not row["text"].strip():
            raise ExampleError(f"{what} {n} has an empty or non-string text")
        if multi_label and key == "label" and holds_a_set(row["label"]):
            key, row = "labels", {"text": row["text"], "labels": row["label"]}
        if key == "labels":
            names = {labels.check(name, f"{what} {n}") for name in split_labels(row["labels"])}
            rows.append({"text": row["text"], "labels": [name for name in labels.names if name in names]})
        else:
            rows.append({"text": row["text"], "label": labels.check(row["label"], f"{what} {n}")})
    return rows


def sample_per_class(rows: Sequence[dict], labels: LabelSet, k: int, seed: int = 0) -> list[dict]:
    """k examples of each label (fewer where a label has fewer), shuffled with the seed."""
    rng = random.Random(seed)
    chosen = []
    for name in labels.names:
        pool = [r for r in rows if r["label"] == name]
        chosen += rng.sample(pool, min(k, len(pool)))
    rng.shuffle(chosen)
    return chosen
