"""Label scoring over an OpenAI-compatible completions endpoint that returns prompt logprobs
(vLLM, llama.cpp server): the same method as the local model, for a bigger model on a server."""

from __future__ import annotations

import time
from typing import Sequence

import numpy as np

from .backends import ModelSpec, api_key, retrying
from .usage import Usage


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
        for attempt in retrying(self.max_attempts, on_retry=lambda state: usage.add(retries=1)):
            with attempt:
                usage.add(requests=1)
                response = self.client.completions.create(model=self.spec.name, prompt=texts, max_tokens=0,
                                                          echo=True, logprobs=0, temperature=0)
        if response.usage:
            usage.add(prompt_tokens=response.usage.prompt_tokens or 0)
        usage.add(compute_s=time.perf_counter() - started)
        scores = np.zeros(len(texts))
        for choice in response.choices:
            prompt_len = len(prompts[choice.index // len(labels)])
            lp = choice.logprobs
            scores[choice.index] = sum(
                value for offset, value in zip(lp.text_offset, lp.token_logprobs)
                if offset >= prompt_len and value is not None
            )
        return scores.reshape(len(prompts), len(labels))
