"""Benchmark: 4-bit LoRA (MiniLM) with few labelled rows, old schedule against the small-data schedule.

Data (../shared/data/), each seeded by --seeds:
  ag8   AG News test.csv (title + description), the `compare --split 32/64/1000` split: seed-s shuffle
        (numpy default_rng(s).permutation), train rows 0-31 (about 8 per class: 8/11/4/9 at seed 0),
        dev rows 32-95 passed as dev_rows, test rows 96-1,095.
  trec8 TREC train.csv: 8 rows per class (6 classes, 48 rows) drawn with default_rng(s); no dev rows;
        test = TREC test.csv (500 rows).
  ag64  AG News: seed-s shuffle, train pool rows 0-3,999, 64 per class (256 rows) drawn from it with
        default_rng(s); no dev rows; test rows 4,000-4,999.
Schedules: "old" = min_steps=0, min_dev_rows=1 (epochs x batches of 32, a 10% dev hold-out however few
rows, evaluation each epoch); "new" = the defaults. Both with epochs=3 (compare's default), lr 2e-3.
Train seconds are wall time of Trainer.train (evaluations included) on this machine.

    python benchmarks/lora_few_rows.py --data ag8,trec8 --seeds 0,1,2
    python benchmarks/lora_few_rows.py --data ag8 --old-schedule
"""

import argparse
import json
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from promptclf.core.data import load_ag_news, read_table, split  # noqa: E402
from promptclf.methods.finetune import finetune  # noqa: E402

AG = ["World", "Sports", "Business", "Sci/Tech"]
DATA_DIR = Path(__file__).resolve().parent.parent.parent / "shared" / "data"
OLD = {"min_steps": 0, "min_dev_rows": 1}


def per_class(rows, k, seed):
    rng = np.random.default_rng(seed)
    out = []
    for label in sorted({r["label"] for r in rows}):
        idx = [i for i, r in enumerate(rows) if r["label"] == label]
        out += [rows[i] for i in rng.choice(idx, size=min(k, len(idx)), replace=False)]
    return [out[i] for i in rng.permutation(len(out))]


def dataset(name, seed):
    """(train, dev or None, test, labels)"""
    if name == "ag8":
        train, dev, test = split(load_ag_news(), [32, 64, 1000], seed=seed)
        return train, dev, test, AG
    if name == "ag64":
        pool, test = split(load_ag_news(), [4000, 1000], seed=seed)
        return per_class(pool, 64, seed), None, test, AG
    if name == "trec8":

        def load(f):
            return [
                {"text": t, "label": lab}
                for t, lab in zip(
                    *(
                        read_table(DATA_DIR / "trec" / f)[c]  # noqa: E731
                        for c in ("text", "label")
                    )
                )
            ]

        train, test = load("train.csv"), load("test.csv")
        return per_class(train, 8, seed), None, test, sorted({r["label"] for r in train})
    raise SystemExit(f"unknown data set {name!r}: ag8, trec8, ag64")


def run(name, seed, schedule, options):
    train, dev, test, labels = dataset(name, seed)
    with tempfile.TemporaryDirectory() as out:
        started = time.perf_counter()
        method = finetune(
            train,
            labels,
            out=out,
            dev_rows=dev,
            progress=False,
            seed=seed,
            epochs=3,
            **(OLD if schedule == "old" else {}),
            **options,
        )
        total_s = time.perf_counter() - started
        probs = method.probabilities([r["text"] for r in test])
        metrics = method.metrics
    accuracy = float(np.mean([labels[i] == r["label"] for i, r in zip(probs.argmax(1), test)]))
    return dict(
        data=name,
        seed=seed,
        schedule=schedule,
        train_rows=metrics["train_rows"],
        dev_rows=metrics["dev_rows"],
        test_rows=len(test),
        steps=metrics["steps"],
        batch=metrics["schedule"]["batch_size"],
        epochs=metrics["schedule"]["epochs"],
        accuracy=accuracy,
        train_s=metrics["train_seconds"],
        finetune_s=total_s,
    )


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--data", default="ag8,trec8")
    parser.add_argument("--seeds", default="0")
    parser.add_argument("--old-schedule", action="store_true", help="only the old schedule")
    parser.add_argument("--new-schedule", action="store_true", help="only the new schedule")
    parser.add_argument("--options", default="{}", help="JSON finetune options for both, e.g. '{\"min_steps\": 60}'")
    parser.add_argument("--jsonl", help="append each result here as it comes")
    args = parser.parse_args()
    schedules = ["old"] if args.old_schedule else ["new"] if args.new_schedule else ["old", "new"]
    options = json.loads(args.options)
    results = []
    for name in args.data.split(","):
        for seed in map(int, args.seeds.split(",")):
            for schedule in schedules:
                result = run(name, seed, schedule, options)
                results.append(result)
                print(json.dumps(result), flush=True)
                if args.jsonl:
                    with open(args.jsonl, "a") as f:
                        f.write(json.dumps({**result, "options": options}) + "\n")
    print(f"\n4-bit NF4 LoRA on MiniLM, epochs=3, options {options}; data and splits in this script's docstring\n")
    print("| data | seed | schedule | train/dev/test rows | batch x steps | accuracy | train s |")
    print("|---|---|---|---|---|---|---|")
    for r in results:
        print(
            f"| {r['data']} | {r['seed']} | {r['schedule']} | {r['train_rows']}/{r['dev_rows']}/{r['test_rows']} "
            f"| {r['batch']} x {r['steps']} | {r['accuracy']:.3f} | {r['train_s']:.0f} |"
        )
    for name in dict.fromkeys(r["data"] for r in results):
        for schedule in schedules:
            acc = [r["accuracy"] for r in results if r["data"] == name and r["schedule"] == schedule]
            secs = [r["train_s"] for r in results if r["data"] == name and r["schedule"] == schedule]
            if len(acc) > 1:
                print(
                    f"{name} {schedule}: accuracy {np.mean(acc):.3f} ± {np.std(acc):.3f} over {len(acc)} seeds, "
                    f"train {np.mean(secs):.0f} s"
                )


if __name__ == "__main__":
    main()
