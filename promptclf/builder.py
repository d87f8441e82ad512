"""From a `Config` (promptclf/config.py) to what a Classifier runs: the model string parsed, the task's keywords
read, the examples checked, the method built through the provider registry, the cache opened, and the cascade
and fallback wired. Every option is checked here, once: one the model's backend does not take is a ConfigError
naming the backends that take it (promptclf/providers/registry.py, `check_options`)."""

from __future__ import annotations

import logging
import math
from dataclasses import dataclass, fields

from promptclf.cache.guard import open_guarded
from promptclf.cache.store import CacheBackend
from promptclf.config import Config, RunOptions
from promptclf.core.errors import ConfigError, InputError
from promptclf.core.labels import LabelSet
from promptclf.core.methods import Method
from promptclf.core.model_spec import ModelSpec
from promptclf.core.multilabel import same_kind
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


@dataclass
class Built:
    """What the builder made: `options` are the backend options the method was built with ("auto" resolved),
    or, for a ready-made method, the values given."""

    spec: ModelSpec
    labels: LabelSet
    multi_label: bool
    method: Method
    options: dict
    cache: CacheBackend | None
    fallback: Method | None
    validation: list  # the validation sample's rows, checked ({"text", "label"})
    choose_below: bool = False  # a cascade whose threshold the validation sample chooses (Classifier.validate)


def build_classifier(config: Config) -> Built:
    """The method, labels, cache and fallback a Classifier runs with, every option checked first."""
    run, given = config.run, config.backend
    _check_run(run)
    custom = run.method
    spec = (
        parse_model(config.model, given.get("prompt")) if custom is None else ModelSpec("custom", type(custom).__name__)
    )
    if custom is None:
        check_options(spec, given)
    else:
        _check_custom(custom, given)
    labels, multi_label, values = _task(config, spec)
    if multi_label:  # only where set: the single-label options and cache keys stay as they were
        values["multi_label"] = True
    validation = read_validation(run.validation, labels, values["examples"])
    _check_trust(run, validation, multi_label)
    if validation:  # the offline provider chooses its combination on them; other backends ignore them
        values["validation"] = validation
    if custom is None:
        resolved = options_for(spec, labels, values)
        options = {f.name: getattr(resolved, f.name) for f in fields(resolved)}
        method = build(spec, labels, resolved)
    else:
        options, method = values, same_kind(custom, multi_label, type(custom).__name__)
    cache = open_guarded(run.cache)
    choose_below = run.cascade_from is not None and run.cascade_below is None and run.target_accuracy is not None
    if run.cascade_from is not None or run.cascade_below is not None:
        method = _cascade(run, method, labels, values, cache, multi_label)
    fallback = _fallback(run.fallback, labels, multi_label)
    return Built(spec, labels, multi_label, method, options, cache, fallback, validation, choose_below)


def _check_run(run: RunOptions) -> None:
    if run.truncate not in ("warn", "error", "silent"):
        raise ValueError(f"truncate={run.truncate!r}: choose 'warn', 'error' or 'silent'")
    if run.window is not None and run.window < 1:
        raise ValueError(f"window={run.window}: at least 1 row")


def _check_trust(run: RunOptions, validation: list, multi_label: bool) -> None:
    """A validation sample measures single labels; a target needs one; risk and target are shares."""
    risk, target = run.risk, run.target_accuracy
    if validation and multi_label:
        raise ConfigError("a validation sample measures single labels; this task is multi-label")
    if isinstance(risk, bool) or not isinstance(risk, (int, float)) or not 0 < risk < 1:
        raise ConfigError(f"risk={risk!r}: the chance the guarantee fails, between 0 and 1 (e.g. 0.1)")
    if target is None:
        return
    if isinstance(target, bool) or not isinstance(target, (int, float)) or not 0 < target < 1:
        raise ConfigError(f"target_accuracy={target!r}: an accuracy between 0 and 1 (e.g. 0.95)")
    if not validation:
        raise ConfigError(
            "target_accuracy needs a validation sample (validation=): the threshold is chosen on labelled rows"
        )


def _task(config: Config, spec: ModelSpec) -> tuple[LabelSet, bool, dict]:
    """The label set, whether it is multi-label, and the values the backend options are made from. A Task (or
    its file) stands for the task keywords (promptclf/task/definition.py): they come from it, not from options."""
    run, given = config.run, config.backend
    labels, multi_label, task_values = config.labels, run.multi_label, {}
    if is_task(labels):
        task = Task.coerce(labels)
        from_options = {name: given.get(name) for name in TASK_KEYWORDS if name != "aliases"}
        task_values = task.keyword_options({**from_options, "aliases": run.aliases}, given.get("prompt"))
        labels = task_values.pop("labels")
        multi_label = multi_label or task_values.pop("multi_label")
        if run.method is None:
            _warn_unused(spec, task_values, labels)
    label_set = LabelSet.of(labels, given.get("descriptions"), run.aliases)
    values = {
        **given,
        **task_values,
        "seed": run.seed,
        "progress": run.progress,
        "unlabeled": _unlabeled(run.unlabeled),
    }
    multi_label = bool(multi_label)
    values["examples"] = check_examples(values.get("examples"), label_set, multi_label=multi_label)
    values["negative_examples"] = check_examples(values.get("negative_examples"), label_set, "negative example")
    return label_set, multi_label, values


def _cascade(run: RunOptions, method: Method, labels: LabelSet, values: dict, cache, multi_label: bool) -> Method:
    """The configured method as the API stage behind a local first stage (promptclf/cascade.py)."""
    from promptclf.cascade import Cascade

    if multi_label:
        raise ConfigError("a cascade routes single labels by confidence; it does not take multi-label tasks")
    local, below = run.cascade_from, run.cascade_below
    choose = below is None and run.target_accuracy is not None  # chosen on the validation rows before a run
    if local is None or (below is None and not choose):
        raise ConfigError(
            "a cascade needs both cascade_from (the local model) and cascade_below (its "
            "confidence threshold, e.g. chosen with promptclf.cascade.choose_threshold)"
        )
    if not isinstance(local, Method):  # it takes the options that apply to it; the rest are the API model's
        spec = parse_model(local)
        local = build(spec, labels, options_for(spec, labels, values))
    return Cascade(local, method, math.inf if choose else below, cache=cache)


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
