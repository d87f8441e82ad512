"""Reading and writing item files (CSV, JSONL, Parquet), AG News, and seeded stratified splits."""

from __future__ import annotations

import os
import shutil
import sys
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd

from promptclf.core import hashing
from promptclf.core.errors import ColumnError, InputError, MissingFileError

AG_NEWS_LABELS = {1: "World", 2: "Sports", 3: "Business", 4: "Sci/Tech"}
AG_NEWS_ALIASES = {"Sci/Tech": ["science/technology", "science and technology", "science", "technology", "tech"]}


def default_ag_news_path() -> Path:
    """../shared/data/ag_news/test.csv from the checkout the command runs in, or next to the checkout this
    module lives in (an editable install run from elsewhere)."""
    relative = Path("shared", "data", "ag_news", "test.csv")
    checkout = Path(__file__).resolve().parents[2]  # promptclf/core/data.py
    candidates = [Path("..") / relative, checkout.parent / relative]
    return next((path for path in candidates if path.exists()), candidates[0])


FORMATS = {".csv": "csv", ".jsonl": "jsonl", ".ndjson": "jsonl", ".parquet": "parquet", ".pq": "parquet"}
CHUNK_ROWS = 10_000


def table_format(path: str | Path, role: str = "input file") -> str:
    """csv, jsonl or parquet, from the file's extension; anything else is refused, naming the file."""
    suffix = Path(path).suffix.lower()
    if suffix not in FORMATS:
        raise InputError(
            f"{role} {str(path)!r}: unsupported format {suffix or '(no extension)'!r} (use .csv, .jsonl or .parquet)"
        )
    return FORMATS[suffix]


def read_chunks(path: str | Path, chunk_rows: int = CHUNK_ROWS) -> Iterator[pd.DataFrame]:
    """A CSV, JSONL or Parquet file as DataFrames of at most `chunk_rows` rows, read as it goes (memory does not
    grow with the file). CSV cells are text (an empty cell is ""); a file that is not UTF-8 text, not JSON lines
    or not Parquet is an InputError naming the file and where."""
    path = Path(path)
    kind = table_format(path)
    if not path.is_file():
        raise MissingFileError(f"input file {str(path)!r} does not exist")
    readers = {"csv": _csv_chunks, "jsonl": _jsonl_chunks, "parquet": _parquet_chunks}
    yield from readers[kind](path, chunk_rows)


def _csv_chunks(path: Path, chunk_rows: int) -> Iterator[pd.DataFrame]:
    try:
        reader = pd.read_csv(path, keep_default_na=False, dtype=str, chunksize=chunk_rows, encoding="utf-8")
        with reader:
            yield from reader
    except UnicodeDecodeError:
        raise InputError(_not_text(path)) from None
    except pd.errors.EmptyDataError:
        raise InputError(f"input file {str(path)!r} is empty: no header, no rows") from None
    except pd.errors.ParserError as exc:
        raise InputError(f"input file {str(path)!r} is not a readable CSV: {exc}") from None


def _jsonl_chunks(path: Path, chunk_rows: int) -> Iterator[pd.DataFrame]:
    import json

    records, offset = [], 0
    with open(path, "rb") as lines:
        for number, raw in enumerate(lines, start=1):
            try:
                line = raw.decode("utf-8").strip()
                record = json.loads(line) if line else None
            except UnicodeDecodeError as exc:
                raise InputError(_not_text(path, offset + exc.start)) from None
            except ValueError as exc:
                raise InputError(f"input file {str(path)!r}, line {number}: not JSON ({exc})") from None
            offset += len(raw)
            if record is None:
                continue
            if not isinstance(record, dict):
                raise InputError(
                    f"input file {str(path)!r}, line {number}: a JSON {type(record).__name__}, not an object of columns"
                )
            records.append(record)
            if len(records) == chunk_rows:
                yield pd.DataFrame.from_records(records)
                records = []
    if records:
        yield pd.DataFrame.from_records(records)


def _parquet_chunks(path: Path, chunk_rows: int) -> Iterator[pd.DataFrame]:
    import pyarrow as pa
    import pyarrow.parquet as pq

    try:
        parquet = pq.ParquetFile(path)
    except (pa.ArrowInvalid, OSError) as exc:
        raise InputError(f"input file {str(path)!r} is not a Parquet file ({exc})") from None
    for batch in parquet.iter_batches(batch_size=chunk_rows):
        yield batch.to_pandas()


def _not_text(path: Path, offset: int | None = None) -> str:
    if offset is None:
        offset = first_undecodable(path)
    return (
        f"input file {str(path)!r} is not UTF-8 text (an undecodable byte at offset {offset}): a binary file, "
        "or text in another encoding (save it as UTF-8)"
    )


def first_undecodable(path: Path) -> int:
    """The offset of the first byte that is not valid UTF-8 (-1 if there is none)."""
    import codecs

    decoder, offset = codecs.getincrementaldecoder("utf-8")(), 0
    with open(path, "rb") as f:
        while block := f.read(1 << 20):
            try:
                decoder.decode(block)
            except UnicodeDecodeError as exc:
                return offset + exc.start
            offset += len(block)
    return -1


def read_table(path: str | Path) -> pd.DataFrame:
    """A whole (small) file: examples, gold labels. Big inputs go through read_chunks."""
    chunks = list(read_chunks(path))
    return pd.concat(chunks, ignore_index=True) if chunks else pd.DataFrame()


def write_table(frame: pd.DataFrame, path: str | Path) -> Path:
    with TableWriter(path) as writer:
        writer.write(frame)
    return writer.path


class TableWriter:
    """Writes DataFrames as they come to a temporary file beside `path`, moved into place when the block ends
    without an error (an interrupted run leaves no half-written output). `-` writes CSV to stdout; a path that
    ends with `/` is a new directory of Parquet parts."""

    def __init__(self, path: str | Path):
        text = str(path)
        self.to_stdout = text == "-"
        self.parts = text.endswith(("/", "\\"))
        self.path = Path(text)
        self.kind = "csv" if self.to_stdout else "parquet" if self.parts else table_format(path, "output file")
        self.rows = 0
        self._file = self._parquet = None
        if self.parts and self.path.exists() and any(self.path.iterdir()):
            raise InputError(f"output directory {text!r} exists and is not empty: name a new one")
        if not self.to_stdout:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            self.partial = self.path.with_name(f".{self.path.name}.partial-{os.getpid()}")

    def write(self, frame: pd.DataFrame) -> None:
        if self.kind == "parquet":
            self._write_parquet(frame)
        elif self.kind == "csv":
            frame.to_csv(self._handle(), index=False, header=self.rows == 0)
        else:
            frame.to_json(self._handle(), orient="records", lines=True, force_ascii=False)
            if len(frame):
                self._handle().write("\n")
        self.rows += len(frame)

    def _handle(self):
        if self._file is None:
            self._file = sys.stdout if self.to_stdout else open(self.partial, "w", encoding="utf-8", newline="")
        return self._file

    def _write_parquet(self, frame: pd.DataFrame) -> None:
        import pyarrow as pa
        import pyarrow.parquet as pq

        if self.parts:
            self.partial.mkdir(parents=True, exist_ok=True)
            pq.write_table(
                pa.Table.from_pandas(frame, preserve_index=False), self.partial / f"part-{self.rows:012d}.parquet"
            )
            return
        if self._parquet is None:
            table = pa.Table.from_pandas(frame, preserve_index=False)
            self._parquet = pq.ParquetWriter(self.partial, table.schema)
        else:
            table = pa.Table.from_pandas(frame, schema=self._parquet.schema, preserve_index=False)
        self._parquet.write_table(table)

    def __enter__(self) -> TableWriter:
        return self

    def __exit__(self, kind, exc, traceback) -> None:
        if self._parquet is not None:
            self._parquet.close()
        if self._file is not None and not self.to_stdout:
            self._file.close()
        elif self.to_stdout:
            sys.stdout.flush()
        if self.to_stdout:
            return
        if kind is not None:
            shutil.rmtree(self.partial, ignore_errors=True) if self.partial.is_dir() else self.partial.unlink(True)
            return
        if self.rows == 0 and not self.partial.exists():
            self.write(pd.DataFrame())  # an empty output is still a file
        if self.parts and self.path.exists():
            self.path.rmdir()
        os.replace(self.partial, self.path)


def text_of(frame: pd.DataFrame, columns: str | Sequence[str]) -> list[str]:
    """The text column, or several columns joined with ". " (e.g. "title,description")."""
    names = [c.strip() for c in columns.split(",")] if isinstance(columns, str) else list(columns)
    missing = [c for c in names if c not in frame.columns]
    if missing:
        raise ColumnError(
            f"column(s) {missing} not in the file; it has {list(frame.columns)} (choose with --text-column)"
        )
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
    return [{"text": t, "label": AG_NEWS_LABELS[int(lab)]} for t, lab in zip(texts, frame["label"])]


def split(rows: Sequence, sizes: Sequence[int], seed: int = 0) -> list[list]:
    """Shuffle with the seed, then cut consecutive slices of the given sizes (train rows 0..n-1, ...)."""
    order = np.random.default_rng(seed).permutation(len(rows))
    if sum(sizes) > len(rows):
        raise InputError(f"split sizes {list(sizes)} add up to more than the {len(rows)} rows")
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
        raise ColumnError(f"column {label_column!r} not in {path}; it has {list(frame.columns)}")
    return [{"text": t, "label": str(lab)} for t, lab in zip(texts, frame[label_column])]


class StableSample:
    """The `size` distinct non-empty texts with the smallest sha256, kept as texts stream past: the same list as
    taking them from all the texts at once, in memory for about 2 x size texts."""

    def __init__(self, size: int):
        self.size = size
        self._kept: dict[str, str] = {}  # text -> its hash
        self._cut: str | None = None  # a hash above this cannot be among the smallest `size`

    def add(self, text: str) -> None:
        if not text.strip() or text in self._kept:
            return
        digest = hashing.digest(text)
        if self._cut is not None and digest > self._cut:
            return
        self._kept[text] = digest
        if len(self._kept) > 2 * self.size:
            kept = sorted(self._kept.items(), key=lambda item: item[1])[: self.size]
            self._kept, self._cut = dict(kept), kept[-1][1]

    def texts(self) -> list[str]:
        return [t for t, _ in sorted(self._kept.items(), key=lambda item: item[1])[: self.size]]


def sample_of(source: str | Path, text_column: str, size: int) -> list[str]:
    """The StableSample of the texts of a file, or of a directory of Parquet files (the Ray engine's input)."""
    source = Path(source)
    paths = (
        sorted(p for p in source.iterdir() if p.suffix.lower() in (".parquet", ".pq")) if source.is_dir() else [source]
    )
    sample = StableSample(size)
    for path in paths:
        for frame in read_chunks(path):
            for text in text_of(frame, text_column):
                sample.add(text)
    return sample.texts()


@dataclass(frozen=True)
class InputSummary:
    """What one pass over an input file found: its rows and columns, and a stable sample of its texts."""

    rows: int
    columns: list[str]
    sample: list[str]


def check_input(path: str | Path, text_column: str, *, skip_empty: bool = False, sample_size: int = 0) -> InputSummary:
    """Read the whole input once, before any work: readable, the text column(s) there, at least one row, no empty
    text unless skip_empty. Each problem is an InputError naming the file, the row (1 is the first data row)
    and the reason."""
    rows, columns, sample = 0, None, StableSample(sample_size)
    for frame in read_chunks(path):
        if columns is None:
            columns = [str(c) for c in frame.columns]
        try:
            texts = text_of(frame, text_column)
        except ColumnError:
            raise ColumnError(
                f"input file {str(path)!r} has no column {text_column!r}: its columns are "
                f"{columns} (choose with --text-column)"
            ) from None
        for offset, text in enumerate(texts):
            if not text.strip() and not skip_empty:
                raise InputError(
                    f"input file {str(path)!r}, row {rows + offset + 1}: the text is empty (pass "
                    "--skip-empty to leave such rows unlabelled)"
                )
            if sample_size:
                sample.add(text)
        rows += len(texts)
    if rows == 0:
        raise InputError(f"no rows in {str(path)!r}: nothing to label")
    return InputSummary(rows, columns or [], sample.texts())
