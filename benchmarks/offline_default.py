"""The offline default with examples, as `classify(texts, labels, examples=...)` runs it: a Classifier trains
(cross-validation and the automatic choice; SetFit's folds stop once it could no longer be chosen) and labels
the texts. Per data set, examples per class and seed: what was chosen, what was stopped, the estimate it
reported, the accuracy, the training time from an empty PROMPTCLF_HOME (embedding the texts included) and the
labelling speed.

Data: the cells of few_labels.py (cell_data): the same examples (drawn per class with the seed from each data
set's pool), the same 800 texts to label (a seeded sample of its test rows, passed as `unlabeled` as classify
does) and the same first --n-test of them scored.

    python benchmarks/offline_default.py --budgets 8 --seeds 0,1
"""

from __future__ import annotations

import argparse
import os
import tempfile
import time

import numpy as np
from _datasets import NAMES
from few_labels import cell_data

from promptclf import Classifier


def run(name: str, budget: int, seed: int, n_test: int) -> dict:
    labels, test, texts, examples = cell_data(name, budget, seed, n_test)
    with tempfile.TemporaryDirectory() as home:
        os.environ["PROMPTCLF_HOME"] = home
        clf = Classifier(labels.names, examples=examples, unlabeled=texts, cache=False)
        started = time.perf_counter()
        clf.method.fit()
        trained = time.perf_counter()
        predictions = clf.predict(texts)
        labelled = time.perf_counter()
    estimate = clf.method.estimate
    gold = [r["label"] for r in test]
    return {
        "chosen": estimate.chosen,
        "stopped": ", ".join(f"{n} after {len(a)}" for n, a in estimate.stopped.items()),
        "estimate": estimate.accuracy,
        "accuracy": float(np.mean([p is not None and p.label == g for p, g in zip(predictions, gold)])),
        "train_s": trained - started,
        "items_s": len(texts) / (labelled - trained),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--data", default=",".join(NAMES))
    parser.add_argument("--budgets", default="8", help="examples per class")
    parser.add_argument("--seeds", default="0,1")
    parser.add_argument("--n-test", type=int, default=200)
    args = parser.parse_args()
    print(
        "| data | per class | seed | chosen | stopped (folds it ran) | estimate | accuracy | train s | items/s |\n"
        "|---|---|---|---|---|---|---|---|---|",
        flush=True,
    )
    for name in args.data.split(","):
        for budget in map(int, args.budgets.split(",")):
            for seed in map(int, args.seeds.split(",")):
                r = run(name, budget, seed, args.n_test)
                estimate = "–" if r["estimate"] is None else f"{r['estimate']:.3f}"
                print(
                    f"| {name} | {budget} | {seed} | {r['chosen']} | {r['stopped'] or '–'} | {estimate} | "
                    f"{r['accuracy']:.3f} | {r['train_s']:.0f} | {r['items_s']:.0f} |",
                    flush=True,
                )


if __name__ == "__main__":
    main()
