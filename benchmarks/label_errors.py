"""Finding wrong labels: the audit's precision and recall when 10% of 400 labelled rows carry a wrong label.

Data (benchmarks/_datasets.py): AG News, TREC, IMDb, SMS Spam (the single-label sets). Rows: 400 (--rows) drawn
at random from each set's train pool with seed 0 (the same rows for every seed, so their embeddings are computed
once). For each seed, 40 of them (10%, --flip; drawn with the seed) get another label, drawn uniformly among the
others with the seed. The audit (`promptclf.find_label_errors`'s steps: out-of-fold probabilities from the
named components, 5 stratified folds, then cleanlab's find_label_issues under each of its filter_by rules, on the
same probabilities) flags rows; precision is the share of flagged rows that were flipped, recall the share of
flipped rows flagged, and "precision at 40" the share of the 40 most suspect rows (by self-confidence) that were
flipped. Each cell (data set, components, seed) is stored in --out as JSON (benchmarks/results/label_errors, kept
in git) and skipped when present; the table is printed from whatever cells exist.

    python benchmarks/label_errors.py                                  # 4 data sets, seeds 0-2, the default
    python benchmarks/label_errors.py --data trec --seeds 0 --components examples
    python benchmarks/label_errors.py --table-only
"""

from __future__ import annotations

import argparse
import datetime
import json
import os
import platform
import sys
import time
from pathlib import Path

import numpy as np
from _common import ROOT
from _datasets import load

from promptclf.workflows.audit import (
    DEFAULT_COMPONENTS,
    FILTER_BY,
    FOLDS,
    checked_rows,
    label_issues,
    out_of_fold_probabilities,
)

DATA = ("ag_news", "trec", "imdb", "sms_spam")
FILTERS = ("prune_by_noise_rate", "both", "confident_learning", "predicted_neq_given")
OUT = ROOT / "benchmarks" / "results" / "label_errors"


def sample(name: str, n: int) -> tuple[list[dict], list[str]]:
    """n rows of the set's train pool, drawn with seed 0, and the set's label names."""
    pool, _, names = load(name)
    order = np.random.default_rng(0).permutation(len(pool))[:n]
    return [pool[i] for i in order], names


def flip(rows: list[dict], names: list[str], n: int, seed: int) -> tuple[list[str], set[int]]:
    """The rows' labels with n of them (drawn with the seed) changed to another label, and which ones."""
    rng = np.random.default_rng(seed)
    flipped = {int(i) for i in rng.choice(len(rows), size=n, replace=False)}
    labels = [r["label"] for r in rows]
    for i in sorted(flipped):
        others = [name for name in names if name != labels[i]]
        labels[i] = others[int(rng.integers(len(others)))]
    return labels, flipped


def machine() -> str:
    return f"{platform.machine()}, {os.cpu_count()} CPU cores (shared), {platform.python_version()}"


def run_cell(name: str, components: tuple, seed: int, args) -> dict:
    rows, names = sample(name, args.rows)
    labels, flipped = flip(rows, names, args.flip, seed)
    started = time.perf_counter()
    checked, label_set = checked_rows([r["text"] for r in rows], labels, names)
    probs = out_of_fold_probabilities(checked, label_set, components, seed=seed, progress=True)
    seconds = time.perf_counter() - started
    by_filter = {}
    for rule in FILTERS:
        ranked = label_issues(checked, label_set, probs, filter_by=rule)["row"].tolist()
        found = set(ranked) & flipped
        by_filter[rule] = {
            "flagged": len(ranked),
            "found": len(found),
            "precision": len(found) / len(ranked) if ranked else None,
            "recall": len(found) / len(flipped),
        }
    suspicion = np.argsort(probs[np.arange(len(checked)), [label_set.index(r["label"]) for r in checked]])
    return {
        "data": name,
        "components": "+".join(components),
        "seed": seed,
        "rows": len(rows),
        "flipped": len(flipped),
        "by_filter": by_filter,
        # Of the len(flipped) rows with the lowest probability of their label, how many were flipped.
        "precision_at_flipped": len(set(suspicion[: len(flipped)].tolist()) & flipped) / len(flipped),
        "accuracy_on_true_labels": float(
            np.mean([label_set.names[k] == r["label"] for k, r in zip(probs.argmax(1), rows)])
        ),
        "folds": FOLDS,
        "seconds": round(seconds, 1),
        "machine": machine(),
        "date": datetime.date.today().isoformat(),
    }


def table(cells: list[dict], rules: tuple = FILTERS) -> str:
    """Mean ± standard deviation over the seeds, per data set, components and cleanlab rule."""
    keys = sorted({(c["data"], c["components"]) for c in cells}, key=lambda k: (DATA.index(k[0]), k[1]))
    lines = [
        "| data | components | filter_by | seeds | rows | flipped | flagged | precision | recall | precision at "
        "40 | model accuracy | s |",
        "|---|---|---|---|---|---|---|---|---|---|---|---|",
    ]

    def show(values) -> str:
        values = [v for v in values if v is not None]
        return f"{np.mean(values):.3f} ± {np.std(values):.3f}" if values else "–"

    for data, components in keys:
        group = [c for c in cells if c["data"] == data and c["components"] == components]
        for rule in rules:
            results = [c["by_filter"][rule] for c in group]
            default = " (default)" if rule == FILTER_BY and components == "+".join(DEFAULT_COMPONENTS) else ""
            lines.append(
                f"| {data} | {components} | {rule}{default} | {len(group)} | {group[0]['rows']} | {group[0]['flipped']} "
                f"| {np.mean([r['flagged'] for r in results]):.1f} | {show(r['precision'] for r in results)} "
                f"| {show(r['recall'] for r in results)} | {show(c['precision_at_flipped'] for c in group)} "
                f"| {show(c['accuracy_on_true_labels'] for c in group)} | {np.mean([c['seconds'] for c in group]):.0f} |"
            )
    return "\n".join(lines)


def read_cells(folder: Path) -> list[dict]:
    return [json.loads(p.read_text()) for p in sorted(folder.glob("*.json"))]


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--data", default=",".join(DATA))
    parser.add_argument("--seeds", default="0,1,2")
    parser.add_argument("--rows", type=int, default=400)
    parser.add_argument("--flip", type=int, default=40)
    parser.add_argument("--components", default=",".join(DEFAULT_COMPONENTS), help="the audit's components")
    parser.add_argument("--out", type=Path, default=OUT)
    parser.add_argument("--table-only", action="store_true")
    args = parser.parse_args()
    components = tuple(args.components.split(","))
    if not args.table_only:
        args.out.mkdir(parents=True, exist_ok=True)
        for name in args.data.split(","):
            for seed in map(int, args.seeds.split(",")):
                path = args.out / f"{name}-{'+'.join(components)}-{seed}.json"
                if path.exists():
                    continue
                cell = run_cell(name, components, seed, args)
                path.write_text(json.dumps(cell, indent=2) + "\n")
                print(json.dumps(cell), file=sys.stderr)
    print(table(read_cells(args.out)))
    return 0


if __name__ == "__main__":
    sys.exit(main())
