"""Labels you can trust (issue 27): the validation sample's estimate, calibration and auto-accept with a
guarantee, measured on every shared single-label data set.

Per data set, one offline model (the default, promptclf.methods.offline.OfflineClassifier) is trained ONCE on 8
examples a class (drawn from the train pool with seed 0, promptclf.task.examples.sample_per_class) and
self-trained on the first 800 texts of the seeded test sample (as `classify` passes the texts it labels). It
labels a pool of 1,200 rows disjoint from the examples: the first 1,200 rows of the seed-0 permutation of the
test rows (TREC has 500 test rows: they and 700 train rows that are not examples, seed 0). Its per-label
probabilities are kept in results/trust/probabilities/<set>.json, so a rerun does not retrain (--retrain does).

Then 20 seeded draws (numpy default_rng(seed), seeds 0-19) each take a 200-row validation sample from the pool;
the other 1,000 rows are the test rows. On each draw: the estimated accuracy's 95% interval, calibration fitted
on the validation rows (ECE on the test rows before and after), and the auto-accept threshold for targets 0.90
and 0.95 at risk 0.1 (promptclf.core.trust), next to a naive threshold from the validation point estimate.

    python benchmarks/trust.py                       # train what is missing, then the tables
    python benchmarks/trust.py --data sms_spam,trec  # some sets
    python benchmarks/trust.py --tables-only         # from the kept probabilities only
"""

from __future__ import annotations

import argparse
import json
import platform
import sys
import time

import numpy as np
from _common import ROOT
from _datasets import load

from promptclf.core.labels import LabelSet
from promptclf.task.examples import sample_per_class

SETS = ("sms_spam", "trec", "ag_news", "imdb")  # fastest to train first
OUT = ROOT / "benchmarks" / "results" / "trust"
PER_CLASS = 8
POOL = 1200
UNLABELED = 800
VALIDATION = 200
DRAWS = 20
TARGETS = (0.90, 0.95)
RISK = 0.1


def pool_rows(name: str) -> tuple[LabelSet, list[dict], list[dict], list[str]]:
    """The set's labels, its examples, the pool of rows to label (disjoint from the examples) and the texts
    self-training learns from."""
    train, test, names = load(name)
    labels = LabelSet.of(names)
    examples = sample_per_class(train, labels, PER_CLASS, seed=0)
    ordered = [test[i] for i in np.random.default_rng(0).permutation(len(test))]
    if len(ordered) < POOL:
        taken = {r["text"] for r in examples}
        rest = [r for r in train if r["text"] not in taken]
        ordered += [rest[i] for i in np.random.default_rng(0).permutation(len(rest))[: POOL - len(ordered)]]
    pool = ordered[:POOL]
    return labels, examples, pool, [r["text"] for r in pool[:UNLABELED]]


def trained_probabilities(name: str, retrain: bool = False) -> dict:
    """The offline model's probabilities on the pool, trained once and kept as JSON."""
    path = OUT / "probabilities" / f"{name}.json"
    if path.exists() and not retrain:
        return json.loads(path.read_text())
    from promptclf.methods.offline import OfflineClassifier

    labels, examples, pool, unlabeled = pool_rows(name)
    print(f"{name}: training the offline model on {len(examples)} examples", file=sys.stderr)
    started = time.perf_counter()
    model = OfflineClassifier(labels, examples, progress=True, unlabeled=unlabeled).fit()
    trained = time.perf_counter() - started
    probs = model.probabilities([r["text"] for r in pool])
    kept = {
        "data": name,
        "labels": list(labels.names),
        "gold": [labels.index(r["label"]) for r in pool],
        "probabilities": np.round(probs, 6).tolist(),
        "estimate": model.estimate.describe(),
        "train_s": round(trained, 1),
        "label_s": round(time.perf_counter() - started - trained, 1),
        "machine": f"{platform.machine()}, {platform.processor() or 'cpu'}, 2 cores",
    }
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(kept))
    print(f"{name}: trained in {trained:.0f} s, wrote {path}", file=sys.stderr)
    return kept


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", default=",".join(SETS))
    parser.add_argument("--retrain", action="store_true")
    parser.add_argument("--train-only", action="store_true")
    parser.add_argument("--tables-only", action="store_true")
    args = parser.parse_args(argv)
    names = [n for n in args.data.split(",") if n]
    kept = {}
    for name in names:
        path = OUT / "probabilities" / f"{name}.json"
        if args.tables_only and not path.exists():
            continue
        kept[name] = trained_probabilities(name, args.retrain)
    if args.train_only:
        return 0
    return 0


if __name__ == "__main__":
    sys.exit(main())
