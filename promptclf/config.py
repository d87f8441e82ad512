"""The options of `Classifier` and `PromptClassifier`, declared once.

Two sets make up every option: `RunOptions` below (the cache, the fallback, input limits, the cascade, ...: what
the classifier does around its method) and the backend options, the fields of the provider registry's options
dataclasses (promptclf/providers/registry.py: batch_size, examples, calibrate, ...). `Classifier`'s keyword
arguments, `PromptClassifier`'s parameters (and so scikit-learn's get_params, set_params and GridSearchCV) are
read from both: adding an option is one field in one of them.

`Config` is what a Classifier is built from (promptclf/builder.py): the labels, the model string, the run
options and the backend options given. Nothing here checks a value; the builder does, in one place.
"""

from __future__ import annotations

import inspect
from collections.abc import Sequence
from dataclasses import MISSING, dataclass, field, fields
from pathlib import Path
from typing import Any

from promptclf.cache.store import CacheBackend
from promptclf.core.methods import Method
from promptclf.providers.registry import REGISTRY


@dataclass
class RunOptions:
    """What a classifier does around its method. `fallback`: a Method or a `finetuned:<dir>` asked for the
    items the method failed or answered below `fallback_below`; `cascade_from`/`cascade_below`: a local first
    stage and its confidence threshold (promptclf/cascade.py); `window`: rows held at once by `stream` (None:
    2000, or 16 batches per request slot if more); `breaker_after`: stop asking after this many requests in a
    row failed (0: never; promptclf/core/breaker.py); `method`: a ready-made Method instead of a model string.
    `validation`, `target_accuracy`, `risk`: a labelled validation sample (a DataFrame, (text, label) pairs or a
    file), never trained on, and the auto-accept target it certifies (promptclf/core/trust.py)."""

    aliases: dict | None = None
    cache: bool | str | Path | CacheBackend = True
    fallback: Method | str | Path | None = None
    fallback_below: float | None = None
    skip_empty: bool = False
    max_item_tokens: int = 2000
    truncate: str = "warn"
    progress: bool | None = None
    seed: int = 0
    prices: dict | None = None
    method: Method | None = None
    unlabeled: Sequence[str] | None = None
    cascade_from: str | Method | None = None
    cascade_below: float | None = None
    multi_label: bool = False
    window: int | None = None
    breaker_after: int = 20
    validation: Any = None
    target_accuracy: float | None = None
    risk: float = 0.1


RUN_OPTIONS = tuple(f.name for f in fields(RunOptions))


def backend_defaults() -> dict[str, Any]:
    """Every backend option the registered providers take, with its default; None where the default is a list
    or dict (None stands for "not given": scikit-learn wants plain defaults, and a mutable one would be shared)."""
    defaults: dict[str, Any] = {}
    for provider in REGISTRY.values():
        for f in fields(provider.options):
            if f.name not in defaults:
                defaults[f.name] = None if f.default is MISSING else f.default
    return defaults


def option_defaults() -> dict[str, Any]:
    """Every option's name and default: the run options, then the backend options."""
    run = {f.name: f.default for f in fields(RunOptions)}
    return {**run, **{name: value for name, value in backend_defaults().items() if name not in run}}


@dataclass
class Config:
    """A classifier's whole configuration: `labels` (a list of names, a dict name -> description, a Task or the
    path of its file), `model` (a model string, or None), the run options and the backend options given."""

    labels: Any
    model: str | None = None
    run: RunOptions = field(default_factory=RunOptions)
    backend: dict[str, Any] = field(default_factory=dict)

    @classmethod
    def of(cls, labels, model: str | None = None, **options) -> Config:
        """Options split into run and backend options; a name neither set has is a TypeError. A backend option
        given as None where its default is a list or dict (examples, ...) counts as not given."""
        known = backend_defaults()
        unknown = sorted(set(options) - set(RUN_OPTIONS) - set(known))
        if unknown:
            raise TypeError(f"Classifier got an unknown option {unknown[0]!r}")
        run = RunOptions(**{name: value for name, value in options.items() if name in RUN_OPTIONS})
        backend = {
            name: value
            for name, value in options.items()
            if name not in RUN_OPTIONS and not (value is None and _defaults_to_collection(name))
        }
        return cls(labels, model, run, backend)


def _defaults_to_collection(name: str) -> bool:
    """Whether a backend option's default is made by a factory (an empty list or dict)."""
    return any(
        f.name == name and f.default_factory is not MISSING for p in REGISTRY.values() for f in fields(p.options)
    )


def keyword_parameters(defaults: dict[str, Any]) -> list[inspect.Parameter]:
    """Keyword-only parameters for a signature, one per option."""
    return [inspect.Parameter(name, inspect.Parameter.KEYWORD_ONLY, default=value) for name, value in defaults.items()]
