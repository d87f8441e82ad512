"""Pydantic output schemas built from a label set, and a lenient parser that repairs off-schema answers."""

from __future__ import annotations

import json
import re
import secrets
from dataclasses import dataclass, field
from typing import Literal

from pydantic import BaseModel, Field, ValidationError, create_model

from promptclf.core.labels import LabelSet


class LenientAnswer(BaseModel):
    index: int
    label: str


class LenientBatch(BaseModel):
    answers: list[LenientAnswer]


class LenientLabelSet(BaseModel):
    index: int
    labels: list[str]


class LenientMultiBatch(BaseModel):
    answers: list[LenientLabelSet]


def answer_schema(labels: LabelSet) -> type[BaseModel]:
    """One answer: the item's index and a label constrained to the set (a JSON-schema enum for the API)."""
    label_type = Literal[tuple(labels.names)]  # type: ignore[valid-type]
    return create_model(
        "Answer",
        index=(int, Field(description="the id of the item this answer is for")),
        label=(label_type, Field(description="exactly one label from the set")),
    )


def label_set_schema(labels: LabelSet) -> type[BaseModel]:
    """One multi-label answer: the item's index and the labels of the set that apply (possibly none)."""
    label_type = Literal[tuple(labels.names)]  # type: ignore[valid-type]
    return create_model(
        "Answer",
        index=(int, Field(description="the id of the item this answer is for")),
        labels=(list[label_type], Field(description="every label from the set that applies; [] if none does")),
    )


def batch_schema(labels: LabelSet, multi_label: bool = False) -> type[BaseModel]:
    """The whole response: one answer per item, each carrying the index of the item it answers."""
    return create_model(
        "BatchAnswer",
        __doc__="Labels for a batch of items, one answer per item.",
        answers=(
            list[label_set_schema(labels) if multi_label else answer_schema(labels)],
            Field(description="one answer per item"),
        ),
    )


def item_ids(n: int) -> list[int]:
    """Ids for one request's n items, drawn anew for every request: no item's text can name another item's
    id, and answers numbered 0..n-1 or shifted by one name no item at all (read_batch then re-asks)."""
    return secrets.SystemRandom().sample(range(100_000, 1_000_000), n)


@dataclass
class BatchResult:
    """What a response said about a batch: labels by item index, and why the other items failed."""

    labels: dict[int, str] = field(default_factory=dict)  # multi-label: a tuple of labels per index
    failed: dict[int, str] = field(default_factory=dict)
    repaired: int = 0
    confidence: dict[int, float] = field(default_factory=dict)  # from token logprobs, where the backend gave them
    scores: dict[int, dict] = field(default_factory=dict)


def _json_candidates(text: str):
    text = text.strip()
    fenced = re.findall(r"```(?:json)?\s*(.*?)```", text, flags=re.S)
    yield from fenced
    yield text
    start, end = text.find("{"), text.rfind("}")
    if 0 <= start < end:
        yield text[start : end + 1]
    start, end = text.find("["), text.rfind("]")
    if 0 <= start < end:
        yield text[start : end + 1]


def extract_answers(payload, multi_label: bool = False) -> list[LenientAnswer] | list[LenientLabelSet] | None:
    """Best-effort reading of a response (text, dict or list) as a list of (index, label) answers, or with
    multi_label, of (index, labels) answers."""
    if isinstance(payload, BaseModel):
        payload = payload.model_dump()
    if isinstance(payload, str):
        for candidate in _json_candidates(payload):
            try:
                parsed = json.loads(candidate)
            except ValueError:
                continue
            answers = extract_answers(parsed, multi_label)
            if answers is not None:
                return answers
        return None
    if isinstance(payload, list):
        payload = {"answers": payload}
    key = "labels" if multi_label else "label"
    if isinstance(payload, dict) and "answers" not in payload and {"index", key} <= payload.keys():
        payload = {"answers": [payload]}
    try:
        return (LenientMultiBatch if multi_label else LenientBatch).model_validate(payload).answers
    except ValidationError:
        return None


def read_batch(payload, labels: LabelSet, expected: list[int], multi_label: bool = False) -> BatchResult:
    """Match a response to the items it was for, by the ids they were asked with.

    An answer for an id that was not asked (numbered 0..n-1, shifted, or written inside an item) means the
    response cannot be trusted: every item fails. Missing, duplicated and unparseable answers fail their
    items. Failed items are re-asked, never guessed; labels are mapped onto the set through the alias table.
    Multi-label: each answer is a list of labels, every one mapped so (one not in the set fails the item),
    repeats dropped, in label-set order; an empty list is an answer (no label applies).
    """
    result = BatchResult()
    answers = extract_answers(payload, multi_label)
    if answers is None:
        result.failed = {i: "response is not valid JSON of the batch schema" for i in expected}
        return result
    stray = sorted({a.index for a in answers} - set(expected))
    if stray:
        result.failed = {i: f"the response answers ids that were not asked ({stray[:3]})" for i in expected}
        return result
    seen: dict[int, list] = {}
    for answer in answers:
        seen.setdefault(answer.index, []).append(answer.labels if multi_label else answer.label)
    for index in expected:
        given = seen.get(index)
        if not given:
            result.failed[index] = "no answer for this item"
        elif len(given) > 1:
            result.failed[index] = f"answered {len(given)} times"
        elif multi_label:
            _read_label_set(result, index, given[0], labels)
        else:
            label = labels.resolve(given[0])
            if label is None:
                result.failed[index] = f"answer {given[0]!r} is not in the label set"
            else:
                result.repaired += label != given[0]
                result.labels[index] = label
    return result


def _read_label_set(result: BatchResult, index: int, given: list[str], labels: LabelSet) -> None:
    resolved = [labels.resolve(name) for name in given]
    unknown = [name for name, label in zip(given, resolved) if label is None]
    if unknown:
        result.failed[index] = f"answer {unknown[0]!r} is not in the label set"
        return
    result.repaired += sum(label != name for name, label in zip(given, resolved))
    result.labels[index] = tuple(name for name in labels.names if name in set(resolved))
