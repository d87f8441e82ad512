"""Label scoring over an OpenAI-compatible completions endpoint that returns prompt logprobs
(vLLM, llama.cpp server): the same method as the local model, for a bigger model on a server."""

from __future__ import annotations

import time
from typing import Sequence

import numpy as np

from .backends import ConfigError, ModelSpec, api_key, call
from .usage import Usage

UNSUPPORTED = "label scoring needs a completions endpoint that takes echo=True with logprobs (vLLM does)"


class CompletionsScorer:
    """Scores "prompt + ' ' + label" with echo=True, max_tokens=0, logprobs: the sum of the label's token
    log-probs (the tokens whose text offset lies past the prompt)."""

    def __init__(self, spec: ModelSpec, *, timeout: float = 60.0, max_attempts: int = 6, client=None):
        import openai

        self.spec, self.max_attempts = spec, max_attempts
        self.client = client or openai.OpenAI(base_url=spec.base_url, api_key=api_key(spec), timeout=timeout,
                                              max_retries=0)

    @property
    def identity(self) -> str:
        return f"completions:{self.spec.id}"

    def score(self, prompts: Sequence[str], labels: Sequence[str], usage: Usage) -> np.ndarray:
        texts = [p + " " + label for p in prompts for label in labels]
        started = time.perf_counter()
        response = call(lambda: self.client.completions.create(model=self.spec.name, prompt=texts, max_tokens=0,
                                                               echo=True, logprobs=0, temperature=0),
                        usage, where=self.spec.id, max_attempts=self.max_attempts, unsupported_hint=UNSUPPORTED)
        if response.usage:
            usage.add(prompt_tokens=response.usage.prompt_tokens or 0)
        usage.add(compute_s=time.perf_counter() - started)
        scores = np.full(len(texts), np.nan)
        for choice in response.choices:
            scores[choice.index] = self._label_logprob(choice, len(prompts[choice.index // len(labels)]))
        if np.isnan(scores).any():
            raise ConfigError(f"model {self.spec.id!r}: the server returned no logprobs for the prompt's tokens "
                              f"(llama.cpp's server does not); {UNSUPPORTED}")
        return scores.reshape(len(prompts), len(labels))

    @staticmethod
    def _label_logprob(choice, prompt_len: int) -> float:
        """The label's log-probability: its tokens are those past the prompt. NaN if the echo does not reach it."""
        lp = choice.logprobs
        if lp is None or not lp.text_offset or lp.token_logprobs is None:
            return np.nan
        tail = [value for offset, value in zip(lp.text_offset, lp.token_logprobs) if offset >= prompt_len]
        if not tail or any(value is None for value in tail):
            return np.nan
        return float(sum(tail))
