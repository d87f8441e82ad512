"""Benchmark: a rerun of all 7,600 AG News items from the answer cache.

Data: all 7,600 rows of AG News test.csv (title + description), no split (seed irrelevant). The first run
labels them through the fake OpenAI-compatible server (batch 20, concurrency 8); the second run must make
zero requests. Target: the cached rerun under 2 s.
"""

import tempfile
import time

from _common import LABELS, oracle_server

from promptclf import Classifier
from promptclf.data import load_ag_news

rows = load_ag_news()
texts = [r["text"] for r in rows]
with oracle_server(rows) as server, tempfile.TemporaryDirectory() as cache:
    model = f"openai-compatible:bench@{server.base_url}"
    first = Classifier(LABELS, model, batch_size=20, concurrency=8, cache=cache, structured="json_schema")
    started = time.perf_counter()
    first.classify(texts)
    cold = time.perf_counter() - started
    requests = server.log.requests
    again = Classifier(LABELS, model, cache=cache, structured="json_schema")
    started = time.perf_counter()
    labels = again.classify(texts)
    warm = time.perf_counter() - started
print(f"data: AG News test.csv, {len(texts)} items ({len(set(texts))} distinct)")
print(f"first run:  {requests} requests, {cold:.2f}s")
print(f"cached run: {server.log.requests - requests} requests, {warm:.2f}s "
      f"({again.report.cache_hits} cache hits), {cold / warm:.1f}x faster than the first run")
print(f"accuracy of cached labels against gold: {sum(a == r['label'] for a, r in zip(labels, rows)) / len(rows):.3f}")
