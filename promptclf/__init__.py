"""promptclf: label text with LLMs (zero-/few-shot, optimised prompts, label scoring) and a self-trained
LoRA fallback, with cache, retries and one measured comparison table.

`promptclf.finetune`, `promptclf.distill`, `promptclf.optimize` and `promptclf.compare` are the functions of the same names, and
`from promptclf.finetune import FineTuneConfig` (any order) still reaches the modules. The modules load on first
use (importing them all costs about 0.6 s), and whenever Python binds a loaded module to its name in this
package, `_Package.__setattr__` binds the function instead. `import promptclf.finetune as m` gives the function
(Python reads it from the package); `importlib.import_module("promptclf.finetune")` gives the module.
"""

import importlib
import sys
import types

from .backends import ConfigError, MissingAPIKeyError, UnknownModelError
from .classifier import Classifier, InputError, LabellingError, classify
from .labels import Label, LabelError, LabelSet
from .methods import Failure, Method, Prediction
from .task import Task, TaskLabel
from .usage import Usage, register_price

__version__ = "0.1.0"

WORKFLOWS = ("finetune", "distill", "optimize", "compare")  # module promptclf.<name> defines the function <name>

__all__ = [
    "Classifier", "classify", "Task", "TaskLabel", "LabelSet", "Label", "Prediction", "Failure", "Method", "Usage", "register_price",
    "ConfigError", "MissingAPIKeyError", "UnknownModelError", "InputError", "LabellingError", "LabelError",
    *WORKFLOWS,
]


class _Package(types.ModuleType):
    """This package, whose workflow names hold functions even after their modules are imported."""

    def __setattr__(self, name, value):
        if name in WORKFLOWS and isinstance(value, types.ModuleType):  # the import system binding the module
            value = getattr(value, name)
        super().__setattr__(name, value)


def __getattr__(name):
    if name in WORKFLOWS:
        importlib.import_module(f"{__name__}.{name}")  # binds the function (see _Package)
        return globals()[name]
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


def __dir__():
    return sorted(set(globals()) | set(WORKFLOWS))


sys.modules[__name__].__class__ = _Package
