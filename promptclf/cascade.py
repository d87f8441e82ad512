"""A cascade: a cheap local method answers first and only the items it is unsure of go on to the API method
(FrugalGPT, Chen et al., 2023), and the choice of its threshold on labelled dev rows.

`Cascade` is a labelling method like any other. Each outcome's `source` says which stage answered: "local",
"api", or "cache" where a stage's answer came from the answer cache. Each stage caches under its own
identity (the same keys a plain Classifier of that method uses), so a new threshold reuses every API answer
already paid for. `frontier` and `choose_threshold` are pure functions on the dev rows' arrays.
"""

from __future__ import annotations

import math
import numbers
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, replace

import numpy as np

from promptclf.cache.store import CacheBackend
from promptclf.core.errors import ConfigError
from promptclf.core.identity import method_identity
from promptclf.core.methods import Failure, Method, Outcome, Prediction
from promptclf.core.usage import Usage

GOALS = ("accuracy", "drop", "share", "cost")


class Cascade:
    """Answer with `local`; send the items whose confidence is below `below` (and those it failed) to `api`.

    `below` above every confidence (e.g. 1.01) sends every item to the API; 0 sends none. A local answer
    without a confidence is a ConfigError, raised before any API call: such a method cannot be cascaded.
    An API failure is yielded as a Failure naming the stage, so the Classifier's fallback or its
    LabellingError takes it like any other.
    """

    cacheable = False  # each stage caches its own answers (see _stage); the cascade adds nothing to cache

    def __init__(self, local: Method, api: Method, below: float, *, cache: CacheBackend | None = None):
        if isinstance(below, bool) or not isinstance(below, numbers.Real) or not below >= 0:
            raise ConfigError(
                f"cascade threshold {below!r}: give a confidence of 0 or more (0.8 sends the items "
                "the local method is less than 80% sure of to the API)"
            )
        if local.labels.names != api.labels.names:
            raise ConfigError(
                f"cascade stages have different label sets: {list(local.labels.names)} (local) vs "
                f"{list(api.labels.names)} (API)"
            )
        self.local, self.api, self.below, self.cache = local, api, float(below), cache
        self.labels = api.labels

    @property
    def identity(self) -> str:
        return method_identity("cascade", self.local.identity, self.api.identity, self.below, hashed=True)

    @property
    def estimate(self):
        """The local stage's cross-validated estimate, where it has one (offline)."""
        return getattr(self.local, "estimate", None)

    def predict(self, texts: Sequence[str], usage: Usage) -> Iterator[tuple[int, Outcome]]:
        local_usage = Usage()  # the local stage's token counts are not the API's: only its compute is kept
        unsure: list[int] = []
        unsure_why: list[str] = []
        for pos, outcome in _stage(self.local, texts, local_usage, self.cache):
            if isinstance(outcome, Prediction) and outcome.confidence is None:
                raise ConfigError(
                    f"cascade: the local stage ({type(self.local).__name__}) answers without a "
                    "confidence; cascade from a method that gives one (finetuned:<dir>, embed, "
                    "offline, local, a fitted baseline)"
                )
            if isinstance(outcome, Prediction) and outcome.confidence >= self.below:
                usage.add(answered_locally=1, cache_hits=int(outcome.source == "cache"))
                yield pos, outcome if outcome.source == "cache" else replace(outcome, source="local")
            else:
                unsure.append(pos)
                unsure_why.append(_why_unsure(outcome, self.below))
        usage.add(compute_s=local_usage.compute_s, escalated=len(unsure))
        for j, outcome in _stage(self.api, [texts[p] for p in unsure], usage, self.cache):
            if isinstance(outcome, Failure):
                yield unsure[j], Failure(f"API stage: {outcome.reason} (sent on because {unsure_why[j]})")
            else:
                yield unsure[j], outcome if outcome.source == "cache" else replace(outcome, source="api")


def _why_unsure(outcome: Outcome, below: float) -> str:
    if isinstance(outcome, Failure):
        return f"the local stage failed: {outcome.reason}"
    return f"the local stage answered {outcome.label!r} at confidence {outcome.confidence:.3f} < {below:g}"


def _stage(
    method: Method, texts: Sequence[str], usage: Usage, cache: CacheBackend | None
) -> Iterator[tuple[int, Outcome]]:
    """One stage's outcomes through the answer cache, under the method's own identity (so a plain Classifier
    of the same method shares the entries)."""
    from promptclf.cache.answering import answer

    return answer(method, texts, usage, cache, method.labels)


def stage_predictions(
    method: Method, texts: Sequence[str], usage: Usage, cache: CacheBackend | None
) -> list[Prediction]:
    """One stage's answers to `texts`, in order, through the answer cache (a failure as a failed Prediction)."""
    answers: list[Prediction] = [Prediction.failed("not answered")] * len(texts)
    for pos, outcome in _stage(method, texts, usage, cache):
        answers[pos] = outcome if isinstance(outcome, Prediction) else Prediction.failed(outcome.reason)
    return answers


# --- the threshold, chosen on labelled dev rows ----------------------------------------------------------


@dataclass
class StageRecord:
    """Both stages run on every one of some labelled rows: what a frontier is computed from.

    `confidence` is NaN where the local stage failed (such an item is always sent on); an API failure counts
    as a wrong answer. `api_cost_per_item` is dollars per item the API answered (None without a price)."""

    confidence: np.ndarray
    local_correct: np.ndarray
    api_correct: np.ndarray
    api_cost_per_item: float | None
    api_usage: Usage


def measure(
    local: Method,
    api: Method,
    rows: Sequence[dict],
    *,
    cache: CacheBackend | None = None,
    api_usage: Usage | None = None,
) -> StageRecord:
    """Run both stages on all `rows` ([{"text", "label"}]) and record the local confidence and both stages'
    correctness. The API is asked about every row (a frontier needs its answer at every threshold)."""
    texts = [r["text"] for r in rows]
    gold = [api.labels.check(r["label"], f"gold label of row {i}") for i, r in enumerate(rows)]
    n = len(rows)
    confidence, local_correct, api_correct = np.full(n, np.nan), np.zeros(n, bool), np.zeros(n, bool)
    for pos, outcome in _stage(local, texts, Usage(), cache):
        if isinstance(outcome, Prediction):
            if outcome.confidence is None:
                raise ConfigError(f"cascade: the local stage ({type(local).__name__}) gives no confidence")
            confidence[pos], local_correct[pos] = outcome.confidence, outcome.label == gold[pos]
    usage = api_usage if api_usage is not None else Usage(model=getattr(api, "model_id", ""))
    before = usage.cost_usd
    hits = 0
    for pos, outcome in _stage(api, texts, usage, cache):
        api_correct[pos] = isinstance(outcome, Prediction) and outcome.label == gold[pos]
        hits += isinstance(outcome, Prediction) and outcome.source == "cache"
    paid = n - hits
    cost = None if usage.cost_usd is None or before is None or paid == 0 else (usage.cost_usd - before) / paid
    return StageRecord(confidence, local_correct, api_correct, cost, usage)


@dataclass(frozen=True)
class FrontierPoint:
    """The cascade at one threshold: its accuracy, the share of items it sends to the API and their cost."""

    threshold: float
    accuracy: float
    api_share: float
    api_items: int
    cost_per_1k_items: float | None


def candidate_thresholds(confidence: np.ndarray) -> np.ndarray:
    """0 (only the items the local stage failed go to the API), every distinct confidence, and a threshold
    above them all (every item)."""
    finite = np.unique(confidence[np.isfinite(confidence)])
    top = np.nextafter(max(1.0, float(finite.max()) if finite.size else 1.0), math.inf)
    return np.concatenate([[0.0], finite[finite > 0], [top]])


def frontier(
    confidence, local_correct, api_correct, api_cost_per_item: float | None = None, thresholds=None
) -> list[FrontierPoint]:
    """The cascade's accuracy and API share at each threshold: an item goes to the API when its local
    confidence is below the threshold (or NaN: the local stage failed)."""
    confidence = np.asarray(confidence, dtype=float)
    local_correct, api_correct = np.asarray(local_correct, bool), np.asarray(api_correct, bool)
    n = len(confidence)
    if n == 0 or len(local_correct) != n or len(api_correct) != n:
        raise ValueError(f"frontier needs equal, non-empty arrays: got {n}, {len(local_correct)}, {len(api_correct)}")
    thresholds = candidate_thresholds(confidence) if thresholds is None else np.asarray(thresholds, dtype=float)
    order = np.argsort(np.where(np.isnan(confidence), -np.inf, confidence), kind="stable")
    ranked = np.where(np.isnan(confidence), -np.inf, confidence)[order]
    api_right = np.concatenate([[0], np.cumsum(api_correct[order])])
    local_right = np.concatenate([[0], np.cumsum(local_correct[order])])
    sent = np.searchsorted(ranked, thresholds, side="left")  # items with confidence below each threshold
    correct = api_right[sent] + local_right[-1] - local_right[sent]
    return [
        FrontierPoint(
            float(t),
            float(c / n),
            float(k / n),
            int(k),
            None if api_cost_per_item is None else 1000 * api_cost_per_item * k / n,
        )
        for t, c, k in zip(thresholds, correct, sent)
    ]


@dataclass(frozen=True)
class Goal:
    """What a threshold must achieve on the dev rows: `accuracy` at least `value`; a `drop` of at most
    `value` from sending everything to the API; an API `share` of at most `value`; or a `cost` of at most
    `value` dollars per 1,000 items. Written "drop:0.01", "accuracy:0.9", "share:0.4", "cost:0.05"."""

    kind: str
    value: float

    def __post_init__(self):
        if self.kind not in GOALS:
            raise ConfigError(f"cascade goal {self.kind!r}: choose one of {', '.join(GOALS)}")
        if isinstance(self.value, bool) or not (isinstance(self.value, numbers.Real) and self.value >= 0):
            raise ConfigError(f"cascade goal {self.kind}:{self.value!r}: the value must be a number, 0 or more")

    @classmethod
    def parse(cls, text: str) -> Goal:
        kind, sep, value = str(text).partition(":")
        try:
            number = float(value)
        except ValueError:
            number = None
        if not sep or number is None:
            raise ConfigError(
                f"cascade goal {text!r}: write kind:value, e.g. drop:0.01, accuracy:0.9, share:0.4 "
                "or cost:0.05 (dollars per 1,000 items)"
            )
        return cls(kind.strip(), number)

    def __str__(self) -> str:
        return f"{self.kind}:{self.value:g}"


class NoThreshold(ConfigError):
    """No threshold meets the goal on the dev rows; the message says what the best one reaches."""


def choose_threshold(points: Sequence[FrontierPoint], goal: Goal | str) -> FrontierPoint:
    """The cheapest point reaching an accuracy goal (`accuracy`, `drop`), or the most accurate point within a
    budget (`share`, `cost`); ties go to the cheaper, then the lower threshold."""
    goal = Goal.parse(goal) if isinstance(goal, str) else goal
    if not points:
        raise ValueError("choose_threshold needs frontier points")
    if goal.kind == "cost" and any(p.cost_per_1k_items is None for p in points):
        raise ConfigError("a cost goal needs the API's price: register_price(model, input, output) or prices=")
    if goal.kind in ("accuracy", "drop"):
        api_only = max(points, key=lambda p: p.api_share).accuracy
        floor = goal.value if goal.kind == "accuracy" else api_only - goal.value
        feasible = [p for p in points if p.accuracy >= floor - 1e-12]
        best = min(feasible, key=lambda p: (p.api_share, -p.accuracy, p.threshold), default=None)
        wanted = f"accuracy {floor:.4f}"
        if goal.kind == "drop":
            wanted += f" (API alone {api_only:.4f}, less {goal.value:g})"
    else:
        spent = (lambda p: p.api_share) if goal.kind == "share" else (lambda p: p.cost_per_1k_items)
        feasible = [p for p in points if spent(p) <= goal.value + 1e-12]
        best = max(feasible, key=lambda p: (p.accuracy, -p.api_share, -p.threshold), default=None)
        wanted = (
            f"an API share of at most {goal.value:g}"
            if goal.kind == "share"
            else f"at most ${goal.value:g} per 1,000 items"
        )
    if best is None:
        top = max(points, key=lambda p: p.accuracy)
        raise NoThreshold(
            f"no cascade threshold reaches {wanted} on the dev rows: the most accurate, "
            f"{top.threshold:.4f}, scores {top.accuracy:.4f} sending {top.api_share:.0%} to the API"
        )
    return best


def thin(points: Sequence[FrontierPoint], steps: int = 11) -> list[FrontierPoint]:
    """A few points for a table: the last point at or below each API share 0, 1/(steps-1), ..., 1."""
    chosen = []
    for target in np.linspace(0, 1, steps):
        below = [p for p in points if p.api_share <= target + 1e-12]
        if below and below[-1] not in chosen:
            chosen.append(below[-1])
    return chosen
