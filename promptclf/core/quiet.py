"""Dependency noise a user cannot act on, silenced at its source: warnings about the machine (no accelerator for
pin_memory, CPU-only bitsandbytes kernels), deprecations inside transformers/peft/setfit, the datasets library's
`Map` bars, transformers' bars for loading and saving weights, and what a trainer prints on stdout (SetFit's and
transformers' training dicts). Our own messages and progress bars are not touched."""

from __future__ import annotations

import contextlib
import io
import logging
import warnings

log = logging.getLogger("promptclf")

# Messages of warnings that say nothing a user of promptclf can act on.
NOISE = (
    r".*pin_memory.*",
    r".*past_key_values.*",
    r".*bitsandbytes.*",
    r".*(?:GPU|CUDA|accelerator).*(?:not available|no accelerator|is not found).*",
    r".*`resume_download` is deprecated.*",
    r".*TRANSFORMERS_CACHE.*",
)
NOISY_MODULES = r"(transformers|setfit|peft|bitsandbytes|torch|datasets|sentence_transformers|accelerate)(\..*)?"
NOISY_LOGGERS = (
    "transformers",
    "datasets",
    "setfit",
    "sentence_transformers",
    "peft",
    "bitsandbytes",
    "accelerate",
    "httpx",
    "openai",
    "ray",
    "LiteLLM",
    "dspy",
)


def filter_warnings() -> None:
    """Add the filters for NOISE and dependency deprecations (inside a catch_warnings block, or process-wide)."""
    for message in NOISE:
        warnings.filterwarnings("ignore", message=message)
    for category in (FutureWarning, DeprecationWarning):
        warnings.filterwarnings("ignore", category=category, module=NOISY_MODULES)


@contextlib.contextmanager
def quiet_dependencies():
    """For one call into a dependency (a training run, a model load): its warnings filtered, the datasets bars
    off, and its stdout kept off ours (logged at debug level instead)."""
    printed = io.StringIO()
    with (
        warnings.catch_warnings(),
        _bars_off("datasets"),
        _bars_off("transformers"),
        contextlib.redirect_stdout(printed),
    ):
        filter_warnings()
        yield
    if printed.getvalue().strip():
        log.debug("promptclf: a dependency printed: %s", printed.getvalue().strip()[:2000])


@contextlib.contextmanager
def _bars_off(library: str):
    """The library's own progress bars off for the block (datasets' `Map`, transformers' `Loading weights`)."""
    import importlib

    bars = importlib.import_module(f"{library}.utils.logging")
    was_on = bars.is_progress_bar_enabled()
    bars.disable_progress_bar()
    try:
        yield
    finally:
        if was_on:
            bars.enable_progress_bar()


def silence_dependencies() -> None:
    """For the CLI's own process: the filters process-wide, dependency loggers at ERROR, transformers' and
    datasets' bars off (ours stay)."""
    filter_warnings()
    for name in NOISY_LOGGERS:
        logging.getLogger(name).setLevel(logging.ERROR)
    from datasets.utils import logging as datasets_logging
    from transformers.utils import logging as hf_logging

    hf_logging.disable_progress_bar()
    hf_logging.set_verbosity_error()
    datasets_logging.disable_progress_bar()
    datasets_logging.set_verbosity_error()
