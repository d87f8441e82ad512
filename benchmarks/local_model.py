"""Benchmark: the embedded Gemma 3 270M by label scoring, zero-shot and few-shot, with and without calibration.

Data: AG News (benchmarks/_common.py), text = title + description. Split: seed-0 shuffle; few-shot pool =
train rows 0-3,999; test = the first --n (default 1,000) rows of the test part (rows 4,600...). Seed 0 for
per-class sampling. Demonstrations are cut to 12 words. Cache off: every item is scored.
Targets: few-shot accuracy >= 80%, >= 10 items/s on this CPU.

    python benchmarks/local_model.py --n 1000 --configs zero,zero-cal,class1-cal,sim4,sim8
"""

import argparse
import time

from _common import DATA, LABELS, SPLIT_TEXT, ag_split

from promptclf import Classifier
from promptclf.compare import PeakMemory
from promptclf.metrics import classification_metrics

CONFIGS = {
    "zero": dict(calibrate="none"),
    "zero-cal": dict(calibrate="content-free"),
    **{f"class{k}{cal}": dict(example_selection="per-class", k=k, calibrate="content-free" if cal else "none")
       for k in (1, 2, 4) for cal in ("", "-cal")},
    "sim4": dict(example_selection="similar", k=4, calibrate="none"),
    "sim4-cal": dict(example_selection="similar", k=4, calibrate="content-free"),
    "sim8": dict(example_selection="similar", k=8, calibrate="none"),
}

parser = argparse.ArgumentParser()
parser.add_argument("--n", type=int, default=1000)
parser.add_argument("--configs", default=",".join(CONFIGS))
args = parser.parse_args()

train, _, test = ag_split()
test = test[: args.n]
texts, gold = [r["text"] for r in test], [r["label"] for r in test]
print(f"data: {DATA}; split: {SPLIT_TEXT}; {len(test)} test items; pool {len(train)}")
print(f"{'config':>10} {'accuracy':>8} {'macro-F1':>8} {'items/s':>8} {'tok/item':>8} {'peak MB':>8}")
for name in args.configs.split(","):
    options = CONFIGS[name]
    examples = train if "example_selection" in options else None
    with PeakMemory() as memory:
        clf = Classifier(LABELS, "local", examples=examples, cache=False, progress=False, **options)
        clf.method.selector and clf.method.selector.vectors  # embed the pool before the clock starts
        started = time.perf_counter()
        predicted = clf.classify(texts)
        seconds = time.perf_counter() - started
    m = classification_metrics(gold, predicted, LABELS)
    print(f"{name:>10} {m['accuracy']:>8.3f} {m['macro_f1']:>8.3f} {len(texts) / seconds:>8.2f} "
          f"{clf.report.prompt_tokens / len(texts):>8.0f} {memory.peak_mb:>8.0f}", flush=True)
