"""Benchmark: prompt tokens and requests per item against batch size, with a 40-example few-shot prompt.

Data: AG News (benchmarks/_common.py), 200 test items, 40 few-shot examples from the train part.
Split/seed: seed-0 shuffle, train rows 0-3,999, test from row 4,600. Server: the fake OpenAI-compatible
server on 127.0.0.1 (tests/fake_openai_server.py), which counts tokens as characters / 4 for every request.
Target: at batch 20, at least 8x fewer prompt tokens per item than one request per item.

Accuracy by batch size with the embedded model is not measured: the embedded model labels by label scoring,
one item per prompt, so batching does not change its answers.
"""

import tempfile

from _common import DATA, LABELS, SPLIT_TEXT, ag_split, oracle_server

from promptclf import Classifier

train, _, test = ag_split()
items = test[:200]
print(f"data: {DATA}; split: {SPLIT_TEXT}; 200 test items, 40 examples")
print(f"{'batch':>5} {'requests/item':>14} {'prompt tok/item':>16} {'vs batch 1':>10} {'accuracy':>9}")
baseline = None
with oracle_server(train + items) as server:
    for batch in (1, 5, 10, 20, 40):
        with tempfile.TemporaryDirectory() as cache:
            clf = Classifier(
                LABELS,
                f"openai-compatible:bench@{server.base_url}",
                examples=train[:40],
                example_selection="all",
                batch_size=batch,
                concurrency=8,
                cache=cache,
                structured="json_schema",
            )
            labels = clf.classify([r["text"] for r in items])
        per_item = clf.report.prompt_tokens / len(items)
        baseline = baseline or per_item
        accuracy = sum(a == r["label"] for a, r in zip(labels, items)) / len(items)
        print(
            f"{batch:>5} {clf.report.requests / len(items):>14.3f} {per_item:>16.1f} "
            f"{baseline / per_item:>9.1f}x {accuracy:>9.3f}"
        )
