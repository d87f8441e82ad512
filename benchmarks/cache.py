"""Benchmark: a rerun of all 7,600 AG News items from the answer cache, SQLite and Redis; then the backends'
own get_many/set_many throughput.

Data: all 7,600 rows of AG News test.csv (title + description), no split (seed irrelevant). The first run
labels them through the fake OpenAI-compatible server (batch 20, concurrency 8) into the SQLite cache; the
second run must make zero requests. Target: the cached rerun under 2 s. The SQLite cache is then exported to
Parquet and imported into a fresh redis-server on 127.0.0.1 (started here; skipped where redis-server or the
redis client is missing), and a third run is answered from Redis.

Throughput: 100,000 synthetic entries (sha256 keys, {"label", "confidence", "scores": None} values), written as
the Classifier writes them (set_many per 100) and read back with one get_many (the backend chunks it).
"""

import hashlib
import tempfile
import time
from pathlib import Path

from _common import LABELS, oracle_server

from promptclf import Classifier
from promptclf.cache.store import SQLiteCache
from promptclf.cache.transfer import export_cache, import_cache
from promptclf.cache.url import open_cache
from promptclf.core.data import load_ag_news
from tests.redis_server import RedisServer, missing

THROUGHPUT_ENTRIES, WRITE_CHUNK = 100_000, 100


def cached_rerun(model: str, cache, texts, server):
    before = server.log.requests
    clf = Classifier(LABELS, model, cache=cache, structured="json_schema")
    started = time.perf_counter()
    labels = clf.classify(texts)
    return labels, time.perf_counter() - started, server.log.requests - before, clf.report.cache_hits


def throughput(cache) -> tuple[float, float]:
    """(entries/s written by set_many per 100, entries/s read by one get_many)."""
    keys = [hashlib.sha256(str(i).encode()).hexdigest() for i in range(THROUGHPUT_ENTRIES)]
    value = {"label": "Business", "confidence": 0.93, "scores": None}
    started = time.perf_counter()
    for start in range(0, len(keys), WRITE_CHUNK):
        cache.set_many({k: value for k in keys[start : start + WRITE_CHUNK]})
    wrote = time.perf_counter() - started
    started = time.perf_counter()
    found = cache.get_many(keys)
    read = time.perf_counter() - started
    assert len(found) == len(keys)
    return len(keys) / wrote, len(keys) / read


rows = load_ag_news()
texts = [r["text"] for r in rows]
gold = [r["label"] for r in rows]
print(f"data: AG News test.csv, {len(texts)} items ({len(set(texts))} distinct)")
with oracle_server(rows) as server, tempfile.TemporaryDirectory() as tmp:
    model = f"openai-compatible:bench@{server.base_url}"
    sqlite = f"sqlite://{tmp}/answers"
    first = Classifier(LABELS, model, batch_size=20, concurrency=8, cache=sqlite, structured="json_schema")
    started = time.perf_counter()
    first.classify(texts)
    cold = time.perf_counter() - started
    print(f"first run:  {server.log.requests} requests, {cold:.2f}s (into {sqlite.replace(tmp, '<tmp>')})")
    labels, warm, requests, hits = cached_rerun(model, sqlite, texts, server)
    print(
        f"cached run from SQLite: {requests} requests, {warm:.2f}s ({hits} cache hits), "
        f"{cold / warm:.1f}x faster than the first run"
    )
    print(f"accuracy of cached labels against gold: {sum(a == g for a, g in zip(labels, gold)) / len(rows):.3f}")
    parquet = Path(tmp) / "answers.parquet"
    started = time.perf_counter()
    exported = export_cache(open_cache(sqlite), parquet)
    print(
        f"export: {exported} answers to Parquet in {time.perf_counter() - started:.2f}s "
        f"({parquet.stat().st_size / 1e6:.1f} MB)"
    )
    if missing():
        print(f"Redis: skipped ({missing()})")
    else:
        with RedisServer() as redis_url:
            started = time.perf_counter()
            read, new = import_cache(open_cache(redis_url), parquet)
            print(f"import into Redis: {new} of {read} answers in {time.perf_counter() - started:.2f}s")
            labels, warm, requests, hits = cached_rerun(model, redis_url, texts, server)
            print(
                f"cached run from Redis (127.0.0.1): {requests} requests, {warm:.2f}s ({hits} cache hits), "
                f"labels equal to the SQLite run: {labels == cached_rerun(model, sqlite, texts, server)[0]}"
            )


def report(name: str, cache) -> None:
    written, read = throughput(cache)
    print(f"  {name:20s} set_many {written:>9,.0f} entries/s   get_many {read:>9,.0f} entries/s")


print(f"\nthroughput, {THROUGHPUT_ENTRIES:,} entries (set_many per {WRITE_CHUNK}, one get_many):")
with tempfile.TemporaryDirectory() as tmp:
    report("SQLite (local file)", SQLiteCache(tmp))
if missing():
    print(f"  Redis: skipped ({missing()})")
else:
    with RedisServer() as url:
        report("Redis (127.0.0.1)", open_cache(url))
