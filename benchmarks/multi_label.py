"""Multi-label labelling on GoEmotions, Ekman's 7 labels (../shared/data/goemotions, its README): every method
that takes multi-label tasks, scored by micro/macro-F1, subset accuracy and Hamming loss.

Data: goemotions_ekman_{train,dev,test}.csv (the official splits, labels joined by `;`). Train: for each label
in turn, --per-label rows of train.csv that have it and were not drawn yet (seeded shuffle, numpy
default_rng(seed)), so a label set can bring other labels along; dev: the same from dev.csv with
--dev-per-label; test: a seeded sample of --n-test rows of test.csv (default_rng(seed + 1)).
Methods: setfit (MiniLM, --setfit-pairs contrastive pairs, one-vs-rest heads, threshold chosen on the dev rows), lora (MiniLM, a sigmoid per
label, BCE, threshold chosen on the dev rows), embed / offline / local (zero-shot per-label scores, the
threshold chosen on the train rows, core.multilabel.Thresholded), and with --model a chat model (zero-shot; few-shot with the
train rows, each shown once per label it has).

    python benchmarks/multi_label.py                                  # setfit, lora: minutes on 2 cores
    python benchmarks/multi_label.py --methods embed,offline          # seconds
    python benchmarks/multi_label.py --methods zero-shot,few-shot --model openai-compatible:m@http://host/v1
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import numpy as np
import pandas as pd
from _common import ROOT

from promptclf import Classifier
from promptclf.core.multilabel import split_labels

DATA = ROOT.parent / "shared" / "data" / "goemotions"
EKMAN = ["anger", "disgust", "fear", "joy", "neutral", "sadness", "surprise"]


def read(name: str) -> list[dict]:
    frame = pd.read_csv(DATA / f"goemotions_ekman_{name}.csv", keep_default_na=False)
    return [{"text": t, "labels": split_labels(lab)} for t, lab in zip(frame.text, frame.labels)]


def per_label(rows: list[dict], k: int, seed: int) -> list[dict]:
    order = np.random.default_rng(seed).permutation(len(rows))
    picked: list[int] = []
    for label in EKMAN:
        picked += [int(i) for i in order if label in rows[i]["labels"] and i not in picked][:k]
    return [rows[i] for i in picked]


def run(name: str, args, train, dev, test) -> dict:
    from promptclf.methods.finetune import finetune

    started = time.perf_counter()
    out = Path(args.out) / name
    if name == "setfit":
        finetune(
            train,
            EKMAN,
            out=out,
            method="setfit",
            multi_label=True,
            dev_rows=dev,
            progress=False,
            seed=args.seed,
            max_pairs=args.setfit_pairs,
        )
        clf = Classifier(EKMAN, f"finetuned:{out}", multi_label=True, cache=False, progress=False)
    elif name == "lora":
        finetune(train, EKMAN, out=out, dev_rows=dev, multi_label=True, progress=False, quantize="none", seed=args.seed)
        clf = Classifier(EKMAN, f"finetuned:{out}", multi_label=True, cache=False, progress=False)
    elif name in ("embed", "offline", "local"):  # zero-shot scores; the train rows choose the threshold
        clf = Classifier(
            EKMAN,
            name,
            multi_label=True,
            examples=train,
            cache=False,
            progress=False,
            unlabeled=[r["text"] for r in test],
        )  # as classify() passes the texts it labels
    else:
        examples = (
            [{"text": r["text"], "label": lab} for r in train for lab in r["labels"]] if name == "few-shot" else None
        )
        clf = Classifier(EKMAN, args.model, multi_label=True, examples=examples, progress=False)
    train_s = time.perf_counter() - started
    started = time.perf_counter()
    metrics = clf.score([r["text"] for r in test], [r["labels"] for r in test])
    threshold = getattr(clf.method, "threshold", None)
    return {
        "method": name,
        "train_s": train_s,
        "label_s": time.perf_counter() - started,
        "threshold": threshold,
        "report": clf.report.summary(),
        **metrics,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--methods", default="setfit,lora")
    parser.add_argument("--model", help="a chat model for the zero-shot and few-shot rows")
    parser.add_argument("--per-label", type=int, default=8)
    parser.add_argument("--dev-per-label", type=int, default=4)
    parser.add_argument("--n-test", type=int, default=250)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--setfit-pairs", type=int, default=480, help="SetFit's pair budget (480: 30 steps)")
    parser.add_argument("--out", default="reports/multi_label")
    args = parser.parse_args()
    train, dev = (
        per_label(read("train"), args.per_label, args.seed),
        per_label(read("dev"), args.dev_per_label, args.seed),
    )
    pool = read("test")
    test = [pool[i] for i in np.random.default_rng(args.seed + 1).permutation(len(pool))[: args.n_test]]
    share = lambda rows: sum(len(r["labels"]) > 1 for r in rows) / len(rows)  # noqa: E731
    print(
        f"GoEmotions Ekman: {len(train)} train rows ({args.per_label} per label, {share(train):.0%} with 2+ labels), "
        f"{len(dev)} dev, {len(test)} test ({share(test):.0%} with 2+ labels), seed {args.seed}"
    )
    results = []
    for name in args.methods.split(","):
        results.append(run(name, args, train, dev, test))
        r = results[-1]
        print(
            f"{name}: micro-F1 {r['micro_f1']:.3f}  macro-F1 {r['macro_f1']:.3f}  subset accuracy "
            f"{r['subset_accuracy']:.3f}  Hamming loss {r['hamming_loss']:.3f}  threshold {r['threshold']}  "
            f"train {r['train_s']:.0f}s  label {r['label_s']:.0f}s",
            flush=True,
        )
    Path(args.out).mkdir(parents=True, exist_ok=True)
    (Path(args.out) / "results.json").write_text(json.dumps(results, indent=2))
    print("\n| method | micro-F1 | macro-F1 | subset accuracy | Hamming loss | train s |\n|---|---|---|---|---|---|")
    for r in results:
        print(
            f"| {r['method']} | {r['micro_f1']:.3f} | {r['macro_f1']:.3f} | {r['subset_accuracy']:.3f} | "
            f"{r['hamming_loss']:.3f} | {r['train_s']:.0f} |"
        )


if __name__ == "__main__":
    main()
