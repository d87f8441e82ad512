"""Benchmark: the embedded Gemma 3 270M by label scoring: zero-shot, k per class, k nearest, calibration.

Data: AG News (benchmarks/_common.py), text = title + description. Split: seed-0 shuffle; few-shot pool =
train rows 0-3,999; test = the first --n (default 1,000) rows of the test part (rows 4,600...). Seed 0 for
per-class sampling. Demonstrations are cut to 12 words unless a config says otherwise. Cache off: every
item is scored. Weights: quantize="auto" (int8 with nearest demonstrations, else float32) unless a
config names -int8 or -f32.
For context, "nn-vote" rows label by the MiniLM nearest neighbours' labels alone, with no LLM.
Targets: few-shot accuracy >= 80%, >= 10 items/s on this CPU.

    python benchmarks/local_model.py --n 1000
"""

import argparse
import collections
import time

from _common import DATA, LABELS, SPLIT_TEXT, ag_split

from promptclf import Classifier
from promptclf.core.metrics import classification_metrics
from promptclf.methods.similar_examples import SimilarExamples
from promptclf.workflows.compare import PeakMemory

FAST = dict(demo_words=8, item_words=20)
CONFIGS = {  # quantize="auto" (the default): int8 with nearest demonstrations, float32 otherwise
    "zero": dict(calibrate="none"),
    "zero-cal": dict(calibrate="content-free"),
    "zero-cal-int8": dict(calibrate="content-free", quantize="int8"),
    **{
        f"class{k}{cal}": dict(example_selection="per-class", k=k, calibrate="content-free" if cal else "none")
        for k in (1, 2, 4)
        for cal in ("", "-cal")
    },
    **{f"sim{k}": dict(example_selection="similar", k=k, calibrate="none") for k in (1, 2, 4)},
    "sim4-cal": dict(example_selection="similar", k=4, calibrate="content-free"),
    "sim4-nearest-first": dict(example_selection="similar", k=4, calibrate="none"),
    "sim2-fast": dict(example_selection="similar", k=2, calibrate="none", **FAST),
    "sim4-f32": dict(example_selection="similar", k=4, calibrate="none", quantize=None),
    "sim2-fast-f32": dict(example_selection="similar", k=2, calibrate="none", quantize=None, **FAST),
}
# sim4-cal: 3 extra forwards per item, measured no gain. Run int8 and float32 configs in separate processes
# for clean peak-memory figures (a process keeps each model it loaded).
DEFAULT = [c for c in CONFIGS if c != "sim4-cal"]


def nn_vote(train, texts, k):
    """Labels from the k nearest pool rows' labels (similarity-weighted vote): the retrieval alone."""
    selector = SimilarExamples(train, k=k)
    _ = selector.vectors  # embedded before the timer starts
    started = time.perf_counter()
    labels = []
    for picked in selector.neighbours(texts):
        votes = collections.Counter()
        for sim, j in picked:
            votes[train[j]["label"]] += sim
        labels.append(votes.most_common(1)[0][0])
    return labels, time.perf_counter() - started


parser = argparse.ArgumentParser()
parser.add_argument("--n", type=int, default=1000)
parser.add_argument("--configs", default=",".join(DEFAULT))
args = parser.parse_args()

train, _, test = ag_split()
test = test[: args.n]
texts, gold = [r["text"] for r in test], [r["label"] for r in test]
print(f"data: {DATA}; split: {SPLIT_TEXT}; {len(test)} test items; pool {len(train)}")
print(f"{'config':>18} {'accuracy':>8} {'macro-F1':>8} {'items/s':>8} {'tok/item':>8} {'peak MB':>8}")
predictions = {}
for k in (1, 8):
    predicted, seconds = nn_vote(train, texts, k)
    m = classification_metrics(gold, predicted, LABELS)
    print(
        f"{f'nn-vote{k}':>18} {m['accuracy']:>8.3f} {m['macro_f1']:>8.3f} {len(texts) / seconds:>8.2f} {'-':>8} {'-':>8}"
    )
for name in args.configs.split(","):
    options = CONFIGS[name]
    examples = train if "example_selection" in options else None
    with PeakMemory() as memory:
        clf = Classifier(LABELS, "local", examples=examples, cache=False, progress=False, **options)
        if name.endswith("nearest-first"):
            clf.method.selector.nearest_last = False
        if clf.method.selector:
            _ = clf.method.selector.vectors  # embed the pool before the clock starts
        started = time.perf_counter()
        predictions[name] = clf.classify(texts)
        seconds = time.perf_counter() - started
    m = classification_metrics(gold, predictions[name], LABELS)
    print(
        f"{name:>18} {m['accuracy']:>8.3f} {m['macro_f1']:>8.3f} {len(texts) / seconds:>8.2f} "
        f"{clf.report.prompt_tokens / len(texts):>8.0f} {memory.peak_mb:>8.0f}",
        flush=True,
    )
for int8, f32 in (("sim4", "sim4-f32"), ("sim2-fast", "sim2-fast-f32")):
    if int8 in predictions and f32 in predictions:
        same = sum(a == b for a, b in zip(predictions[int8], predictions[f32])) / len(texts)
        print(f"labels agreeing, {int8} (int8) vs {f32}: {same:.3f}")
