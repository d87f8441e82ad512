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
from collections.abc import Callable, Iterator, Sequence

import numpy as np

from promptclf.core.errors import ConfigError
from promptclf.core.hashing import fingerprint
from promptclf.core.labels import LabelSet
from promptclf.core.methods import Failure, Method, Outcome, Prediction
from promptclf.core.usage import Usage

SEPARATOR = ";"
# What a method that cannot give label sets says instead (build_method raises it as a ConfigError).
SUPPORTED = (
    "a chat model (openai:, together:, openai-compatible:, ...), a label scorer (local, completions:), "
    "embed or offline (a threshold on their per-label scores), or a model trained for it: "
    "finetune(rows, labels, multi_label=True) with method='lora' or 'setfit', used as finetuned:<dir>"
)
# Thresholded: the threshold without examples to choose it on. Label scorers, embed and offline give a softmax
# over the labels, so 0.5 takes a second label only where the method is sure of it: with the top label kept, a
# single-label answer unless the scores say otherwise. Measured (embed, the GoEmotions Ekman sample in tests/data,
# 112 train rows): the top label averaged 0.45, the second 0.20; without keeping the top label 74% of items
# would get none (micro-F1 0.17 vs 0.31 with it).
DEFAULT_THRESHOLD = 0.5


def unsupported(method: str) -> ConfigError:
    return ConfigError(f"{method} cannot label multi-label tasks (multi_label=True); use {SUPPORTED}")


def holds_a_set(value) -> bool:
    """Whether one value gives a label set: a list (an array from Parquet), or names joined by `;`."""
    return isinstance(value, (list, tuple, np.ndarray)) or (isinstance(value, str) and SEPARATOR in value)


def cell_labels(value) -> str | list[str]:
    """A file cell's label: a list (JSONL) or array (Parquet) is a label set, anything else a string (one name,
    or a multi-label task's names joined by `;`)."""
    return split_labels(value) if isinstance(value, (list, tuple, np.ndarray)) else str(value)


def split_labels(value) -> list[str]:
    """One item's labels as given: a list/tuple/array of names, or a string of names joined by `;` ("" is none)."""
    if isinstance(value, (list, tuple, np.ndarray)):
        return [str(v).strip() for v in value]
    if value is None or (isinstance(value, float) and np.isnan(value)):
        return []
    return [part.strip() for part in str(value).split(SEPARATOR) if part.strip()]


def check_names(labels: LabelSet) -> LabelSet:
    """The set, refused where a label's name or alias holds the separator: joined and split again, it would come
    back as other labels."""
    for label in labels.labels:
        for form in (label.name, *label.aliases):
            if SEPARATOR in form:
                what = f"label {form!r}" if form == label.name else f"alias {form!r} of label {label.name!r}"
                raise ConfigError(
                    f"{what} holds {SEPARATOR!r}, which joins the labels of a multi-label item (in "
                    f"files and the CLI's output): rename it for a multi-label task"
                )
    return labels


def check_label_sets(values: Sequence, labels: LabelSet, what: str = "gold labels") -> list[list[str]]:
    """Each item's label set, names and aliases checked against the set (an error names the item), in
    label-set order without repeats."""
    check_names(labels)
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


def multi_prediction(
    names: Sequence[str], confidence: float | None = None, source: str = "llm", scores: dict | None = None
) -> Prediction:
    return Prediction(SEPARATOR.join(names), confidence, source, scores, labels=tuple(names))


def from_label_probabilities(
    labels: LabelSet,
    probabilities: Callable[[Sequence[str]], np.ndarray],
    texts: Sequence[str],
    usage: Usage,
    threshold: float,
    source: str,
) -> Iterator[tuple[int, Outcome]]:
    """`predict` for a method with one-vs-rest probabilities: every label at or above the threshold,
    answered by `source` (Prediction.source)."""
    started = time.perf_counter()
    probs = probabilities(texts)
    usage.add(compute_s=time.perf_counter() - started)
    for i, row in enumerate(probs):
        chosen = row >= threshold
        sure = np.where(chosen, row, 1.0 - row)
        yield (
            i,
            multi_prediction(
                [n for n, c in zip(labels.names, chosen) if c],
                float(sure.min()),
                source,
                scores=dict(zip(labels.names, map(float, row))),
            ),
        )


def choose_threshold(probs: np.ndarray, gold: np.ndarray, grid: Sequence[float] | None = None) -> float:
    """The one threshold (shared by all labels: per-label ones overfit a few dozen rows) with the best
    micro-F1 on these rows; ties go to the one nearest 0.5."""
    from sklearn.metrics import f1_score

    grid = np.round(np.arange(0.05, 0.96, 0.05), 2) if grid is None else np.asarray(grid)
    scored = [(f1_score(gold, probs >= t, average="micro", zero_division=0), -abs(t - 0.5), float(t)) for t in grid]
    return max(scored)[2]


class Thresholded:
    """A multi-label method around any method whose answers carry a probability per label (Prediction.scores,
    e.g. label scoring, embed, offline): an item's labels are those scoring at or above `threshold`, in
    label-set order; with `keep_top` (the default) the best-scoring label is always in the set, so no item is
    left without a label (the wrapped methods score labels against each other, and a text that fits none
    still has a best one); keep_top=False allows an empty set.

    The threshold: `threshold` if given; else chosen on `gold_rows` (rows of text and `labels`, a list or names
    joined by `;`, or one `label`) for the best micro-F1 of their scores under the wrapped method
    (choose_threshold; the method must not have been trained on these rows, or the threshold fits its training
    fit); else DEFAULT_THRESHOLD. It is chosen on first use (scoring the rows is paid for then and reported in
    the first predict's usage); the identity names the value given or the rows it is chosen on, so answers at
    another threshold are not shared and reading the identity scores nothing."""

    multi_label = True

    def __init__(
        self, method: Method, gold_rows: Sequence[dict] = (), *, threshold: float | None = None, keep_top: bool = True
    ):
        self.method, self.labels, self.keep_top = method, method.labels, keep_top
        self.cacheable = method.cacheable
        if threshold is not None and not 0.0 < threshold <= 1.0:
            raise ConfigError(f"threshold={threshold}: choose a probability in (0, 1]")
        sets = check_label_sets(
            [r["labels"] if "labels" in r else r["label"] for r in gold_rows], self.labels, "example labels"
        )
        self.gold_rows = [(r["text"], names) for r, names in zip(gold_rows, sets)]
        self.given, self._threshold, self._tuning = threshold, threshold, None

    @property
    def scorer(self):  # the wrapped scorer's tokenizer cuts long items (Classifier._limit)
        return getattr(self.method, "scorer", None)

    @property
    def estimate(self):
        return getattr(self.method, "estimate", None)

    @property
    def threshold(self) -> float:
        if self._threshold is None:
            self._threshold = self._choose() if self.gold_rows else DEFAULT_THRESHOLD
        return self._threshold

    @property
    def identity(self) -> str:
        return f"{self.method.identity}|multi-label|threshold={self._threshold_source()}|keep-top={self.keep_top}"

    def _threshold_source(self) -> str:
        """What decides the threshold, known without scoring (the identity is read before anything is labelled):
        the value given or the default, else the rows it is chosen on (the choice is a function of the wrapped
        method's scores on them, and that method is in the identity)."""
        if self.given is not None or not self.gold_rows:
            return repr(self.given if self.given is not None else DEFAULT_THRESHOLD)
        return f"chosen-on-{fingerprint(self.gold_rows)}"

    def _choose(self) -> float:
        self._tuning = Usage()
        texts = [t for t, _ in self.gold_rows]
        scored = {
            i: o.scores for i, o in self.method.predict(texts, self._tuning) if isinstance(o, Prediction) and o.scores
        }
        if not scored:
            raise ConfigError("multi-label: none of the examples got per-label scores to choose the threshold on")
        rows = sorted(scored)
        probs = np.array([[scored[i][name] for name in self.labels.names] for i in rows])
        gold = indicator([self.gold_rows[i][1] for i in rows], self.labels)
        if self.keep_top:  # choose for the sets this method answers: the top label is in them whatever the threshold
            top = probs.argmax(axis=1)
            probs[np.arange(len(rows)), top] = 1.0
        return choose_threshold(probs, gold)

    def label_set(self, scores: dict, source: str) -> Prediction:
        row = np.array([float(scores[name]) for name in self.labels.names])
        chosen = row >= self.threshold
        if self.keep_top:
            chosen[int(row.argmax())] = True
        sure = np.where(chosen, row, 1.0 - row)
        return multi_prediction(
            [n for n, c in zip(self.labels.names, chosen) if c],
            float(sure.min()),
            source,
            scores=dict(zip(self.labels.names, row.tolist())),
        )

    def predict(self, texts: Sequence[str], usage: Usage) -> Iterator[tuple[int, Outcome]]:
        self.threshold  # noqa: B018 (chosen before the first answer, its cost reported once)
        if self._tuning is not None:
            usage.absorb(self._tuning)
            self._tuning = None
        for i, outcome in self.method.predict(texts, usage):
            if isinstance(outcome, Prediction) and not outcome.scores:
                outcome = Failure(f"{type(self.method).__name__} gave no per-label scores to threshold")
            yield i, self.label_set(outcome.scores, outcome.source) if isinstance(outcome, Prediction) else outcome


def same_kind(method, multi_label: bool, where: str) -> Method:
    """A method answers label sets exactly when the task is multi-label."""
    if bool(getattr(method, "multi_label", False)) != bool(multi_label):
        if multi_label:
            raise ConfigError(
                f"{where} is single-label, the task is multi-label: train a model for it with "
                "finetune(..., multi_label=True)"
            )
        raise ConfigError(
            f"{where} is multi-label, the task is single-label: give multi_label=True (CLI: "
            "--multi-label; a task file: multi_label: true)"
        )
    return method
