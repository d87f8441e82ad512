"""Confidence for a chat model's answers from the token logprobs it returned (OpenAI's chat format, which
vLLM and llama-cpp-python's server copy): the probability of the tokens that wrote each answer's label."""

from __future__ import annotations

import math
import re

from promptclf.core.labels import LabelSet, normalize

# One answer object of the batch schema, in either key order; the label's text is group "label".
_ANSWER = (
    re.compile(r'"index"\s*:\s*(?P<index>\d+)\s*,\s*"label"\s*:\s*"(?P<label>(?:[^"\\]|\\.)*)"'),
    re.compile(r'"label"\s*:\s*"(?P<label>(?:[^"\\]|\\.)*)"\s*,\s*"index"\s*:\s*(?P<index>\d+)'),
)


def label_confidences(tokens: list[dict], labels: LabelSet, answered: dict[int, str]) -> dict[int, tuple[float, dict]]:
    """For each item id in `answered` (id -> the label it was given) whose answer is found in the tokens:
    (confidence, scores). The confidence is the product of the probabilities of the tokens that wrote the
    label (for a multi-token label, the chain rule gives the probability of the whole label). `scores` holds
    the answered label at that confidence and every other label found among the alternatives
    (`top_logprobs`) of the label's first token, at that token's probability (exact for a label of one
    token, an upper bound for a longer one); a label that is not among them is left out. An id whose answer
    is not found, or is written twice, gets nothing: no confidence is better than a guessed one."""
    text, starts = _joined(tokens)
    spans: dict[int, list[tuple[int, int]]] = {}
    for pattern in _ANSWER:
        for match in pattern.finditer(text):
            spans.setdefault(int(match.group("index")), []).append(match.span("label"))
    found = {}
    for item, label in answered.items():
        if len(set(spans.get(item, []))) != 1:
            continue
        start, end = spans[item][0]
        covering = [n for n, s in enumerate(starts) if s < end and s + len(tokens[n]["token"]) > start]
        if not covering or any(tokens[n].get("logprob") is None for n in covering):
            continue
        confidence = math.exp(sum(tokens[n]["logprob"] for n in covering))
        scores = _alternatives(tokens[covering[0]], text[starts[covering[0]] : start], labels, skip=label)
        scores[label] = confidence
        found[item] = (confidence, scores)
    return found


def _joined(tokens: list[dict]) -> tuple[str, list[int]]:
    starts, offset = [], 0
    for token in tokens:
        starts.append(offset)
        offset += len(token["token"])
    return "".join(t["token"] for t in tokens), starts


def _alternatives(token: dict, lead: str, labels: LabelSet, skip: str) -> dict[str, float]:
    """Labels the first token's alternatives would begin, each alternative counted for a label only when it
    begins no other label; `lead` is the part of the token before the label (an opening quote)."""
    surfaces = [(normalize(form), label.name) for label in labels.labels for form in (label.name, *label.aliases)]
    scores: dict[str, float] = {}
    for alternative in token.get("top_logprobs") or []:
        written = alternative.get("token", "")
        if not written.startswith(lead) or alternative.get("logprob") is None:
            continue
        rest = normalize(written[len(lead) :].rstrip('"'))
        if not rest:
            continue
        named = {name for surface, name in surfaces if surface.startswith(rest) or rest.startswith(surface)}
        if len(named) == 1 and (name := named.pop()) != skip:
            scores[name] = scores.get(name, 0.0) + math.exp(alternative["logprob"])
    return scores
