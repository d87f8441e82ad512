"""Benchmark: hand-written zero-shot and few-shot prompts against the DSPy-optimised prompt (BootstrapFewShot),
on the embedded Gemma 3 270M, offline.

Data: AG News (benchmarks/_common.py), text = title + description. Split: seed-0 shuffle; optimiser train set =
the first --train rows of the train part (rows 0...), dev = the first --dev rows of the dev part (rows 4,000...),
test = the first --test rows of the test part (rows 4,600...). Few-shot = 1 random example per class (seed 0).
Optimised = BootstrapFewShot, up to 4 demonstrations, metric accuracy on dev. Cache off.
"""

import argparse
import tempfile

from _common import DATA, LABELS, SPLIT_TEXT, ag_split

from promptclf import Classifier
from promptclf.core.metrics import classification_metrics
from promptclf.workflows.optimize import optimize

parser = argparse.ArgumentParser()
parser.add_argument("--train", type=int, default=40)
parser.add_argument("--dev", type=int, default=200)
parser.add_argument("--test", type=int, default=500)
args = parser.parse_args()

train, dev, test = ag_split()
train, dev, test = train[: args.train], dev[: args.dev], test[: args.test]


def accuracy(clf, rows):
    return classification_metrics([r["label"] for r in rows], clf.classify([r["text"] for r in rows]), LABELS)[
        "accuracy"
    ]


with tempfile.TemporaryDirectory() as tmp:
    artifact = optimize(train, dev, LABELS, "local", max_demos=4, out=f"{tmp}/a.json", cache=False)
    prompts = {
        "zero-shot": dict(),
        "few-shot (1 per class)": dict(examples=train, example_selection="per-class", k=1),
        "DSPy BootstrapFewShot": dict(prompt=f"{tmp}/a.json"),
    }
    print(f"data: {DATA}; split: {SPLIT_TEXT}; optimiser train {len(train)}, dev {len(dev)}, test {len(test)}")
    print(f"{'prompt':>24} {'dev acc':>8} {'test acc':>8}")
    for name, options in prompts.items():
        clf = Classifier(LABELS, "local", cache=False, progress=False, **options)
        print(f"{name:>24} {accuracy(clf, dev):>8.3f} {accuracy(clf, test):>8.3f}", flush=True)
u = artifact.usage
print(
    f"optimisation cost: dev score {artifact.dev_score:.3f} (as reported by optimize), {len(artifact.demos)} demos, "
    f"{u['requests']} API calls, {u['prompt_tokens']} prompt tokens scored locally, {u['compute_s']:.0f}s compute, "
    f"{u['wall_s']:.0f}s wall"
)
