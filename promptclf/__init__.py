"""promptclf: label text with LLMs (zero-/few-shot, optimised prompts, label scoring) and a self-trained
LoRA fallback, with cache, retries and one measured comparison table.

`promptclf.finetune`, `promptclf.optimize` and `promptclf.compare` are the functions of the same names. Their
modules are imported first and the functions bound over the package attributes afterwards; a module already in
`sys.modules` is never bound to its package again, so `from promptclf.finetune import X` and
`import promptclf.finetune` keep working in any order. (`import promptclf.finetune as m` gives the function:
Python resolves it as an attribute of the package; `importlib.import_module("promptclf.finetune")` gives the
module.)"""

from . import compare as _compare_module
from . import finetune as _finetune_module
from . import optimize as _optimize_module
from .backends import ConfigError, MissingAPIKeyError, UnknownModelError
from .classifier import Classifier, InputError, LabellingError, classify
from .labels import Label, LabelError, LabelSet
from .methods import Failure, Method, Prediction
from .usage import Usage, register_price

compare = _compare_module.compare
finetune = _finetune_module.finetune
optimize = _optimize_module.optimize

__version__ = "0.1.0"

__all__ = [
    "Classifier", "classify", "LabelSet", "Label", "Prediction", "Failure", "Method", "Usage", "register_price",
    "ConfigError", "MissingAPIKeyError", "UnknownModelError", "InputError", "LabellingError", "LabelError",
    "finetune", "optimize", "compare",
]
