"""A validation sample: labelled rows drawn from the data being labelled, read from a DataFrame, a list of
(text, label) pairs or {"text", "label"} dicts, or a file (CSV, JSONL, Parquet with text and label columns).
It is never used for training or as examples: it measures (promptclf.core.trust)."""

from __future__ import annotations

import logging
from collections.abc import Sequence
from pathlib import Path

from promptclf.core.errors import ColumnError, InputError
from promptclf.core.labels import LabelError, LabelSet

log = logging.getLogger("promptclf")


def read_validation(
    source, labels: LabelSet, examples: Sequence[dict] = (), text_column: str = "text", label_column: str = "label"
) -> list[dict]:
    """[{"text", "label"}] with each label resolved onto the set; None gives []. Every row is checked before
    anything is labelled: an InputError names the file (or row source), the row (0: the first) and the reason."""
    if source is None:
        return []
    if isinstance(source, (str, Path)):
        where, pairs = _from_file(Path(source), text_column, label_column)
    elif hasattr(source, "columns"):
        where, pairs = "validation DataFrame", _from_frame(source, "validation DataFrame", text_column, label_column)
    elif isinstance(source, Sequence):
        where, pairs = "validation", [_pair(row, i) for i, row in enumerate(source)]
    else:
        raise InputError(
            f"validation is {type(source).__name__}: give a DataFrame with {text_column} and {label_column} "
            "columns, a list of (text, label) pairs or a file (CSV, JSONL, Parquet)"
        )
    rows = [_checked(text, label, labels, f"{where} row {i}") for i, (text, label) in enumerate(pairs)]
    if not rows:
        raise InputError(f"{where} has no rows: a validation sample needs labelled rows")
    _warn_overlap(rows, examples)
    return rows


def _from_file(path: Path, text_column: str, label_column: str) -> tuple[str, list]:
    from promptclf.core.data import read_table

    frame = read_table(path)
    where = f"validation file {path}"
    return f"{where}, data", _from_frame(frame, where, text_column, label_column)


def _from_frame(frame, where: str, text_column: str, label_column: str) -> list:
    missing = [c for c in (text_column, label_column) if c not in frame.columns]
    if missing:
        raise ColumnError(f"{where} has no column {missing[0]!r}: its columns are {[str(c) for c in frame.columns]}")
    return list(zip(frame[text_column].tolist(), frame[label_column].tolist()))


def _pair(row, i: int) -> tuple:
    if isinstance(row, dict) and "text" in row and "label" in row:
        return row["text"], row["label"]
    if isinstance(row, (tuple, list)) and len(row) == 2:
        return row[0], row[1]
    raise InputError(f"validation row {i} is {row!r:.60}: give a (text, label) pair or a dict with text and label")


def _checked(text, label, labels: LabelSet, where: str) -> dict:
    if not isinstance(text, str) or not text.strip():
        raise InputError(f"{where}: the text is {'empty' if isinstance(text, str) else type(text).__name__}")
    try:
        return {"text": text, "label": labels.check(label if isinstance(label, str) else str(label))}
    except LabelError:
        raise InputError(f"{where}: the label {label!r} is not in the label set {list(labels.names)}") from None


def _warn_overlap(rows: list[dict], examples: Sequence[dict]) -> None:
    taught = {" ".join(str(r.get("text", "")).split()) for r in examples or ()}
    shared = sum(" ".join(r["text"].split()) in taught for r in rows)
    if shared:
        log.warning(
            "promptclf: %d validation rows are also examples: the model learned from them, so the estimate and "
            "the threshold on them flatter it; draw the validation rows from the rest",
            shared,
        )
