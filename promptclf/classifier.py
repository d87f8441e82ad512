"""`Classifier` composes a labelling method with input checks, the cache, fallback and a run report;
`classify` is the one-call front door."""

from __future__ import annotations

import logging
import sys
import time
from dataclasses import replace
from pathlib import Path
from typing import Sequence

from tqdm.auto import tqdm

from .backends import ConfigError, ModelSpec, chat_model, llm_fingerprint, parse_model
from .cache import CacheBackend
from .cache_url import open_cache
from .labels import LabelSet
from .methods import Failure, Method, Prediction
from .usage import Usage

log = logging.getLogger("promptclf")


class InputError(ValueError):
    """An input item cannot be labelled as given (not a string, empty): the message names the item, `reason`
    says what is wrong with it without the position (for a per-row error column)."""

    def __init__(self, message: str, reason: str | None = None):
        super().__init__(message)
        self.reason = reason or message


class LabellingError(RuntimeError):
    """Some items could not be labelled after retries and re-asks, and no fallback took them.

    `failures` maps item position -> reason; `predictions` holds everything that was labelled (and cached).
    """

    def __init__(self, failures: dict[int, str], texts: Sequence[str], predictions: list):
        self.failures, self.predictions = failures, predictions
        shown = "; ".join(f"item {i} ({texts[i][:40]!r}): {why}" for i, why in list(failures.items())[:5])
        more = f"; and {len(failures) - 5} more" if len(failures) > 5 else ""
        super().__init__(f"{len(failures)} of {len(texts)} items could not be labelled: {shown}{more}")


def build_method(spec: ModelSpec, labels: LabelSet, options: dict) -> Method:
    """The labelling method a model string selects, configured from Classifier options."""
    from .examples import SimilarExamples, sample_per_class

    if options.get("multi_label"):
        _check_multi_label(spec)
    pool = options["examples"]
    fixed, selector = pool, None
    if pool and options["example_selection"] == "similar":
        selector = SimilarExamples(pool, k=options["k"])
        fixed = []
    elif pool and options["example_selection"] == "per-class":
        fixed = sample_per_class(pool, labels, options["k"], options["seed"])
    if spec.provider == "finetuned":
        from .finetune import load_finetuned

        return _same_kind(load_finetuned(spec.name, labels), options.get("multi_label", False), spec.id)
    if spec.provider == "embed":
        from .label_similarity import LabelSimilarity

        encoder = None if spec.name == "minilm" else _encoder(spec.name)
        return LabelSimilarity(labels, encoder=encoder, unlabeled=options["unlabeled"], examples=pool)
    if spec.provider == "offline":
        from .offline import OfflineClassifier

        progress = options["progress"] if options["progress"] is not None else sys.stderr.isatty()
        return OfflineClassifier(labels, pool, options["offline"], progress=progress, unlabeled=options["unlabeled"])
    if spec.provider in ("local", "completions"):
        from .scoring import LabelScorer, ScoringPrompt

        return LabelScorer(_scorer(spec, options), labels, prompt=ScoringPrompt.build(options["scoring_template"],
                           instructions=options["instructions"], demo_words=options["demo_words"],
                           item_words=options["item_words"]), examples=fixed, selector=selector,
                           calibrate=options["calibrate"], batch_size=options["local_batch_size"])
    from .batching import ChatLabeler
    from .prompts import ChatPrompt

    llm = options["llm"] or chat_model(spec, timeout=options["timeout"])
    model_id = spec.id if options["llm"] is None else f"{spec.id}|llm={llm_fingerprint(llm)}"
    template = options["template"] or ("few_shot" if selector else None)  # demos chosen per batch need its loop
    multi = {"multi_label": True} if options.get("multi_label") else {}  # the single-label prompt stays as it was
    prompt = ChatPrompt.build(labels, template, examples=fixed,
                              negative_examples=options["negative_examples"], instructions=options["instructions"],
                              **({"system_template": "system_multi"} if multi else {}))
    return ChatLabeler(llm, labels, prompt, model_id=model_id, example_selector=selector,
                       batch_size=options["batch_size"], concurrency=options["concurrency"],
                       max_attempts=options["max_attempts"], max_wait=options["max_wait"],
                       structured=options["structured"], system_in_user=options["system_in_user"], **multi)


def _check_multi_label(spec: ModelSpec) -> None:
    """Multi-label tasks: chat models and models trained for it; the others say so and what to use."""
    from .multilabel import unsupported

    names = {"local": "label scoring (local)", "completions": "label scoring (completions:)",
             "embed": "embed (label similarity)", "offline": "offline"}
    if spec.provider in names:
        raise unsupported(names[spec.provider])


def _same_kind(method: Method, multi_label: bool, where: str) -> Method:
    """A method answers label sets exactly when the task is multi-label."""
    if bool(getattr(method, "multi_label", False)) != bool(multi_label):
        if multi_label:
            raise ConfigError(f"{where} is single-label, the task is multi-label: train a model for it with "
                              "finetune(..., multi_label=True)")
        raise ConfigError(f"{where} is multi-label, the task is single-label: give multi_label=True (CLI: "
                          "--multi-label; a task file: multi_label: true)")
    return method


def _encoder(path: str):
    from .embeddings import Encoder

    if not Path(path).expanduser().is_dir():
        raise ConfigError(f"embed:{path}: no such encoder directory")
    return Encoder(path)


def _scorer(spec: ModelSpec, options: dict):
    if spec.provider == "completions":
        from .completions import CompletionsScorer

        return CompletionsScorer(spec, timeout=options["timeout"], max_attempts=options["max_attempts"])
    from .local import local_scorer

    quantize = options["quantize"]
    if quantize == "auto":  # int8 only where it was measured to cost nothing (see local.py)
        quantize = "int8" if options["examples"] and options["example_selection"] == "similar" else None
    return local_scorer(spec.name, max_length=options["max_length"], threads=options["threads"], quantize=quantize)


class Classifier:
    """Label texts with one method, behind a cache, with retries, an optional fallback and a run report.

    >>> clf = Classifier(labels=["World", "Sports", "Business", "Sci/Tech"], model="openai:gpt-4o-mini")
    >>> preds = clf.predict(texts)          # [Prediction(label, confidence, source), ...]
    >>> clf.report.summary()                # calls, tokens, cost, retries, wall time

    `labels` may instead be a `Task` (promptclf.task) or the path of its .json/.yaml file: the task keywords
    (descriptions, aliases, examples, negative_examples, instructions) then come from it, not from options.
    """

    def __init__(self, labels, model: str | None = "offline", *, descriptions=None, aliases=None,
                 examples=None, negative_examples=None, example_selection: str = "auto", k: int | None = None,
                 prompt: str | Path | None = None, instructions: str = "", batch_size: int = 10,
                 concurrency: int = 4, max_attempts: int = 6, max_wait: float = 30.0, timeout: float = 60.0,
                 structured: str = "auto", system_in_user: bool | str = "auto",
                 cache: bool | str | Path | CacheBackend = True, fallback=None,
                 fallback_below: float | None = None, skip_empty: bool = False, max_item_tokens: int = 2000,
                 truncate: str = "warn", progress: bool | None = None, seed: int = 0, prices: dict | None = None,
                 calibrate: str = "auto", demo_words: int | None = 12, item_words: int | None = None,
                 threads: int | None = None, quantize: str | None = "auto", max_length: int = 1024,
                 local_batch_size: int = 16, llm=None, method: Method | None = None, offline=None,
                 unlabeled: Sequence[str] | None = None, cascade_from: str | Method | None = None,
                 cascade_below: float | None = None, multi_label: bool = False):
        if truncate not in ("warn", "error", "silent"):
            raise ValueError(f"truncate={truncate!r}: choose 'warn', 'error' or 'silent'")
        if example_selection not in ("auto", "all", "per-class", "similar"):
            raise ValueError(f"example_selection={example_selection!r}: choose auto, all, per-class or similar")
        from .task import is_task

        if is_task(labels):  # a Task, or its file: it stands for the task keywords (promptclf/task.py)
            from .task import Task

            given = dict(descriptions=descriptions, aliases=aliases, examples=examples,
                         negative_examples=negative_examples, instructions=instructions)
            task = Task.coerce(labels).keyword_options(given, prompt)
            labels, examples, negative_examples = task["labels"], task["examples"], task["negative_examples"]
            instructions, prompt = task["instructions"], task["prompt"]
            multi_label = multi_label or task["multi_label"]
        self.labels = LabelSet.of(labels, descriptions, aliases)
        self.spec = parse_model(model) if method is None else ModelSpec("custom", type(method).__name__)
        from .examples import check_examples

        pool = check_examples(examples, self.labels)
        template = prompt
        if prompt is not None and str(prompt).endswith(".json"):
            from .artifacts import PromptArtifact

            artifact = PromptArtifact.load(prompt, self.labels)
            template, instructions, pool = "few_shot", artifact.instructions, artifact.demos
            example_selection = "all"
        scoring = self.spec.provider in ("local", "completions")
        # Local scoring with the nearest demonstrations: measured on AG News (1,000 items), 1 nearest 0.843 at
        # 11.4 items/s, 4 nearest 0.841 at 6.9 items/s; chat models get 4.
        k = k if k is not None else (1 if scoring else 4)
        if example_selection == "auto":  # local scorers: nearest demos; chat: all, or k per class from a big pool
            if scoring:
                example_selection = "similar"
            else:
                example_selection = "all" if len(pool) <= k * len(self.labels) else "per-class"
        self.options = dict(
            examples=pool, negative_examples=check_examples(negative_examples, self.labels, "negative example"),
            example_selection=example_selection, k=k, seed=seed, template=template,
            scoring_template=template if template and str(template).endswith(".jinja") else None,
            instructions=instructions, batch_size=batch_size, concurrency=concurrency, max_attempts=max_attempts,
            max_wait=max_wait, timeout=timeout, structured=structured, system_in_user=system_in_user,
            calibrate=calibrate, threads=threads,
            max_length=max_length, local_batch_size=local_batch_size, llm=llm, demo_words=demo_words,
            item_words=item_words, quantize=quantize, progress=progress, offline=_offline_config(offline, seed),
            unlabeled=_unlabeled(unlabeled),
        )
        self.multi_label = bool(multi_label)
        if self.multi_label:  # only where set: the single-label options stay as they were
            self.options["multi_label"] = True
        self.method = (_same_kind(method, self.multi_label, type(method).__name__) if method is not None
                       else build_method(self.spec, self.labels, self.options))
        self.cache = open_cache(cache)
        if cascade_from is not None or cascade_below is not None:
            if self.multi_label:
                raise ConfigError("a cascade routes single labels by confidence; it does not take multi-label tasks")
            self.method = self._cascade(cascade_from, cascade_below)
        self.fallback = _fallback(fallback, self.labels, self.multi_label)
        self.fallback_below = fallback_below
        self.skip_empty, self.max_item_tokens, self.truncate = skip_empty, max_item_tokens, truncate
        self.progress, self.prices = progress, prices or {}
        self.report = Usage(model=self.spec.id, prices=self.prices)

    def _cascade(self, local, below):
        """The configured method as the API stage behind a local first stage (promptclf.cascade)."""
        from .cascade import Cascade

        if local is None or below is None:
            raise ConfigError("a cascade needs both cascade_from (the local model) and cascade_below (its "
                              "confidence threshold, e.g. chosen with promptclf.cascade.choose_threshold)")
        if not isinstance(local, Method):
            local = build_method(parse_model(local), self.labels, self.options)
        return Cascade(local, self.method, below, cache=self.cache)

    # --- the verbs ------------------------------------------------------------------------------------

    def predict(self, texts: Sequence[str]) -> list[Prediction | None]:
        """One Prediction per input, in input order (None only for empty items with skip_empty=True)."""
        started = time.perf_counter()
        self.report = Usage(model=self.spec.id, prices=self.prices, items=len(texts))
        prepared = self._prepare(texts)
        unique = list(dict.fromkeys(t for t in prepared if t is not None))
        answers, failures = self._answer(unique)
        if failures and self.fallback is not None:
            answers.update(self._fall_back(list(failures)))
            failures = {t: why for t, why in failures.items() if t not in answers}
        self.report.add(failed=len(failures), wall_s=time.perf_counter() - started)
        if getattr(self.method, "estimate", None) is not None:
            self.report.estimate = self.method.estimate.describe()
        predictions = [answers.get(t) if t is not None else None for t in prepared]
        if failures:
            positions = {i: failures[t] for i, t in enumerate(prepared) if t in failures}
            raise LabellingError(positions, [str(t) for t in prepared], predictions)
        return predictions

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
        from .metrics import classification_metrics

        if self.multi_label:
            from .metrics import multilabel_metrics
            from .multilabel import check_label_sets

            return multilabel_metrics(check_label_sets(gold, self.labels), self.classify(texts), self.labels.names)

        truth = [self.labels.check(g, f"gold label of item {i}") for i, g in enumerate(gold)]
        return classification_metrics(truth, self.classify(texts), self.labels.names)

    # --- the steps ------------------------------------------------------------------------------------

    def _prepare(self, texts) -> list[str | None]:
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

    def _answer(self, unique: list[str]) -> tuple[dict[str, Prediction], dict[str, str]]:
        """Cache first, the method for the rest (answering.answer); answers below fallback_below fail."""
        from .answering import answer

        answers: dict[str, Prediction] = {}
        failures: dict[str, str] = {}
        with tqdm(total=len(unique), disable=not self._show_progress(len(unique)), unit="item",
                  desc=f"labelling with {self.spec.id}") as bar:
            for pos, outcome in answer(self.method, unique, self.report, self.cache, self.labels):
                if isinstance(outcome, Failure):
                    failures[unique[pos]] = outcome.reason
                else:
                    answers[unique[pos]] = outcome
                bar.update(1)
        if self.fallback_below is not None:
            for text, pred in list(answers.items()):
                if pred.confidence is not None and pred.confidence < self.fallback_below:
                    failures[text] = f"confidence {pred.confidence:.2f} below {self.fallback_below}"
                    del answers[text]
        return answers, failures

    def _fall_back(self, texts: list[str]) -> dict[str, Prediction]:
        routed = {}
        for pos, outcome in self.fallback.predict(texts, Usage()):
            if isinstance(outcome, Prediction):
                routed[texts[pos]] = replace(outcome, source="fallback")
        self.report.add(fallback=len(routed))
        return routed

    def _show_progress(self, n: int) -> bool:
        if self.progress is not None:
            return bool(self.progress) and n > 0
        return n >= 20 and sys.stderr.isatty()


def _offline_config(offline, seed: int):
    """OfflineConfig, or a dict of its options (components, folds, choose, setfit, ...)."""
    from .offline import OfflineConfig

    if isinstance(offline, OfflineConfig):
        return offline
    return OfflineConfig(**{"seed": seed, **(offline or {})})


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
        return _same_kind(fallback, multi_label, "the fallback") if multi_label else fallback
    from .finetune import load_finetuned

    path = str(fallback)
    path = path[len("finetuned:"):] if path.startswith("finetuned:") else path
    return _same_kind(load_finetuned(path, labels), multi_label, f"the fallback {path}")


def classify(texts: Sequence[str], labels, model: str | None = "offline", **options) -> list:
    """Label each text with one label from `labels` (multi_label=True, or a multi-label Task: a list of
    labels per text), in input order. Options are Classifier's; without
    examples, `embed` and the offline default self-train on the texts themselves (pass unlabeled=[] not to)."""
    if not isinstance(texts, str) and len(texts) == 0:
        return []
    if not isinstance(texts, str) and all(isinstance(t, str) for t in texts):
        options.setdefault("unlabeled", texts)  # the texts themselves teach the label vectors (label_similarity.py)
    return Classifier(labels, model, **options).classify(texts)
