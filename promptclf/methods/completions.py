"""Label scoring over an OpenAI-compatible completions endpoint that returns prompt logprobs
(vLLM, llama-cpp-python's server): the same method as the local model, for a bigger model on a server."""

from __future__ import annotations

import logging
import time
from collections.abc import Sequence

import numpy as np
import openai

from promptclf.core.credentials import api_key
from promptclf.core.errors import ConfigError
from promptclf.core.model_spec import ModelSpec
from promptclf.core.usage import Usage
from promptclf.methods.endpoints import endpoint
from promptclf.methods.requests import RefusedRequest, call

log = logging.getLogger("promptclf")

UNSUPPORTED = (
    "label scoring needs a completions endpoint that returns the prompt's logprobs with echo=True "
    "(vLLM and llama-cpp-python's server do)"
)


class CompletionsScorer:
    """Scores "prompt + ' ' + label" with echo=True and logprobs: the sum of the label's token log-probs
    (the tokens whose text offset lies inside the label, so the one generated token is not counted).

    max_tokens is 1: 0 means "until the context is full" on llama.cpp's servers. All prompts of a batch go
    in one request; a server that refuses a list (llama-cpp-python's takes one prompt per request and
    answers a list with a 500) is asked once per prompt from then on, remembered while the process lives.
    """

    source = "api"  # Prediction.source

    def __init__(self, spec: ModelSpec, *, timeout: float = 60.0, max_attempts: int = 6, client=None):
        self.spec, self.max_attempts = spec, max_attempts
        self.client = client or openai.OpenAI(
            base_url=spec.base_url, api_key=api_key(spec), timeout=timeout, max_retries=0
        )
        self.endpoint = endpoint(f"completions|{spec.id}")

    @property
    def identity(self) -> str:
        return f"completions:{self.spec.id}"

    def score(self, prompts: Sequence[str], labels: Sequence[str], usage: Usage) -> np.ndarray:
        texts = [p + " " + label for p in prompts for label in labels]
        started = time.perf_counter()
        choices = self._choices(texts, usage)
        usage.add(compute_s=time.perf_counter() - started)
        scores = np.full(len(texts), np.nan)
        for n, choice in choices:
            prompt = prompts[n // len(labels)]
            scores[n] = self._label_logprob(choice, len(prompt), len(texts[n]))
        if np.isnan(scores).any():
            raise ConfigError(
                f"model {self.spec.id!r}: the server returned no logprobs for the prompt's tokens; {UNSUPPORTED}"
            )
        return scores.reshape(len(prompts), len(labels))

    def _choices(self, texts: list[str], usage: Usage) -> list[tuple[int, object]]:
        """(index into texts, choice) for every text: in one request, or one request per text where the
        server refuses lists. An untried server gets one attempt at a list, then single prompts."""
        with self.endpoint.lock:
            lists = self.endpoint.prompt_lists
        if len(texts) == 1 or lists is False:
            return [(n, self._request(text, usage).choices[0]) for n, text in enumerate(texts)]
        try:
            response = self._request(texts, usage, attempts=1 if lists is None else self.max_attempts)
        except (openai.APIStatusError, RefusedRequest) as exc:
            status = getattr(exc, "status_code", None) or getattr(getattr(exc, "refusal", None), "status", None)
            if lists is not None or status not in (400, 422, 500):
                raise
            with self.endpoint.lock:
                self.endpoint.prompt_lists = False
            log.info(
                "promptclf: %s refused a list of prompts (%s); sending one prompt per request", self.spec.id, status
            )
            return [(n, self._request(text, usage).choices[0]) for n, text in enumerate(texts)]
        with self.endpoint.lock:
            self.endpoint.prompt_lists = True
        return [(choice.index, choice) for choice in response.choices]

    def _request(self, prompt, usage: Usage, attempts: int | None = None):
        response = call(
            lambda: self.client.completions.create(
                model=self.spec.name, prompt=prompt, max_tokens=1, echo=True, logprobs=0, temperature=0
            ),
            usage,
            where=self.spec.id,
            max_attempts=attempts or self.max_attempts,
            unsupported_hint=UNSUPPORTED,
        )
        if response.usage:
            usage.add(prompt_tokens=response.usage.prompt_tokens or 0)
        return response

    @staticmethod
    def _label_logprob(choice, prompt_len: int, text_len: int) -> float:
        """The label's log-probability: its tokens start at or past the prompt's end and before the text's
        end (past it is the generated token). NaN if the echo does not cover the label."""
        lp = choice.logprobs
        if lp is None or not lp.text_offset or lp.token_logprobs is None:
            return np.nan
        label = [value for offset, value in zip(lp.text_offset, lp.token_logprobs) if prompt_len <= offset < text_len]
        if not label or any(value is None for value in label):
            return np.nan
        return float(sum(label))
