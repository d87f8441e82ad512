"""The batch API path against the interactive path, on the fake server (tests/fake_openai_server.py).

Data: the AG News test split's first 1,000 test rows (see _common.SPLIT_TEXT); batch size 10; the fake server
answers every item with its gold label and counts tokens as characters / 4, so this measures the plumbing
(requests, lines, tokens, cost at gpt-4o-mini's price), not a model. One batch expires after 60 of its 100 lines
in the second run: the 40 missing requests are re-asked interactively.

    python benchmarks/batch_api.py
"""

import tempfile
import time
from pathlib import Path

from _common import LABELS, SPLIT_TEXT, ag_split, oracle_server

from promptclf.classifier import Classifier
from promptclf.core.usage import PRICES
from promptclf.workflows.batch_api import BatchJob
from tests.fake_openai_server import BatchConfig

N = 1000


def main():
    _, _, test = ag_split()
    rows = test[:N]
    texts, gold = [r["text"] for r in rows], [r["label"] for r in rows]
    print(f"AG News, {SPLIT_TEXT}; first {N} test rows; prices: gpt-4o-mini {PRICES['openai:gpt-4o-mini']}")
    with oracle_server(rows) as server, tempfile.TemporaryDirectory() as tmp:
        model = f"openai-compatible:gpt-test@{server.base_url}"
        prices = {"openai-compatible:gpt-test": PRICES["openai:gpt-4o-mini"]}
        interactive = Classifier(LABELS, model, cache=f"{tmp}/i", prices=prices, progress=False)
        labels = interactive.classify(texts)
        print(f"interactive: {interactive.report.summary()}")
        runs = (("batch, completed", BatchConfig()), ("batch, expired at 60", BatchConfig(expire_after=60)))
        for name, config in runs:
            server.batches.config = config
            chat_before = server.log.chat_requests
            clf = Classifier(LABELS, model, cache=f"{tmp}/{len(name)}", prices=prices, progress=False)
            started = time.perf_counter()
            job = BatchJob.submit(clf, texts, Path(tmp) / f"{len(name)}.json")
            predictions = job.collect(clf)
            took = time.perf_counter() - started
            agree = sum(p.label == label for p, label in zip(predictions, labels))
            right = sum(p.label == g for p, g in zip(predictions, gold))
            print(
                f"{name}: {job.report.summary()}\n  {server.log.chat_requests - chat_before} interactive requests; "
                f"{agree}/{N} labels equal the interactive path's, {right}/{N} gold; {took:.1f}s"
            )


if __name__ == "__main__":
    main()
