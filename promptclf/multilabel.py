"""Multi-label labelling (a Task with `multi_label: true`): each item gets the set of labels that apply, in
label-set order, possibly none. Here: reading label sets (a list, or names joined by `;` as in one CSV
column), turning per-label probabilities into answers at a threshold, and choosing that threshold on
labelled rows.

A multi-label `Prediction` carries the set in `labels` and the same names joined by `;` in `label` (what
the CLI writes in one column). Its `scores` are the per-label probabilities (one-vs-rest, they need not sum
to 1) where the method has them; its `confidence` is the probability that its least sure per-label decision
is right (p for a label it gave, 1 - p for one it did not)."""

from __future__ import annotations

import time
from typing import Callable, Iterator, Sequence

import numpy as np

from .backends import ConfigError
from .labels import LabelSet
from .methods import Method, Outcome, Prediction
from .usage import Usage

SEPARATOR = ";"
# What a method that cannot give label sets says instead (build_method raises it as a ConfigError).
SUPPORTED = ("a chat model (openai:, together:, openai-compatible:, ...), or a model trained for it: "
             "finetune(rows, labels, multi_label=True) with method='lora' or 'setfit', used as finetuned:<dir>")


def unsupported(method: str) -> ConfigError:
    return ConfigError(f"{method} cannot label multi-label tasks (multi_label=True); use {SUPPORTED}")


def split_labels(value) -> list[str]:
    """One item's labels as given: a list/tuple of names, or a string of names joined by `;` ("" is none)."""
    if isinstance(value, (list, tuple)):
        return [str(v).strip() for v in value]
    if value is None or (isinstance(value, float) and np.isnan(value)):
        return []
    return [part.strip() for part in str(value).split(SEPARATOR) if part.strip()]


def check_label_sets(values: Sequence, labels: LabelSet, what: str = "gold labels") -> list[list[str]]:
    """Each item's label set, names and aliases checked against the set (an error names the item), in
    label-set order without repeats."""
    out = []
    for i, value in enumerate(values):
        names = {labels.check(name, f"{what} of item {i}") for name in split_labels(value)}
        out.append([name for name in labels.names if name in names])
    return out


def indicator(label_sets: Sequence[Sequence[str]], labels: LabelSet) -> np.ndarray:
    """Rows of 0/1, one column per label of the set."""
    matrix = np.zeros((len(label_sets), len(labels)), dtype=np.float32)
    for row, names in enumerate(label_sets):
        for name in names:
            matrix[row, labels.index(name)] = 1.0
    return matrix


def multi_prediction(names: Sequence[str], confidence: float | None = None, source: str = "llm",
                     scores: dict | None = None) -> Prediction:
    return Prediction(SEPARATOR.join(names), confidence, source, scores, labels=tuple(names))


def from_label_probabilities(labels: LabelSet, probabilities: Callable[[Sequence[str]], np.ndarray],
                             texts: Sequence[str], usage: Usage, threshold: float) -> Iterator[tuple[int, Outcome]]:
    """`predict` for a method with one-vs-rest probabilities: every label at or above the threshold."""
    started = time.perf_counter()
    probs = probabilities(texts)
    usage.add(compute_s=time.perf_counter() - started)
    for i, row in enumerate(probs):
        chosen = row >= threshold
        sure = np.where(chosen, row, 1.0 - row)
        yield i, multi_prediction([n for n, c in zip(labels.names, chosen) if c], float(sure.min()),
                                  scores=dict(zip(labels.names, map(float, row))))


def choose_threshold(probs: np.ndarray, gold: np.ndarray, grid: Sequence[float] | None = None) -> float:
    """The one threshold (shared by all labels: per-label ones overfit a few dozen rows) with the best
    micro-F1 on these rows; ties go to the one nearest 0.5."""
    from sklearn.metrics import f1_score

    grid = np.round(np.arange(0.05, 0.96, 0.05), 2) if grid is None else np.asarray(grid)
    scored = [(f1_score(gold, probs >= t, average="micro", zero_division=0), -abs(t - 0.5), float(t)) for t in grid]
    return max(scored)[2]


def check_supported(spec) -> None:
    """Multi-label tasks: chat models and models trained for it; the others say so and what to use."""
    names = {"local": "label scoring (local)", "completions": "label scoring (completions:)",
             "embed": "embed (label similarity)", "offline": "offline"}
    if spec.provider in names:
        raise unsupported(names[spec.provider])


def same_kind(method, multi_label: bool, where: str) -> Method:
    """A method answers label sets exactly when the task is multi-label."""
    if bool(getattr(method, "multi_label", False)) != bool(multi_label):
        if multi_label:
            raise ConfigError(f"{where} is single-label, the task is multi-label: train a model for it with "
                              "finetune(..., multi_label=True)")
        raise ConfigError(f"{where} is multi-label, the task is single-label: give multi_label=True (CLI: "
                          "--multi-label; a task file: multi_label: true)")
    return method
