"""promptclf: label text with LLMs (zero-/few-shot, optimised prompts, label scoring) and with small models it
trains itself, with cache, retries and one measured comparison table.

The package is in layers, each importing only from those below it (tests/test_layers.py): core (errors,
labels, the Method protocol, usage, hashing, metrics, data) -> cache -> task (the Task, prompts, schemas,
examples, artifacts) -> methods (chat batching, label scoring, embeddings, fine-tuned and offline models) ->
providers (the registry of model strings and their options) -> the facade here (Classifier, cascade,
sklearn) -> workflows (optimize, compare, distill, batch APIs, review, audit) -> cli.
"""

import importlib

from promptclf.classifier import Classifier, classify
from promptclf.core.errors import ConfigError, InputError, LabellingError, MissingAPIKeyError, UnknownModelError
from promptclf.core.labels import Label, LabelError, LabelSet
from promptclf.core.methods import Failure, Method, Prediction
from promptclf.core.usage import Usage, register_price
from promptclf.task.definition import Task, TaskLabel

__version__ = "0.1.0"

# The workflow functions, each from its layer's module, imported on first use (importing them all costs about
# 0.6 s): promptclf.compare(...) works without `from promptclf.workflows.compare import compare`.
WORKFLOWS = {
    "finetune": "promptclf.methods.finetune",
    "distill": "promptclf.workflows.distill",
    "optimize": "promptclf.workflows.optimize",
    "compare": "promptclf.workflows.compare",
    "find_label_errors": "promptclf.workflows.audit",
}

__all__ = [
    "Classifier",
    "classify",
    "Task",
    "TaskLabel",
    "LabelSet",
    "Label",
    "Prediction",
    "Failure",
    "Method",
    "Usage",
    "register_price",
    "ConfigError",
    "MissingAPIKeyError",
    "UnknownModelError",
    "InputError",
    "LabellingError",
    "LabelError",
    *WORKFLOWS,
]


def __getattr__(name):
    if name in WORKFLOWS:
        function = getattr(importlib.import_module(WORKFLOWS[name]), name)
        globals()[name] = function
        return function
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


def __dir__():
    return sorted(set(globals()) | set(WORKFLOWS))
