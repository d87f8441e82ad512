"""`Classifier` composes a labelling method with input checks, the cache, fallback and a run report;
`classify` is the one-call front door."""

from __future__ import annotations

import logging
import math
import time
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import fields
from pathlib import Path

from promptclf.cache.guard import open_guarded
from promptclf.cache.store import CacheBackend
from promptclf.core.errors import ConfigError, InputError, LabellingError
from promptclf.core.labels import LabelSet
from promptclf.core.methods import Method, Prediction
from promptclf.core.model_spec import ModelSpec
from promptclf.core.multilabel import same_kind
from promptclf.core.trust import Assessment, assess, rows_for_margin
from promptclf.core.usage import Usage
from promptclf.pipeline import EMPTY, Pipeline
from promptclf.providers.registry import (
    build,
    check_options,
    is_unset,
    option_names,
    options_for,
    parse_model,
    provider_of,
)
from promptclf.task.definition import TASK_KEYWORDS, Task, is_task
from promptclf.task.examples import check_examples
from promptclf.task.validation import read_validation

log = logging.getLogger("promptclf")


class Classifier:
    """Label texts with one method, behind a cache, with retries, an optional fallback and a run report.

    >>> clf = Classifier(labels=["World", "Sports", "Business", "Sci/Tech"], model="openai:gpt-4o-mini")
    >>> preds = clf.predict(texts)          # [Prediction(label, confidence, source), ...]
    >>> clf.report.summary()                # calls, tokens, cost, retries, wall time

    `labels` may instead be a `Task` (promptclf.task.definition) or the path of its .json/.yaml file: the task keywords
    (descriptions, aliases, examples, negative_examples, instructions) then come from it, not from options.
    """

    def __init__(
        self,
        labels,
        model: str | None = None,
        *,
        aliases=None,
        cache: bool | str | Path | CacheBackend = True,
        fallback=None,
        fallback_below: float | None = None,
        skip_empty: bool = False,
        max_item_tokens: int = 2000,
        truncate: str = "warn",
        progress: bool | None = None,
        seed: int = 0,
        prices: dict | None = None,
        method: Method | None = None,
        unlabeled: Sequence[str] | None = None,
        cascade_from: str | Method | None = None,
        cascade_below: float | None = None,
        multi_label: bool = False,
        window: int | None = None,
        breaker_after: int = 20,
        validation=None,
        target_accuracy: float | None = None,
        risk: float = 0.1,
        **options,
    ):
        """`model`: None (the default) is the model a prompt artifact given as `prompt=` was optimised for, else
        offline. `window`: rows held at once by `stream` (default: 2000, or 16 batches per request slot if more).
        `breaker_after`: stop asking after this many requests in a row failed (0: never; see core/breaker.py).
        `options` are the backend's (promptclf.providers.registry: each provider's options dataclass says which it
        takes and their defaults); one set to other than its default that the model's backend does not take
        is a ConfigError naming the backends that take it.

        `validation`: labelled rows drawn from the data being labelled (a DataFrame with text and label columns,
        a list of (text, label) pairs, or a CSV/JSONL/Parquet file), never trained on: before the first run they
        are labelled (through the cache) and `assessment` (promptclf.core.trust) holds the estimated accuracy with
        its interval and the calibration fitted on them, which every Prediction's confidence then goes through.
        `target_accuracy` (with `validation`): each Prediction's `accepted` says whether its label is
        auto-accepted, by the lowest confidence threshold whose accepted labels' accuracy is at least the target
        with probability at least 1 - `risk`."""
        if truncate not in ("warn", "error", "silent"):
            raise ValueError(f"truncate={truncate!r}: choose 'warn', 'error' or 'silent'")
        self.spec = (
            parse_model(model, options.get("prompt")) if method is None else ModelSpec("custom", type(method).__name__)
        )
        if method is None:
            check_options(self.spec, options)
        else:
            _check_custom(method, options)
        task_values = {}
        if is_task(labels):  # a Task, or its file: it stands for the task keywords (promptclf/task.py)
            task = Task.coerce(labels)
            given = {name: options.get(name) for name in TASK_KEYWORDS if name != "aliases"}
            task_values = task.keyword_options({**given, "aliases": aliases}, options.get("prompt"))
            labels = task_values.pop("labels")
            multi_label = multi_label or task_values.pop("multi_label")
            if method is None:
                _warn_unused(self.spec, task_values, labels)
        self.labels = LabelSet.of(labels, options.get("descriptions"), aliases)
        values = {**options, **task_values, "seed": seed, "progress": progress, "unlabeled": _unlabeled(unlabeled)}
        values["examples"] = check_examples(values.get("examples"), self.labels, multi_label=bool(multi_label))
        values["negative_examples"] = check_examples(values.get("negative_examples"), self.labels, "negative example")
        self.multi_label = bool(multi_label)
        if self.multi_label:  # only where set: the single-label options and cache keys stay as they were
            values["multi_label"] = True
        self.validation = read_validation(validation, self.labels, values["examples"])
        self.target_accuracy, self.risk = _checked_target(target_accuracy, risk, self.validation, self.multi_label)
        if self.validation:  # the offline provider chooses its combination on them; other backends ignore them
            values["validation"] = self.validation
        self.assessment: Assessment | None = None
        self._values = values
        if method is None:
            resolved = options_for(self.spec, self.labels, values)
            self.options = {f.name: getattr(resolved, f.name) for f in fields(resolved)}
            self.method = build(self.spec, self.labels, resolved)
        else:
            self.options, self.method = values, same_kind(method, self.multi_label, type(method).__name__)
        self.cache = open_guarded(cache)
        self._choose_below = False
        if cascade_from is not None or cascade_below is not None:
            if self.multi_label:
                raise ConfigError("a cascade routes single labels by confidence; it does not take multi-label tasks")
            self.method = self._cascade(cascade_from, cascade_below)
        self.fallback = _fallback(fallback, self.labels, self.multi_label)
        self.fallback_below = fallback_below
        self.skip_empty, self.max_item_tokens, self.truncate = skip_empty, max_item_tokens, truncate
        self.progress, self.prices = progress, prices or {}
        if window is not None and window < 1:
            raise ValueError(f"window={window}: at least 1 row")
        self.window, self.breaker_after = window, breaker_after
        self.report = Usage(model=self.spec.id, prices=self.prices)

    def _cascade(self, local, below):
        """The configured method as the API stage behind a local first stage (promptclf.cascade)."""
        from promptclf.cascade import Cascade

        self._choose_below = below is None and self.target_accuracy is not None
        if local is None or (below is None and not self._choose_below):
            raise ConfigError(
                "a cascade needs both cascade_from (the local model) and cascade_below (its "
                "confidence threshold, e.g. chosen with promptclf.cascade.choose_threshold)"
            )
        if not isinstance(local, Method):  # it takes the options that apply to it; the rest are the API model's
            spec = parse_model(local)
            local = build(spec, self.labels, options_for(spec, self.labels, self._values))
        # With a target, its threshold is chosen on the validation rows before the first run (validate).
        return Cascade(local, self.method, math.inf if self._choose_below else below, cache=self.cache)

    # --- the verbs ------------------------------------------------------------------------------------

    def stream(self, texts: Iterable, *, total: int | None = None) -> Iterator[Prediction | None]:
        """One Prediction per input, in input order, as they are ready, holding at most `window` rows (and
        their requests) at a time: `texts` may be any iterable, a generator of millions of rows included.

        Nothing is dropped: a row that could not be labelled comes as a Prediction with label None, source
        "failed" and `error` saying why (an item that is not a string or is empty: "input: ..."). Empty items
        under skip_empty come as None. Duplicates are asked once within a window and found in the cache across
        windows. After the last row, `report` holds the run's counts and `stopped` why it stopped asking, if it
        did. `total` is only for the progress bar, where `texts` has no length."""
        return self._run(texts, self._prepared_row, total)

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
        predictions = list(pipeline.run(texts, usage, self._prepared_row, len(texts)))
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
        estimate = getattr(self.method, "estimate", None)
        accuracy = getattr(estimate, "accuracy", None)
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
        prepared = self._prepare(texts)
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

    def _prepare(self, texts) -> list[str | None]:
        """Every item checked (and cut to length) before anything is asked: an InputError names the first that
        cannot be labelled."""
        if isinstance(texts, str):
            raise InputError("texts must be a list of strings, not one string: wrap it as [text]")
        return [self.prepare_item(i, text) for i, text in enumerate(texts)]

    def prepare_item(self, i: int, text) -> str | None:
        """Item `i` as `predict` labels it (cut to max_item_tokens), None if empty under skip_empty; an item
        that cannot be labelled raises InputError. Batch labellers check each row with it."""
        if not isinstance(text, str):
            reason = f"{type(text).__name__} ({text!r:.40}), not a string"
            raise InputError(f"item {i} is {reason}", reason)
        if not text.strip():
            if self.skip_empty:
                return None
            reason = "empty or whitespace-only (pass skip_empty=True to get None for it)"
            raise InputError(f"item {i} is {reason}", reason)
        return self._limit(i, text)

    def _limit(self, i: int, text: str) -> str:
        """Texts over max_item_tokens are cut (by the model's tokenizer where it has one, else ~4 chars a token)."""
        scorer = getattr(self.method, "scorer", None)
        if hasattr(scorer, "count_tokens"):
            over = len(text) > self.max_item_tokens and scorer.count_tokens(text) > self.max_item_tokens
            cut = (lambda: scorer.truncate(text, self.max_item_tokens)) if over else None
        else:
            over = len(text) > 4 * self.max_item_tokens
            cut = lambda: text[: 4 * self.max_item_tokens]  # noqa: E731
        if not over:
            return text
        if self.truncate == "error":
            reason = f"longer than max_item_tokens={self.max_item_tokens}"
            raise InputError(f"item {i} is {reason}", reason)
        if self.truncate == "warn":
            log.warning("promptclf: item %d is longer than %d tokens; truncated", i, self.max_item_tokens)
        return cut()

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

    def _prepared_row(self, i: int, text):
        prepared = self.prepare_item(i, text)
        return EMPTY if prepared is None else prepared


def _checked_target(target, risk, validation: list, multi_label: bool) -> tuple[float | None, float]:
    if validation and multi_label:
        raise ConfigError("a validation sample measures single labels; this task is multi-label")
    if isinstance(risk, bool) or not isinstance(risk, (int, float)) or not 0 < risk < 1:
        raise ConfigError(f"risk={risk!r}: the chance the guarantee fails, between 0 and 1 (e.g. 0.1)")
    if target is None:
        return None, float(risk)
    if isinstance(target, bool) or not isinstance(target, (int, float)) or not 0 < target < 1:
        raise ConfigError(f"target_accuracy={target!r}: an accuracy between 0 and 1 (e.g. 0.95)")
    if not validation:
        raise ConfigError(
            "target_accuracy needs a validation sample (validation=): the threshold is chosen on labelled rows"
        )
    return float(target), float(risk)


def assess_predictions(
    predictions: Sequence, rows: Sequence[dict], labels: LabelSet, target: float | None, risk: float
) -> Assessment:
    """The assessment (promptclf.core.trust.assess) of predictions of the validation rows; a row that could not
    be labelled counts as wrong, without a confidence."""
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


def _check_custom(method: Method, options: dict) -> None:
    """A method given ready-made takes no backend options: they configure the method a model string builds."""
    for name, value in options.items():
        if name not in option_names():
            raise TypeError(f"Classifier got an unknown option {name!r}")
        if not is_unset(name, value):
            raise ConfigError(
                f"option {name} does not apply to method={type(method).__name__}: backend options "
                "configure the method a model string builds"
            )


def _warn_unused(spec: ModelSpec, task_values: dict, labels: LabelSet) -> None:
    """A task is meant for any model, so parts of it this backend cannot use are said, not refused."""
    taken = {f.name for f in fields(provider_of(spec).options)}
    parts = {**task_values, "descriptions": [lab.description for lab in labels.labels if lab.description]}
    unused = [name for name, value in parts.items() if value and name not in taken]
    if unused:
        log.warning("promptclf: model %s does not use the task's %s", spec.id, ", ".join(unused))


def _unlabeled(texts) -> list[str]:
    """Unlabelled texts the `embed` and `offline` methods self-train on; other methods ignore them."""
    if texts is None:
        return []
    if isinstance(texts, str):
        raise InputError("unlabeled must be a list of strings, not one string")
    bad = next((i for i, t in enumerate(texts) if not isinstance(t, str)), None)
    if bad is not None:
        raise InputError(f"unlabeled text {bad} is {type(texts[bad]).__name__}, not a string")
    return [t for t in texts if t.strip()]


def _fallback(fallback, labels: LabelSet, multi_label: bool = False) -> Method | None:
    if fallback is None:
        return fallback
    if isinstance(fallback, Method):
        return same_kind(fallback, multi_label, "the fallback") if multi_label else fallback
    from promptclf.methods.finetune import load_finetuned

    path = str(fallback)
    path = path[len("finetuned:") :] if path.startswith("finetuned:") else path
    return same_kind(load_finetuned(path, labels), multi_label, f"the fallback {path}")


def classify(texts: Sequence[str], labels, model: str | None = None, **options) -> list:
    """Label each text with one label from `labels` (multi_label=True, or a multi-label Task: a list of
    labels per text), in input order. Options are Classifier's; without
    examples, `embed` and the offline default self-train on the texts themselves (pass unlabeled=[] not to)."""
    if not isinstance(texts, str) and len(texts) == 0:
        return []
    if not isinstance(texts, str) and all(isinstance(t, str) for t in texts):
        options.setdefault("unlabeled", texts)  # the texts themselves teach the label vectors (label_similarity.py)
    return Classifier(labels, model, **options).classify(texts)
