"""Label scoring: classify by the likelihood a language model gives each label as the continuation.

A small base model (the embedded Gemma 3 270M) does not reliably write JSON, but it does rank
continuations: render the prompt, score every label's full token sequence after it (sum of log-probs),
pick the best, and report a softmax over the labels as the confidence. Contextual calibration divides
out the label prior the prompt itself induces (the scores of content-free inputs such as "N/A").
"""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass
from typing import Iterator, Sequence

import numpy as np
from jinja2.sandbox import SandboxedEnvironment

from .labels import LabelSet
from .methods import Failure, Outcome, Prediction
from .prompts import defuse, fingerprint, template_text
from .usage import Usage

log = logging.getLogger("promptclf")

CONTENT_FREE = ("N/A", "", "[MASK]")


@dataclass
class ScoringPrompt:
    """One item per prompt, the label as the continuation: "Text: ...\\nLabel: <label>"."""

    template: str
    instructions: str = ""
    text_field: str = "Text"
    answer_field: str = "Label"
    demo_words: int | None = None  # cut demonstrations to this many words: shorter prompts, faster scoring

    @classmethod
    def build(cls, template: str | None = None, **kwargs) -> "ScoringPrompt":
        return cls(template_text(template or "scoring"), **kwargs)

    def __post_init__(self):
        self._compiled = SandboxedEnvironment(keep_trailing_newline=False).from_string(self.template)

    def render(self, text: str, examples: Sequence[dict] = ()) -> str:
        return self._compiled.render(
            instructions=self.instructions, text_field=self.text_field, answer_field=self.answer_field,
            examples=[{"text": _one_line(e["text"], self.demo_words), "label": e["label"]} for e in examples],
            item={"text": _one_line(text)},
        ).rstrip()

    @property
    def fingerprint(self) -> str:
        return fingerprint(self.template, self.instructions, self.text_field, self.answer_field, self.demo_words)


def _one_line(text: str, words: int | None = None) -> str:
    # A line break inside an item could fake the "Label:" line of the format; keep each item on one line.
    return " ".join(defuse(text).split()[:words])


def softmax(scores: np.ndarray) -> np.ndarray:
    z = np.exp(scores - scores.max(axis=-1, keepdims=True))
    return z / z.sum(axis=-1, keepdims=True)


class LabelScorer:
    """A labelling method: label likelihood under a scorer (local causal LM or a logprobs endpoint).

    `examples` are fixed demonstrations; `selector` (e.g. SimilarExamples) picks them per item instead.
    `calibrate`: "none", "content-free" (contextual calibration with the same demonstrations), or
    "auto": content-free for fixed demonstrations (one calibration per prompt), none for per-item ones
    (measured: it costs three extra forwards per item for no accuracy gain there).
    """

    cacheable = True

    def __init__(self, scorer, labels: LabelSet, *, prompt: ScoringPrompt | None = None, examples: Sequence[dict] = (),
                 selector=None, calibrate: str = "auto", batch_size: int = 8):
        if calibrate not in ("auto", "none", "content-free"):
            raise ValueError(f"calibrate={calibrate!r}: choose 'auto', 'none' or 'content-free'")
        if calibrate == "auto":
            calibrate = "none" if selector is not None else "content-free"
        self.scorer, self.labels = scorer, labels
        self.prompt = prompt or ScoringPrompt.build()
        self.examples, self.selector = list(examples), selector
        self.calibrate, self.batch_size = calibrate, batch_size
        self._calibration: dict[str, np.ndarray] = {}

    @property
    def identity(self) -> str:
        selector = self.selector.fingerprint() if self.selector else None
        demos = [[e["text"], e["label"]] for e in self.examples]
        return f"score|{self.scorer.identity}|{self.prompt.fingerprint}|{fingerprint(demos)}|{selector}|{self.calibrate}"

    def demonstrations(self, texts: Sequence[str]) -> list[list[dict]]:
        if self.selector is None:
            return [[e for e in self.examples if e["text"] != t] for t in texts]
        return self.selector.select_each(texts)

    def _prior(self, demos: list[dict], usage: Usage) -> np.ndarray:
        """Mean label distribution for content-free inputs under these demonstrations (cached per demo set)."""
        key = fingerprint([[d["text"], d["label"]] for d in demos])
        if key not in self._calibration:
            prompts = [self.prompt.render(cf, demos) for cf in CONTENT_FREE]
            logp = self.scorer.score(prompts, self.labels.names, usage)
            self._calibration[key] = softmax(logp).mean(axis=0)
        return self._calibration[key]

    def predict(self, texts: Sequence[str], usage: Usage) -> Iterator[tuple[int, Outcome]]:
        for start in range(0, len(texts), self.batch_size):
            batch = list(texts[start : start + self.batch_size])
            demos = self.demonstrations(batch)
            prompts = [self.prompt.render(t, d) for t, d in zip(batch, demos)]
            try:
                logp = self.scorer.score(prompts, self.labels.names, usage)
            except Exception as exc:  # noqa: BLE001 - e.g. a logprobs server that is down after retries
                from .backends import describe_error, is_transient

                if not is_transient(exc):
                    raise
                for n in range(len(batch)):
                    yield start + n, Failure(describe_error(exc))
                continue
            for n, (row, d) in enumerate(zip(logp, demos)):
                if self.calibrate == "content-free":
                    row = np.log(softmax(row)) - np.log(self._prior(d, usage))
                probs = softmax(row)
                best = int(np.argmax(probs))
                scores = dict(zip(self.labels.names, map(float, probs)))
                yield start + n, Prediction(self.labels.names[best], float(probs[best]), scores=scores)


class CausalLMScorer:
    """Sum of label-token log-probs after each prompt, with a transformers causal LM on this machine.

    Prompts in a batch are left-padded and run once; their KV cache is repeated once per label and the
    label tokens are run as one short continuation, so every label's full sequence is scored without
    re-running the prompt for each label.
    """

    def __init__(self, model, tokenizer, *, name: str, max_length: int = 1024):
        import torch

        self.model, self.tokenizer, self.name, self.max_length = model.eval(), tokenizer, name, max_length
        self.tokenizer.padding_side = "left"
        self._torch = torch
        self._label_ids: dict[tuple[str, ...], list[list[int]]] = {}

    def __deepcopy__(self, memo):
        return self  # the model's weights are read-only here; copies of a program share them

    @property
    def identity(self) -> str:
        return f"causal-lm:{self.name}|max_length={self.max_length}"

    def label_ids(self, labels: Sequence[str]) -> list[list[int]]:
        key = tuple(labels)
        if key not in self._label_ids:
            ids = [self.tokenizer(" " + label, add_special_tokens=False).input_ids for label in labels]
            self._label_ids[key] = ids
        return self._label_ids[key]

    def count_tokens(self, text: str) -> int:
        return len(self.tokenizer(text, add_special_tokens=False).input_ids)

    def truncate(self, text: str, max_tokens: int) -> str:
        ids = self.tokenizer(text, add_special_tokens=False).input_ids
        return self.tokenizer.decode(ids[:max_tokens]) if len(ids) > max_tokens else text

    def score(self, prompts: Sequence[str], labels: Sequence[str], usage: Usage) -> np.ndarray:
        """[len(prompts), len(labels)] summed log-probabilities of each label after each prompt."""
        torch = self._torch
        label_ids = self.label_ids(labels)
        longest = max(map(len, label_ids))
        started = time.perf_counter()
        enc = self.tokenizer(list(prompts), return_tensors="pt", padding=True, truncation=True,
                             max_length=self.max_length - longest)
        ids, mask = enc.input_ids, enc.attention_mask
        n, width = ids.shape
        positions = (mask.cumsum(-1) - 1).clamp(min=0)
        with torch.inference_mode():
            out = self.model(input_ids=ids, attention_mask=mask, position_ids=positions, use_cache=True,
                             logits_to_keep=1)
            first = torch.log_softmax(out.logits[:, -1].float(), dim=-1)  # [n, vocab]
            scores = torch.stack([first[:, ids_[0]] for ids_ in label_ids], dim=1)  # [n, L]
            if longest > 1:
                scores += self._continuations(out.past_key_values, mask, label_ids, longest)
        usage.add(prompt_tokens=int(mask.sum()), compute_s=time.perf_counter() - started)
        return scores.numpy().astype(np.float64)

    def _continuations(self, cache, mask, label_ids, longest):
        """Log-probs of each label's 2nd.. tokens: one forward of [n * L, longest - 1] over the repeated cache."""
        torch = self._torch
        n, L = mask.shape[0], len(label_ids)
        pad = self.tokenizer.pad_token_id or 0
        steps = longest - 1
        inputs = torch.full((L, steps), pad, dtype=torch.long)
        targets = torch.full((L, steps), -1, dtype=torch.long)
        for j, ids_ in enumerate(label_ids):
            inputs[j, : len(ids_) - 1] = torch.tensor(ids_[:-1])
            targets[j, : len(ids_) - 1] = torch.tensor(ids_[1:])
        cache.batch_repeat_interleave(L)
        inputs, targets = inputs.repeat(n, 1), targets.repeat(n, 1)  # row i*L + j: prompt i, label j
        big_mask = torch.cat([mask.repeat_interleave(L, 0), torch.ones(n * L, steps, dtype=mask.dtype)], dim=1)
        start = mask.sum(-1).repeat_interleave(L).unsqueeze(1)
        positions = start + torch.arange(steps).unsqueeze(0)
        logits = self.model(input_ids=inputs, attention_mask=big_mask, position_ids=positions,
                            past_key_values=cache, use_cache=True).logits.float()
        logp = torch.log_softmax(logits, dim=-1)
        picked = logp.gather(-1, targets.clamp(min=0).unsqueeze(-1)).squeeze(-1)
        picked = torch.where(targets >= 0, picked, torch.zeros_like(picked))
        return picked.sum(-1).view(n, L)


def naive_label_logprobs(model, tokenizer, prompt: str, label: str) -> float:
    """Reference scoring, one full forward per (prompt, label): used by tests to check the fast path."""
    import torch

    p = tokenizer(prompt, return_tensors="pt").input_ids
    lab = tokenizer(" " + label, add_special_tokens=False, return_tensors="pt").input_ids
    ids = torch.cat([p, lab], dim=1)
    with torch.inference_mode():
        logp = torch.log_softmax(model(input_ids=ids).logits[0].float(), dim=-1)
    return float(sum(logp[p.shape[1] - 1 + k, lab[0, k]] for k in range(lab.shape[1])))
