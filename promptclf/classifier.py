"""`Classifier` runs a labelling method behind the cache, with input checks, an optional fallback and a run
report; `classify` is the one-call front door. What it runs is built from its options by promptclf/builder.py
(the options themselves are declared in promptclf/config.py), and run by promptclf/pipeline.py."""

from __future__ import annotations

import inspect
import logging
import math
import time
from collections.abc import Iterable, Iterator, Sequence
from pathlib import Path

from promptclf.builder import build_classifier
from promptclf.config import Config, keyword_parameters, option_defaults
from promptclf.core.errors import ConfigError, LabellingError
from promptclf.core.labels import LabelSet
from promptclf.core.methods import Prediction
from promptclf.core.trust import Assessment, assess, rows_for_margin
from promptclf.core.usage import Usage
from promptclf.pipeline import EMPTY, ItemCheck, Pipeline

log = logging.getLogger("promptclf")


class Classifier:
    """Label texts with one method, behind a cache, with retries, an optional fallback and a run report.

    >>> clf = Classifier(labels=["World", "Sports", "Business", "Sci/Tech"], model="openai:gpt-4o-mini")
    >>> preds = clf.predict(texts)          # [Prediction(label, confidence, source), ...]
    >>> clf.report.summary()                # calls, tokens, cost, retries, wall time

    `labels` takes one of these forms:

    - a list (or tuple) of label names: `["World", "Sports"]`;
    - one string of names separated by commas: `"World,Sports"`;
    - a dict of name -> description: `{"World": "news from abroad", "Sports": "games and players"}`;
    - a `LabelSet` (promptclf/core/labels.py), or a list of its `Label`s;
    - a `Task` (promptclf/task/definition.py) or the path of its .json/.yaml file: the task keywords
      (descriptions, aliases, examples, negative_examples, instructions, multi_label) then come from it, not
      from options.

    Anything else (a number, None, a set, a list holding something other than names, fewer than two distinct
    labels) is a LabelError naming these forms (tests/test_top_level.py tries each).

    `model`: a model string ("embed", "openai:gpt-4o-mini", ...; promptclf/providers/registry.py has every
    form); None (the default) is the model a prompt artifact given as `prompt=` was optimised for, else offline.
    The keyword options are the run options (promptclf/config.py, `RunOptions`: cache, fallback, skip_empty,
    max_item_tokens, truncate, window, cascade_from, ...) and the backend's (each provider's options dataclass
    in promptclf/providers/registry.py says which it takes and their defaults). A backend option set to other
    than its default that the model's backend does not take is a ConfigError naming the backends that take it.

    `validation`: labelled rows drawn from the data being labelled (a DataFrame with text and label columns, a
    list of (text, label) pairs, or a CSV/JSONL/Parquet file), never trained on: before the first run they are
    labelled (through the cache) and `assessment` (promptclf/core/trust.py) holds the estimated accuracy with its
    interval and the calibration fitted on them, which every Prediction's confidence then goes through.
    `target_accuracy` (with `validation`): each Prediction's `accepted` says whether its label is auto-accepted,
    by the lowest confidence threshold whose accepted labels' accuracy is at least the target with probability
    at least 1 - `risk`.
    """

    def __init__(self, labels, model: str | None = None, **options):
        self.config = Config.of(labels, model, **options)
        built = build_classifier(self.config)
        self.spec, self.labels, self.multi_label = built.spec, built.labels, built.multi_label
        self.method, self.options, self.cache, self.fallback = built.method, built.options, built.cache, built.fallback
        run = self.config.run
        self.fallback_below, self.progress, self.prices = run.fallback_below, run.progress, run.prices or {}
        self.window, self.breaker_after = run.window, run.breaker_after
        self.skip_empty, self.max_item_tokens, self.truncate = run.skip_empty, run.max_item_tokens, run.truncate
        self.validation, self._choose_below = built.validation, built.choose_below
        self.target_accuracy, self.risk = run.target_accuracy, run.risk
        self.assessment: Assessment | None = None
        self.report = Usage(model=self.spec.id, prices=self.prices)

    __init__.__signature__ = inspect.Signature(
        [
            inspect.Parameter("self", inspect.Parameter.POSITIONAL_OR_KEYWORD),
            inspect.Parameter("labels", inspect.Parameter.POSITIONAL_OR_KEYWORD),
            inspect.Parameter("model", inspect.Parameter.POSITIONAL_OR_KEYWORD, default=None),
            *keyword_parameters(option_defaults()),
        ]
    )

    # --- the verbs ------------------------------------------------------------------------------------

    def stream(self, texts: Iterable, *, total: int | None = None) -> Iterator[Prediction | None]:
        """One Prediction per input, in input order, as they are ready, holding at most `window` rows (and
        their requests) at a time: `texts` may be any iterable, a generator of millions of rows included.

        Nothing is dropped: a row that could not be labelled comes as a Prediction with label None, source
        "failed" and `error` saying why (an item that is not a string or is empty: "input: ..."). Empty items
        under skip_empty come as None. Duplicates are asked once within a window and found in the cache across
        windows. After the last row, `report` holds the run's counts and `stopped` why it stopped asking, if it
        did. `total` is only for the progress bar, where `texts` has no length."""
        return self._run(texts, self._check().row, total)

    def _run(self, rows: Iterable, prepare, total: int | None) -> Iterator[Prediction | None]:
        started = time.perf_counter()
        self.report = Usage(model=self.spec.id, prices=self.prices)
        if self.validation and self.assessment is None:
            self.report.absorb(self.validate())
        self.pipeline = self._pipeline()
        try:
            for prediction in self.pipeline.run(rows, self.report, prepare, total):
                self.report.add(items=1, failed=int(prediction is not None and prediction.error is not None))
                yield prediction if self.assessment is None else self.assessment.apply(prediction)
        finally:
            self.report.add(wall_s=time.perf_counter() - started)
            if getattr(self.method, "estimate", None) is not None:
                self.report.estimate = self.method.estimate.describe()
            self.report.trust = self._trust_summary()

    # --- the validation sample ------------------------------------------------------------------------

    def validate(self) -> Usage:
        """Label the validation rows (through the cache; in a cascade whose threshold is to be chosen, first with
        its local stage) and assess them into `assessment`. Returns what labelling them used."""
        if not self.validation:
            raise ConfigError("no validation sample: pass validation= (labelled rows drawn from your data)")
        usage = Usage(model=self.spec.id, prices=self.prices)
        risk = self.risk
        if self._choose_below:  # two choices on the same rows: each at half the risk
            risk = self.risk / 2
            self.method.below = self._local_threshold(risk, usage)
        texts = [row["text"] for row in self.validation]
        pipeline = self._pipeline(f"labelling {len(texts)} validation rows with {self.spec.id}")
        predictions = list(pipeline.run(texts, usage, self._check().row, len(texts)))
        self.assessment = assess_predictions(predictions, self.validation, self.labels, self.target_accuracy, risk)
        (log.warning if self.progress else log.info)("promptclf: %s", self.assessment.describe())
        return usage

    def _local_threshold(self, risk: float, usage: Usage) -> float:
        """The cascade's threshold: the local stage's auto-accept threshold on the validation rows (every row
        goes on to the API where none certifies the target)."""
        from promptclf.cascade import stage_predictions

        local = stage_predictions(self.method.local, [row["text"] for row in self.validation], usage, self.cache)
        acceptance = assess_predictions(local, self.validation, self.labels, self.target_accuracy, risk).acceptance
        return math.inf if acceptance.threshold is None else acceptance.threshold

    def _trust_summary(self) -> str:
        """What the report says of the answers' accuracy and confidence."""
        if self.assessment is not None:
            return self.assessment.describe()
        accuracy = getattr(getattr(self.method, "estimate", None), "accuracy", None)
        return (
            "accuracy and confidence are uncalibrated estimates: a validation sample of "
            f"{rows_for_margin(0.03, accuracy)} labelled rows drawn from your data would give a 95% interval of "
            "+-3 points and calibrate the confidence (validation=, --validation)"
        )

    def write_reliability_diagram(self, path: str | Path) -> Path:
        """The reliability diagram of the validation rows (confidence before and after calibration against
        accuracy) as a PNG at `path`."""
        from promptclf.core.reliability_plot import write_reliability_diagram

        if self.assessment is None:
            self.validate()
        return write_reliability_diagram(self.assessment, path, title=f"{self.spec.id}: validation rows")

    def predict(self, texts: Sequence[str], errors: str = "raise") -> list[Prediction | None]:
        """One Prediction per input, in input order (None only for empty items with skip_empty=True). Every item
        is checked before anything is asked (InputError names the first bad one).

        errors="raise": if items could not be labelled, LabellingError names them (what was answered is in its
        `predictions`, and cached), or the ConfigError that stopped the run is raised. errors="keep": failed items
        come back as Predictions with label None and `error` set (see `stream`)."""
        if errors not in ("raise", "keep"):
            raise ValueError(f"errors={errors!r}: choose 'raise' or 'keep'")
        prepared = self._check().all(texts)
        predictions = list(self._run(prepared, lambda i, text: EMPTY if text is None else text, len(prepared)))
        if errors == "keep":
            return predictions
        if self.pipeline.state.error is not None:
            raise self.pipeline.state.error
        failures = {i: p.error for i, p in enumerate(predictions) if p is not None and p.error is not None}
        if failures:
            kept = [None if p is None or p.error is not None else p for p in predictions]
            raise LabellingError(failures, [str(t) for t in texts], kept)
        return predictions

    @property
    def stopped(self) -> str | None:
        """Why the last run stopped asking before its last row (its circuit breaker, a refused configuration),
        or None where it asked everything."""
        pipeline = getattr(self, "pipeline", None)
        return pipeline.state.reason if pipeline is not None and pipeline.state is not None else None

    def classify(self, texts: Sequence[str]) -> list:
        """One label per input; for a multi-label task, one list of labels per input (possibly empty)."""
        if self.multi_label:
            return [list(p.labels) if p else None for p in self.predict(texts)]
        return [p.label if p else None for p in self.predict(texts)]

    def as_runnable(self):
        """This classifier as a LangChain Runnable: `invoke(texts) -> labels`, composable with `|`."""
        from langchain_core.runnables import RunnableLambda

        return RunnableLambda(self.classify, name=f"promptclf[{self.spec.id}]")

    def score(self, texts: Sequence[str], gold: Sequence[str]) -> dict:
        """Accuracy and macro-F1 against gold labels (given as names or aliases of the set). Multi-label:
        each gold is a list of labels or names joined by `;`; micro/macro-F1, subset accuracy, Hamming loss."""
        from promptclf.core.metrics import classification_metrics

        if self.multi_label:
            from promptclf.core.metrics import multilabel_metrics
            from promptclf.core.multilabel import check_label_sets

            return multilabel_metrics(check_label_sets(gold, self.labels), self.classify(texts), self.labels.names)

        truth = [self.labels.check(g, f"gold label of item {i}") for i, g in enumerate(gold)]
        return classification_metrics(truth, self.classify(texts), self.labels.names)

    # --- the steps ------------------------------------------------------------------------------------

    def _check(self) -> ItemCheck:
        scorer = getattr(self.method, "scorer", None)
        return ItemCheck(self.max_item_tokens, self.truncate, self.skip_empty, scorer)

    def prepare_item(self, i: int, text) -> str | None:
        """Item `i` as `predict` labels it (cut to max_item_tokens), None if empty under skip_empty; an item
        that cannot be labelled raises InputError. Batch labellers check each row with it."""
        return self._check().item(i, text)

    def _pipeline(self, name: str = "") -> Pipeline:
        default_window = max(
            2000, 16 * int(self.options.get("batch_size") or 1) * int(self.options.get("concurrency") or 1)
        )
        return Pipeline(
            self.method,
            self.labels,
            self.cache,
            fallback=self.fallback,
            fallback_below=self.fallback_below,
            window=self.window or default_window,
            breaker_after=self.breaker_after,
            progress=self.progress,
            name=name or f"labelling with {self.spec.id}",
        )


def assess_predictions(
    predictions: Sequence, rows: Sequence[dict], labels: LabelSet, target: float | None, risk: float
) -> Assessment:
    """The assessment (promptclf/core/trust.py, `assess`) of predictions of the validation rows; a row that could
    not be labelled counts as wrong, without a confidence."""
    import numpy as np

    answered = [p is not None and p.error is None and p.label is not None for p in predictions]
    right = [ok and p.label == row["label"] for ok, p, row in zip(answered, predictions, rows)]
    confidence = [p.confidence if ok else None for ok, p in zip(answered, predictions)]
    probabilities = gold = None
    if all(ok and p.scores for ok, p in zip(answered, predictions)):
        probabilities = np.array([[p.scores.get(name, 0.0) for name in labels.names] for p in predictions])
        probabilities /= probabilities.sum(axis=1, keepdims=True)
        gold = np.array([labels.index(row["label"]) for row in rows])
    return assess(confidence, right, probabilities, gold, target, risk)


def classify(texts: Sequence[str], labels, model: str | None = None, **options) -> list:
    """Label each text with one label from `labels` (multi_label=True, or a multi-label Task: a list of
    labels per text), in input order. Options are Classifier's; without
    examples, `embed` and the offline default self-train on the texts themselves (pass unlabeled=[] not to)."""
    if not isinstance(texts, str) and len(texts) == 0:
        return []
    if not isinstance(texts, str) and all(isinstance(t, str) for t in texts):
        options.setdefault("unlabeled", texts)  # the texts themselves teach the label vectors (label_similarity.py)
    return Classifier(labels, model, **options).classify(texts)
