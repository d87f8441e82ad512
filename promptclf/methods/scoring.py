"""Label scoring: classify by the likelihood a language model gives each label as the continuation.

A small base model (the embedded Gemma 3 270M) does not reliably write JSON, but it does rank
continuations: render the prompt, score every label's full token sequence after it (sum of log-probs),
pick the best, and report a softmax over the labels as the confidence. Contextual calibration divides
out the label prior the prompt itself induces (the scores of content-free inputs such as "N/A").
"""

from __future__ import annotations

import logging
import os
import time
from collections.abc import Iterator, Sequence
from dataclasses import dataclass

import numpy as np
from jinja2.sandbox import SandboxedEnvironment

from promptclf.core.hashing import fingerprint
from promptclf.core.identity import method_identity
from promptclf.core.labels import LabelSet
from promptclf.core.methods import Failure, Outcome, Prediction
from promptclf.core.usage import Usage
from promptclf.task.prompts import defuse, template_text

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
    item_words: int | None = None  # likewise the item being labelled (its opening carries most of the topic)

    @classmethod
    def build(cls, template: str | None = None, **kwargs) -> ScoringPrompt:
        return cls(template_text(template or "scoring"), **kwargs)

    def __post_init__(self):
        self._compiled = SandboxedEnvironment(keep_trailing_newline=False).from_string(self.template)

    def render(self, text: str, examples: Sequence[dict] = ()) -> str:
        return self._compiled.render(
            instructions=self.instructions,
            text_field=self.text_field,
            answer_field=self.answer_field,
            examples=[{"text": _one_line(e["text"], self.demo_words), "label": e["label"]} for e in examples],
            item={"text": _one_line(text, self.item_words)},
        ).rstrip()

    @property
    def fingerprint(self) -> str:
        return fingerprint(
            self.template, self.instructions, self.text_field, self.answer_field, self.demo_words, self.item_words
        )


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

    def __init__(
        self,
        scorer,
        labels: LabelSet,
        *,
        prompt: ScoringPrompt | None = None,
        examples: Sequence[dict] = (),
        selector=None,
        calibrate: str = "auto",
        batch_size: int = 16,
        batch_tokens: int = 2048,
    ):
        if calibrate not in ("auto", "none", "content-free"):
            raise ValueError(f"calibrate={calibrate!r}: choose 'auto', 'none' or 'content-free'")
        if calibrate == "auto":
            calibrate = "none" if selector is not None else "content-free"
        self.scorer, self.labels = scorer, labels
        self.prompt = prompt or ScoringPrompt.build()
        self.examples, self.selector = list(examples), selector
        self.calibrate, self.batch_size, self.batch_tokens = calibrate, batch_size, batch_tokens
        self._calibration: dict[str, np.ndarray] = {}

    @property
    def identity(self) -> str:
        selector = self.selector.fingerprint() if self.selector else None
        demos = [[e["text"], e["label"]] for e in self.examples]
        return method_identity(
            "score", self.scorer.identity, self.prompt.fingerprint, fingerprint(demos), selector, self.calibrate
        )

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
        # Prompts are scored in batches of similar length (little compute goes to padding); a window
        # bounds how long the first answer takes, and each answer is yielded (and cached) as it comes.
        window = 8 * self.batch_size
        for start in range(0, len(texts), window):
            chunk = list(texts[start : start + window])
            demos = self.demonstrations(chunk)
            prompts = [self._render(t, d) for t, d in zip(chunk, demos)]
            for rows in self._batches([self._tokens(p) for p in prompts]):
                for i, outcome in self._score_batch([prompts[i] for i in rows], [demos[i] for i in rows], usage):
                    yield start + rows[i], outcome

    def _render(self, text: str, demos: list[dict]) -> str:
        """The item's prompt. One too long for the scorer's context has its item cut (with a warning), so that
        the demonstrations and the answer cue at the end stay whole."""
        prompt = self.prompt.render(text, demos)
        budget = getattr(self.scorer, "max_prompt_tokens", None)
        over = self.scorer.count_tokens(prompt) - budget(self.labels.names) if budget else 0
        if over <= 0:
            return prompt
        shown = _one_line(text, self.prompt.item_words)
        keep = self.scorer.count_tokens(shown) - over
        while keep > 0:
            prompt = self.prompt.render(self.scorer.truncate(shown, keep), demos)
            if self.scorer.count_tokens(prompt) <= budget(self.labels.names):
                log.warning(
                    "promptclf: an item is %d tokens too long for max_length=%d; its end was cut to fit "
                    "(the demonstrations and the label cue are kept)",
                    over,
                    self.scorer.max_length,
                )
                return prompt
            keep -= 8  # tokens can merge or split where the text was cut
        from promptclf.core.errors import ConfigError

        raise ConfigError(
            f"the scoring prompt is over max_length={self.scorer.max_length} tokens without its item: "
            f"show fewer or shorter demonstrations (k, demo_words) or raise max_length"
        )

    def _tokens(self, prompt: str) -> int:
        count = getattr(self.scorer, "count_tokens", None)
        return count(prompt) if count else len(prompt) // 4

    def _batches(self, sizes: list[int]) -> Iterator[list[int]]:
        """Indices by increasing size, cut into batches of at most batch_size prompts and batch_tokens
        padded tokens (which bounds the memory a batch of long prompts takes)."""
        batch: list[int] = []
        for i in sorted(range(len(sizes)), key=sizes.__getitem__):
            if batch and (len(batch) == self.batch_size or (len(batch) + 1) * sizes[i] > self.batch_tokens):
                yield batch
                batch = []
            batch.append(i)
        if batch:
            yield batch

    def _score_batch(self, prompts: list[str], demos: list[list[dict]], usage: Usage) -> Iterator[tuple[int, Outcome]]:
        try:
            logp = self.scorer.score(prompts, self.labels.names, usage)
        except Exception as exc:  # noqa: BLE001 - e.g. a logprobs server that is down after retries
            from promptclf.methods.requests import describe_error, is_transient

            if not is_transient(exc):
                raise
            yield from ((n, Failure(describe_error(exc))) for n in range(len(prompts)))
            return
        for n, (row, d) in enumerate(zip(logp, demos)):
            if self.calibrate == "content-free":
                row = np.log(softmax(row)) - np.log(self._prior(d, usage))
            probs = softmax(row)
            best = int(np.argmax(probs))
            scores = dict(zip(self.labels.names, map(float, probs)))
            yield n, Prediction(self.labels.names[best], float(probs[best]), self.scorer.source, scores=scores)


class CausalLMScorer:
    """Sum of label-token log-probs after each prompt, with a transformers causal LM on this machine.

    Prompts in a batch are left-padded and run once; for labels of several tokens their KV cache is
    repeated once per such label and the label tokens run as one short continuation, so every label's
    full sequence is scored without re-running the prompt for each label. A prefix that all prompts of a
    batch share (fixed demonstrations) is run once and its KV cache reused across batches.
    `prompt_tokens` in the usage report counts the tokens actually computed.
    """

    def __init__(
        self,
        model,
        tokenizer,
        *,
        name: str,
        max_length: int = 1024,
        min_shared_prefix: int = 32,
        quantize: str | None = None,
        version: str = "",
        source: str = "local-llm",
    ):
        import torch

        self.model, self.tokenizer, self.name, self.max_length = model.eval(), tokenizer, name, max_length
        self.quantize, self.version = quantize, version
        self.source = source  # what answered, for Prediction.source: "gemma" for the embedded model
        self._pad = tokenizer.pad_token_id or 0  # prompts are left-padded by _left_pad, not the tokenizer
        self._torch = torch
        self._label_ids: dict[tuple[str, ...], list[list[int]]] = {}
        self.min_shared_prefix = min_shared_prefix
        self._prefix = None  # (token ids, KV cache) of the last shared prefix

    def __deepcopy__(self, memo):
        return self  # the model's weights are read-only here; copies of a program share them

    @property
    def identity(self) -> str:
        return f"causal-lm:{self.name}|{self.version}|max_length={self.max_length}|quantize={self.quantize}"

    def label_ids(self, labels: Sequence[str]) -> list[list[int]]:
        key = tuple(labels)
        if key not in self._label_ids:
            ids = [self.tokenizer(" " + label, add_special_tokens=False).input_ids for label in labels]
            self._label_ids[key] = ids
        return self._label_ids[key]

    def count_tokens(self, text: str) -> int:
        return len(self.tokenizer(text, add_special_tokens=False).input_ids)

    def max_prompt_tokens(self, labels: Sequence[str]) -> int:
        """The longest prompt (without special tokens) that leaves room for every label within max_length."""
        specials = len(self.tokenizer("").input_ids)
        return self.max_length - max(map(len, self.label_ids(labels))) - specials

    def truncate(self, text: str, max_tokens: int) -> str:
        ids = self.tokenizer(text, add_special_tokens=False).input_ids
        return self.tokenizer.decode(ids[:max_tokens]) if len(ids) > max_tokens else text

    def score(self, prompts: Sequence[str], labels: Sequence[str], usage: Usage) -> np.ndarray:
        """[len(prompts), len(labels)] summed log-probabilities of each label after each prompt, up to a
        constant per prompt (see _first_tokens): compare them across labels, not across prompts."""
        torch = self._torch
        label_ids = self.label_ids(labels)
        longest = max(map(len, label_ids))
        started = time.perf_counter()
        ids = self.tokenizer(list(prompts), truncation=True, max_length=self.max_length - longest).input_ids
        shared = self._shared_prefix(ids)
        with torch.inference_mode():
            cache, computed = self._prefix_cache(ids[0][:shared], len(ids)) if shared else (None, 0)
            suffix, suffix_mask = self._left_pad([row[shared:] for row in ids])
            mask = torch.cat([torch.ones(len(ids), shared, dtype=torch.long), suffix_mask], dim=1)
            positions = shared + (suffix_mask.cumsum(-1) - 1).clamp(min=0)
            out = self.model.get_decoder()(
                input_ids=suffix, attention_mask=mask, position_ids=positions, past_key_values=cache, use_cache=True
            )
            scores = self._first_tokens(out.last_hidden_state[:, -1], [ids_[0] for ids_ in label_ids])
            if longest > 1:
                scores += self._continuations(out.past_key_values, mask, label_ids, longest)
        usage.add(prompt_tokens=computed + int(suffix_mask.sum()), compute_s=time.perf_counter() - started)
        return scores.numpy().astype(np.float64)

    def _first_tokens(self, hidden, token_ids: list[int]):
        """Logits of each label's first token, up to the prompt's log-normaliser: that is the same for every
        label, so it cancels in the softmax over labels, and projecting onto a few rows of the output
        embedding instead of the whole vocabulary (262k rows for Gemma) saves reading it per batch."""
        head = self.model.get_output_embeddings()
        logits = hidden @ head.weight[token_ids].T
        if getattr(head, "bias", None) is not None:
            logits = logits + head.bias[token_ids]
        cap = getattr(self.model.config, "final_logit_softcapping", None)
        return (cap * self._torch.tanh(logits / cap) if cap else logits).float()

    def _shared_prefix(self, ids: list[list[int]]) -> int:
        """Tokens every prompt starts with (fixed demonstrations), where reusing their KV cache pays."""
        shared = min(len(os.path.commonprefix(ids)), min(map(len, ids)) - 1)  # each prompt keeps a token to run
        window = getattr(self.model.config, "sliding_window", None) or self.max_length
        if shared < self.min_shared_prefix or max(map(len, ids)) > window:
            return 0  # short prefixes save too little; past a sliding window the cache is cropped
        return shared

    def _prefix_cache(self, prefix: list[int], n: int):
        """The prefix's KV cache, computed once and kept while prompts share it, repeated for n prompts."""
        import copy

        computed = 0
        if self._prefix is None or self._prefix[0] != prefix:
            out = self.model.get_decoder()(input_ids=self._torch.tensor([prefix]), use_cache=True)
            self._prefix = (prefix, out.past_key_values)
            computed = len(prefix)
        cache = copy.deepcopy(self._prefix[1])
        cache.batch_repeat_interleave(n)
        return cache, computed

    def _left_pad(self, rows: list[list[int]]):
        torch = self._torch
        width = max(map(len, rows))
        ids = torch.full((len(rows), width), self._pad, dtype=torch.long)
        mask = torch.zeros((len(rows), width), dtype=torch.long)
        for i, row in enumerate(rows):
            ids[i, width - len(row) :] = torch.tensor(row)
            mask[i, width - len(row) :] = 1
        return ids, mask

    def _continuations(self, cache, mask, label_ids, longest):
        """Log-probs of each label's 2nd.. tokens: one forward over the cache, repeated once per label that
        has more than one token (single-token labels are fully scored by the prompt's last position)."""
        torch = self._torch
        n = mask.shape[0]
        multi = [j for j, ids_ in enumerate(label_ids) if len(ids_) > 1]
        steps = longest - 1
        inputs = torch.full((len(multi), steps), self._pad, dtype=torch.long)
        targets = torch.full((len(multi), steps), -1, dtype=torch.long)
        for row, j in enumerate(multi):
            ids_ = label_ids[j]
            inputs[row, : len(ids_) - 1] = torch.tensor(ids_[:-1])
            targets[row, : len(ids_) - 1] = torch.tensor(ids_[1:])
        if len(multi) > 1:
            cache.batch_repeat_interleave(len(multi))
        inputs, targets = inputs.repeat(n, 1), targets.repeat(n, 1)  # row i*M + m: prompt i, label multi[m]
        big_mask = torch.cat(
            [mask.repeat_interleave(len(multi), 0), torch.ones(len(inputs), steps, dtype=mask.dtype)], 1
        )
        start = mask.sum(-1).repeat_interleave(len(multi)).unsqueeze(1)
        positions = start + torch.arange(steps).unsqueeze(0)
        logits = self.model(
            input_ids=inputs, attention_mask=big_mask, position_ids=positions, past_key_values=cache, use_cache=True
        ).logits.float()
        picked = torch.log_softmax(logits, dim=-1).gather(-1, targets.clamp(min=0).unsqueeze(-1)).squeeze(-1)
        picked = torch.where(targets >= 0, picked, torch.zeros_like(picked))
        scores = torch.zeros(n, len(label_ids))
        scores[:, multi] = picked.sum(-1).view(n, len(multi))
        return scores


def naive_label_logprobs(model, tokenizer, prompt: str, label: str) -> float:
    """Reference scoring, one full forward per (prompt, label): used by tests to check the fast path."""
    import torch

    p = tokenizer(prompt, return_tensors="pt").input_ids
    lab = tokenizer(" " + label, add_special_tokens=False, return_tensors="pt").input_ids
    ids = torch.cat([p, lab], dim=1)
    with torch.inference_mode():
        logp = torch.log_softmax(model(input_ids=ids).logits[0].float(), dim=-1)
    return float(sum(logp[p.shape[1] - 1 + k, lab[0, k]] for k in range(lab.shape[1])))
