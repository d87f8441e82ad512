"""Multi-label labelling on GoEmotions: the offline default (`offline`, multi_label=True) against one-vs-rest logistic
regression on the same encoder, in the same run, by micro/macro-F1, exact match, labels per item and wall time.

Data: ../shared/data/goemotions (its README): Ekman's 7 labels (goemotions_ekman_*.csv) and the 28 labels
(goemotions_*.csv), the official splits, labels joined by `;`. Test: 300 rows of the test split sampled with
numpy default_rng(seed). Examples from the train split: for K a label, rows in default_rng(seed) order, rarest
label first, a row counting for every label it carries, until every label has K; for 5,000 rows, the first 5,000
of default_rng(seed + 1000)'s order. Size 0 is zero-shot. The texts being labelled are passed as unlabelled texts
(as classify() passes them).

Rows: `offline` (methods/offline_multilabel.py) and `ovr-lr` (one logistic regression per label, C=10, on the
packaged MiniLM's embeddings, one threshold for all labels chosen for micro-F1 by 3-fold cross-validation on the
examples, an item may get no label: the plain recipe); with --methods also embed, local (zero-shot scores, the
threshold chosen on the examples) or, with --model, a chat model (zero-shot, or few-shot with the examples).

    python benchmarks/multi_label.py                                   # the grid: hours on 2 shared cores
    python benchmarks/multi_label.py --sets ekman --sizes 0,8 --seeds 0  # one cell per size
    python benchmarks/multi_label.py --zero-shot-ratios                 # the zero-shot rule on 5,000 train rows

Each cell's result goes to benchmarks/results/multi_label/<set>-<size>-<seed>.txt (JSON), which
benchmarks/report.py renders into docs/benchmarks.md.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import time
from datetime import datetime, timezone
from pathlib import Path

import numpy as np
import pandas as pd
from _common import ROOT

from promptclf import Classifier
from promptclf.core.metrics import multilabel_metrics
from promptclf.core.multilabel import split_labels

DATA = ROOT.parent / "shared" / "data" / "goemotions"
RESULTS = ROOT / "benchmarks" / "results" / "multi_label"
SETS = {"ekman": "goemotions_ekman_{}.csv", "all": "goemotions_{}.csv"}
N_TEST = 300
OVR_C = 10.0


def read(label_set: str, split: str) -> list[dict]:
    frame = pd.read_csv(DATA / SETS[label_set].format(split), keep_default_na=False)
    return [{"text": t, "labels": split_labels(lab)} for t, lab in zip(frame.text, frame.labels)]


def label_names(rows: list[dict]) -> list[str]:
    return sorted({name for r in rows for name in r["labels"]})


def test_sample(rows: list[dict], seed: int, n: int = N_TEST) -> list[dict]:
    return [rows[i] for i in np.random.default_rng(seed).permutation(len(rows))[:n]]


def per_label(rows: list[dict], k: int, seed: int) -> list[dict]:
    """Rows in default_rng(seed) order, rarest label first, a row counting for every label it carries, until
    every label has k (or has no rows left)."""
    order = np.random.default_rng(seed).permutation(len(rows))
    frequency = {name: sum(name in r["labels"] for r in rows) for name in label_names(rows)}
    have = dict.fromkeys(frequency, 0)
    picked: list[int] = []
    for name in sorted(frequency, key=lambda n: (frequency[n], n)):
        for i in order:
            if have[name] >= k:
                break
            if name in rows[i]["labels"] and int(i) not in picked:
                picked.append(int(i))
                for other in rows[i]["labels"]:
                    have[other] += 1
    return [rows[i] for i in picked]


def train_rows(rows: list[dict], size: int, seed: int) -> list[dict]:
    if size == 0:
        return []
    if size > 1000:  # a plain sample of the train split
        return [rows[i] for i in np.random.default_rng(seed + 1000).permutation(len(rows))[:size]]
    return per_label(rows, size, seed)


def ovr_lr(labels: list[str], train: list[dict], test: list[dict], seed: int) -> list[list[str]]:
    """One-vs-rest logistic regression on MiniLM embeddings, one threshold by 3-fold cross-validation."""
    from sklearn.linear_model import LogisticRegression
    from sklearn.model_selection import KFold
    from sklearn.multiclass import OneVsRestClassifier

    from promptclf.core.multilabel import choose_threshold
    from promptclf.methods.embeddings import default_encoder
    from promptclf.methods.offline_multilabel import embedded_texts

    def model():
        return OneVsRestClassifier(LogisticRegression(C=OVR_C, max_iter=2000, random_state=seed))

    x = embedded_texts(default_encoder(), [r["text"] for r in train])
    y = np.array([[name in r["labels"] for name in labels] for r in train], dtype=int)
    oof = np.zeros(y.shape)
    for fit_on, held in KFold(3, shuffle=True, random_state=seed).split(x):
        oof[held] = model().fit(x[fit_on], y[fit_on]).predict_proba(x[held])
    threshold = choose_threshold(oof, y)
    probs = model().fit(x, y).predict_proba(embedded_texts(default_encoder(), [r["text"] for r in test]))
    return [[name for name, p in zip(labels, row) if p >= threshold] for row in probs], threshold


def run(name: str, labels, train, test, seed: int, model: str | None) -> dict:
    texts = [r["text"] for r in test]
    started = time.perf_counter()
    extra = {}
    if name == "ovr-lr":
        if not train:
            return {}
        predicted, extra["threshold"] = ovr_lr(labels, train, test, seed)
    else:
        if name == "offline":
            clf = Classifier(
                labels,
                "offline",
                multi_label=True,
                examples=train or None,
                cache=False,
                progress=False,
                unlabeled=texts,
                seed=seed,
            )
        elif name in ("embed", "local"):
            clf = Classifier(
                labels, name, multi_label=True, examples=train or None, cache=False, progress=False, unlabeled=texts
            )
        else:  # chat: zero-shot, or few-shot with each train row shown once per label it has
            examples = [{"text": r["text"], "label": lab} for r in train for lab in r["labels"]] if train else None
            clf = Classifier(labels, model, multi_label=True, examples=examples, progress=False)
        predicted = clf.classify(texts)
        estimate = getattr(clf.method, "estimate", None)
        extra["report"] = estimate.describe() if estimate is not None else clf.report.summary()
    metrics = multilabel_metrics([r["labels"] for r in test], predicted, labels)
    counts = [len(p) for p in predicted]
    gold_counts = [len(r["labels"]) for r in test]
    return {
        "method": name,
        "wall_s": time.perf_counter() - started,
        "micro_f1": metrics["micro_f1"],
        "macro_f1": metrics["macro_f1"],
        "exact_match": metrics["subset_accuracy"],
        "labels_per_item": float(np.mean(counts)),
        "gold_labels_per_item": float(np.mean(gold_counts)),
        "items_with_2_plus": int(sum(c >= 2 for c in counts)),
        "gold_items_with_2_plus": int(sum(c >= 2 for c in gold_counts)),
        "both_2_plus": int(sum(c >= 2 and g >= 2 for c, g in zip(counts, gold_counts))),
        "label_counts": {str(k): int(sum(c == k for c in counts)) for k in sorted(set(counts))},
        **extra,
    }


def zero_shot_ratios(seed: int) -> None:
    """The zero-shot rule on 5,000 train rows (never the test rows): F1 and labels per item at each ratio."""
    from promptclf.methods import offline_multilabel as ml

    for label_set in SETS:
        rows = train_rows(read(label_set, "train"), 5000, seed)
        labels = label_names(rows)
        method = ml.OfflineMultiLabel(labels, unlabeled=[r["text"] for r in rows])
        probs = method.probabilities([r["text"] for r in rows])
        gold = [r["labels"] for r in rows]
        for ratio in (0.3, 0.4, 0.5, 0.6, 0.7, 0.8):
            chosen = ml.decide(probs, np.full(len(labels), ratio), False)
            predicted = [[n for n, c in zip(labels, row) if c] for row in chosen]
            m = multilabel_metrics(gold, predicted, labels)
            print(
                f"{label_set} ratio {ratio}: micro-F1 {m['micro_f1']:.3f} macro-F1 {m['macro_f1']:.3f} labels per "
                f"item {chosen.sum(1).mean():.2f} (gold {np.mean([len(g) for g in gold]):.2f})",
                flush=True,
            )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--sets", default="ekman,all")
    parser.add_argument("--sizes", default="0,8,64,5000", help="examples a label (0: zero-shot; >1000: train rows)")
    parser.add_argument("--seeds", default="0,1,2")
    parser.add_argument("--methods", default="offline,ovr-lr")
    parser.add_argument("--model", help="a chat model for the chat rows")
    parser.add_argument("--out", type=Path, default=RESULTS)
    parser.add_argument("--zero-shot-ratios", action="store_true")
    args = parser.parse_args()
    if args.zero_shot_ratios:
        zero_shot_ratios(0)
        return
    args.out.mkdir(parents=True, exist_ok=True)
    for label_set in args.sets.split(","):
        train_pool, test_pool = read(label_set, "train"), read(label_set, "test")
        labels = label_names(train_pool)
        for size in map(int, args.sizes.split(",")):
            for seed in map(int, args.seeds.split(",")):
                test = test_sample(test_pool, seed)
                train = train_rows(train_pool, size, seed)
                rows = [
                    r for r in (run(m, labels, train, test, seed, args.model) for m in args.methods.split(",")) if r
                ]
                cell = {
                    "set": label_set,
                    "size": size,
                    "seed": seed,
                    "train_rows": len(train),
                    "n_test": len(test),
                    "machine": f"{platform.machine()}, {os.cpu_count()} cores (shared)",
                    "date": datetime.now(timezone.utc).strftime("%Y-%m-%d"),
                    "rows": rows,
                }
                (args.out / f"{label_set}-{size}-{seed}.txt").write_text(json.dumps(cell, indent=1) + "\n")
                for r in rows:
                    print(
                        f"{label_set} {size} seed {seed} {r['method']}: micro-F1 {r['micro_f1']:.3f} macro-F1 "
                        f"{r['macro_f1']:.3f} exact {r['exact_match']:.3f} labels/item {r['labels_per_item']:.2f} "
                        f"(gold {r['gold_labels_per_item']:.2f}) 2+: {r['items_with_2_plus']} "
                        f"(gold {r['gold_items_with_2_plus']}, both {r['both_2_plus']}) {r['wall_s']:.0f}s",
                        flush=True,
                    )


if __name__ == "__main__":
    main()
