"""`promptclf cache export` / `import`: an answer cache to and from Parquet (columns `key`, `value`: JSON text),
so the workers of a cluster job can each keep a local cache and merge what they learned without a server.

The offline models trained on the user's examples ($PROMPTCLF_HOME/offline: SetFit encoders, tens of MB each) are
not exported: an import elsewhere answers the texts it has cached, and trains the model again for any other text.
The export says which it leaves behind."""

from __future__ import annotations

import json
import os
import re
import sys
from collections.abc import Iterator
from pathlib import Path

from promptclf.cache.offline_state import trained_state_dirs
from promptclf.cache.store import CacheBackend
from promptclf.cache.url import open_cache
from promptclf.core.errors import ConfigError, InputError, MissingFileError

ROWS_PER_BATCH = 50_000
_KEY = re.compile(r"[0-9a-f]{64}")


def export_cache(cache: CacheBackend, path: str | Path) -> int:
    """Every entry of `cache` into a Parquet file (written whole or not at all); returns the row count."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    partial = path.with_name(path.name + ".partial")
    schema = pa.schema([("key", pa.string()), ("value", pa.string())])
    rows = 0
    with pq.ParquetWriter(partial, schema) as writer:
        for keys, values in _batches(cache.items()):
            writer.write_table(pa.table({"key": keys, "value": values}, schema=schema))
            rows += len(keys)
    os.replace(partial, path)
    return rows


def _batches(items: Iterator[tuple[str, str]]) -> Iterator[tuple[list[str], list[str]]]:
    keys, values = [], []
    for key, value in items:
        keys.append(key)
        values.append(value)
        if len(keys) == ROWS_PER_BATCH:
            yield keys, values
            keys, values = [], []
    yield keys, values  # the rest; for an empty cache, a file with the schema and no rows


def import_cache(cache: CacheBackend, path: str | Path) -> tuple[int, int]:
    """Entries of a Parquet export into `cache`, keeping what it already has (first answer wins). The whole file
    is checked before anything is written. Returns (rows read, entries new to the cache)."""
    for _ in _read(path):  # check every row first: a bad file imports nothing
        pass
    rows = new = 0
    for entries in _read(path):
        rows += len(entries)
        new += cache.set_many(entries)
    return rows, new


def _read(path: str | Path) -> Iterator[dict[str, dict]]:
    import pyarrow as pa
    import pyarrow.parquet as pq

    if not Path(path).is_file():
        raise MissingFileError(f"{path}: no such file")
    try:
        source = pq.ParquetFile(path)
    except pa.ArrowException as exc:
        raise InputError(f"{path}: not a Parquet file ({exc})") from None
    missing = {"key", "value"} - set(source.schema_arrow.names)
    if missing:
        raise InputError(
            f"{path}: no {' or '.join(sorted(missing))} column; a promptclf cache export has "
            f"key and value (it has {source.schema_arrow.names})"
        )
    row = 0
    for batch in source.iter_batches(batch_size=ROWS_PER_BATCH, columns=["key", "value"]):
        entries = {}
        for key, text in zip(batch.column("key").to_pylist(), batch.column("value").to_pylist()):
            entries[_checked_key(path, row, key)] = _checked_value(path, row, text)
            row += 1
        yield entries


def _checked_key(path, row: int, key) -> str:
    if not isinstance(key, str) or not _KEY.fullmatch(key):
        raise InputError(f"{path}: row {row}: key {key!r:.80} is not a promptclf cache key (64 hex digits)")
    return key


def _checked_value(path, row: int, text) -> dict:
    try:
        value = json.loads(text) if isinstance(text, str) else None
    except ValueError:
        value = None
    if not isinstance(value, dict):
        raise InputError(f"{path}: row {row}: value {text!r:.80} is not a JSON object")
    return value


def _open(url: str | None) -> CacheBackend:
    cache = open_cache(url or True)
    if cache is None:
        raise ConfigError(f"--cache {url}: no cache to export from or import into")
    return cache


def cmd_export(args) -> int:
    cache = _open(args.cache)
    rows = export_cache(cache, args.output)
    print(f"exported {rows} answers from {cache.url} to {args.output}")
    _say_what_is_left_behind()
    return 0


def _say_what_is_left_behind() -> None:
    dirs = trained_state_dirs()
    if not dirs:
        return
    one = len(dirs) == 1
    print(
        f"promptclf: not in the export: {len(dirs)} offline model{'' if one else 's'} trained on your examples "
        f"here ({', '.join(map(str, dirs))}). An import elsewhere answers the texts it has cached, and trains "
        f"{'it' if one else 'them'} again for any other text; to carry {'it' if one else 'them'}, copy "
        f"{'the directory' if one else 'the directories'} to $PROMPTCLF_HOME/offline/ there.",
        file=sys.stderr,
    )


def cmd_import(args) -> int:
    cache = _open(args.cache)
    for path in args.inputs:
        rows, new = import_cache(cache, path)
        print(f"imported {path}: {rows} answers, {new} new to {cache.url}")
    return 0


def register_cli(sub) -> None:
    p = sub.add_parser("cache", help="export the answer cache to Parquet, or import (merge) Parquet exports")
    verbs = p.add_subparsers(dest="verb", required=True)
    where = "the cache: sqlite://<directory> (default: $PROMPTCLF_HOME/answers) or redis://host:port/db"
    e = verbs.add_parser(
        "export",
        help="write every cached answer to a Parquet file (columns key, value)",
        description="Write every cached answer to a Parquet file (columns key, value). The offline "
        "models trained on your examples ($PROMPTCLF_HOME/offline) are not included: "
        "an import elsewhere trains them again for texts it has not cached (the export "
        "lists them on stderr).",
    )
    e.add_argument("output", help="the Parquet file to write")
    e.add_argument("--cache", help=where)
    e.set_defaults(func=cmd_export)
    i = verbs.add_parser("import", help="add the answers of Parquet exports; entries already cached are kept")
    i.add_argument("inputs", nargs="+", help="Parquet files written by `promptclf cache export`")
    i.add_argument("--cache", help=where)
    i.set_defaults(func=cmd_import)
