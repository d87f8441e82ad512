"""Benchmark: items/s against the fake server with a fixed 200 ms response latency, concurrency 1, 4, 16.

Data: AG News test items (benchmarks/_common.py; seed-0 shuffle, from row 4,600). Batch size 10. Each run
labels batch x concurrency x 5 items (five full waves), cache off. Ideal = batch x concurrency / latency.
Target: within 80% of ideal.
"""

from _common import DATA, LABELS, SPLIT_TEXT, ag_split, oracle_server

from promptclf import Classifier

_, _, test = ag_split()
LATENCY, BATCH = 0.2, 10
print(f"data: {DATA}; split: {SPLIT_TEXT}; latency {LATENCY * 1000:.0f} ms, batch {BATCH}")
print(f"{'concurrency':>11} {'items':>6} {'items/s':>8} {'ideal':>7} {'ratio':>6}")
with oracle_server(test, latency=LATENCY) as server:
    for concurrency in (1, 4, 16):
        items = test[: BATCH * concurrency * 5]
        clf = Classifier(
            LABELS,
            f"openai-compatible:bench@{server.base_url}",
            batch_size=BATCH,
            concurrency=concurrency,
            cache=False,
            structured="json_schema",
        )
        clf.classify([r["text"] for r in items])
        rate, ideal = len(items) / clf.report.wall_s, BATCH * concurrency / LATENCY
        print(f"{concurrency:>11} {len(items):>6} {rate:>8.1f} {ideal:>7.0f} {rate / ideal:>6.2f}")
