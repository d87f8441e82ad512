"""Reading and writing item files (CSV, JSONL, Parquet), AG News, and seeded stratified splits."""

from __future__ import annotations

from pathlib import Path
from typing import Sequence

import numpy as np
import pandas as pd

AG_NEWS_LABELS = {1: "World", 2: "Sports", 3: "Business", 4: "Sci/Tech"}
AG_NEWS_ALIASES = {"Sci/Tech": ["science/technology", "science and technology", "science", "technology", "tech"]}


def default_ag_news_path() -> Path:
    """../shared/data/ag_news/test.csv from the checkout the command runs in, or next to the checkout this
    module lives in (an editable install run from elsewhere)."""
    relative = Path("shared", "data", "ag_news", "test.csv")
    checkout = Path(__file__).resolve().parents[2]  # promptclf/core/data.py
    candidates = [Path("..") / relative, checkout.parent / relative]
    return next((path for path in candidates if path.exists()), candidates[0])


def read_table(path: str | Path) -> pd.DataFrame:
    path = Path(path)
    if not path.exists():
        raise FileNotFoundError(f"input file {str(path)!r} does not exist")
    suffix = path.suffix.lower()
    if suffix == ".csv":
        return pd.read_csv(path, keep_default_na=False, dtype=str)
    if suffix in (".jsonl", ".ndjson"):
        return pd.read_json(path, lines=True, dtype=False)
    if suffix in (".parquet", ".pq"):
        return pd.read_parquet(path)
    raise ValueError(f"input file {str(path)!r}: unsupported format {suffix!r} (use .csv, .jsonl or .parquet)")


def write_table(frame: pd.DataFrame, path: str | Path) -> Path:
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    suffix = path.suffix.lower()
    if suffix == ".csv":
        frame.to_csv(path, index=False)
    elif suffix in (".jsonl", ".ndjson"):
        frame.to_json(path, orient="records", lines=True, force_ascii=False)
    elif suffix in (".parquet", ".pq"):
        frame.to_parquet(path, index=False)
    else:
        raise ValueError(f"output file {str(path)!r}: unsupported format {suffix!r} (use .csv, .jsonl or .parquet)")
    return path


def text_of(frame: pd.DataFrame, columns: str | Sequence[str]) -> list[str]:
    """The text column, or several columns joined with ". " (e.g. "title,description")."""
    names = [c.strip() for c in columns.split(",")] if isinstance(columns, str) else list(columns)
    missing = [c for c in names if c not in frame.columns]
    if missing:
        raise KeyError(f"column(s) {missing} not in the file; it has {list(frame.columns)}")
    parts = frame[names].apply(lambda col: col.map(_cell))
    if len(names) == 1:
        return parts[names[0]].tolist()
    parts = parts.apply(lambda col: col.str.strip().str.rstrip("."))
    return [". ".join(p for p in row if p) for row in parts.itertuples(index=False)]


def _cell(value) -> str:
    """A cell as text: a missing value (None, NaN) is empty, never the word "nan" or "None"."""
    if isinstance(value, str):
        return value
    return "" if value is None or (np.ndim(value) == 0 and pd.isna(value)) else str(value)


def load_ag_news(path: str | Path | None = None, text_columns: str = "title,description") -> list[dict]:
    """AG News rows as [{"text", "label"}] with label names (World, Sports, Business, Sci/Tech)."""
    frame = read_table(path or default_ag_news_path())
    texts = [t.replace("\\", " ") for t in text_of(frame, text_columns)]
    return [{"text": t, "label": AG_NEWS_LABELS[int(l)]} for t, l in zip(texts, frame["label"])]


def split(rows: Sequence, sizes: Sequence[int], seed: int = 0) -> list[list]:
    """Shuffle with the seed, then cut consecutive slices of the given sizes (train rows 0..n-1, ...)."""
    order = np.random.default_rng(seed).permutation(len(rows))
    if sum(sizes) > len(rows):
        raise ValueError(f"split sizes {list(sizes)} add up to more than the {len(rows)} rows")
    out, start = [], 0
    for size in sizes:
        out.append([rows[i] for i in order[start : start + size]])
        start += size
    return out


def serialize_rows(rows, columns: Sequence[str] | None = None, question: str = "", digits: int = 3) -> list[str]:
    """Tabular rows as text (TabLLM's list serialisation): one "- column: value" line per feature, then the
    question. `rows` is a DataFrame or a list of dicts; numbers are rounded to `digits` significant digits."""
    frame = rows if isinstance(rows, pd.DataFrame) else pd.DataFrame(list(rows))
    columns = list(columns or frame.columns)

    def show(value) -> str:
        if isinstance(value, (float, np.floating)):
            return f"{value:.{digits}g}"
        return str(value)

    texts = []
    for record in frame[columns].itertuples(index=False):
        lines = [f"- {name}: {show(value)}" for name, value in zip(columns, record)]
        texts.append("\n".join(lines + ([question] if question else [])))
    return texts


def rows_from_file(path, text_column: str, label_column: str | None = None):
    """A file's texts, or its rows of text and label where a label column is named."""
    frame = read_table(path)
    texts = text_of(frame, text_column)
    if label_column is None:
        return texts
    if label_column not in frame.columns:
        raise KeyError(f"column {label_column!r} not in {path}; it has {list(frame.columns)}")
    return [{"text": t, "label": str(l)} for t, l in zip(texts, frame[label_column])]
