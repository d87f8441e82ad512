"""promptclf: label text with LLMs (zero-/few-shot, optimised prompts, label scoring) and a self-trained
LoRA fallback, with cache, retries and one measured comparison table."""

from .backends import ConfigError, MissingAPIKeyError, UnknownModelError
from .classifier import Classifier, InputError, LabellingError, classify
from .labels import Label, LabelError, LabelSet
from .methods import Failure, Method, Prediction
from .usage import Usage, register_price

__version__ = "0.1.0"

__all__ = [
    "Classifier", "classify", "LabelSet", "Label", "Prediction", "Failure", "Method", "Usage", "register_price",
    "ConfigError", "MissingAPIKeyError", "UnknownModelError", "InputError", "LabellingError", "LabelError",
]
