"""The offline default within its time budget: the two first runs issue 27 set targets for, timed end to end from
an empty PROMPTCLF_HOME, each in a fresh process; and (--costs) the cost model's constants.

- `agnews`: `classify(texts, labels, examples=...)` on 100 AG News rows (the first 100 test rows of the seed-0
  split, benchmarks/_common.py) with 8 examples a class drawn from the train pool with seed 0. Target: 3 minutes.
- `imdb`: `cross_val_score(PromptClassifier(), X, y, cv=5)` on 150 IMDb reviews (a seed-0 sample of
  shared/data/imdb/train.csv, `<br />` removed as in benchmarks/_datasets.py). Target: 10 minutes.

Each run records its wall time, its CPU time (all threads; on a shared machine the CPU time / 2 is closer to what
2 quiet cores would take), the load average (uptime) before and after, the code it ran (`--code DIR`: another
checkout, e.g. the commit before the budget, for a side-by-side in the same run) and what the run report said.
Results: benchmarks/results/offline_budget/, one JSON file per run.

    python benchmarks/offline_budget.py agnews imdb                       # this checkout
    python benchmarks/offline_budget.py agnews --code /tmp/before --label before
    python benchmarks/offline_budget.py --costs ag_news imdb              # per-token costs, measured now
    python benchmarks/offline_budget.py --fit-costs     # SetFit's per-token cost fitted to few_labels' CV times
    python benchmarks/offline_budget.py --few-labels plan                 # which few_labels cells the budget cuts
    python benchmarks/offline_budget.py --few-labels imdb-64-0,trec-32-1   # those cells, trained as the default
    python benchmarks/offline_budget.py --few-labels sample:6             # 6 of the cut cells, drawn with seed 0
    python benchmarks/offline_budget.py --few-labels replay       # the choice on every cell's kept CV, no training

`--few-labels`: the cells of benchmarks/few_labels.py (the same examples, the same 800 texts passed as
`unlabeled`, the same first 200 test rows scored) trained by the offline default as classify() runs it, within
the default budget, next to the accuracy of the automatic choice kept for the cell in
benchmarks/results/few_labels/ (trained without a budget). A cell the budget cuts nothing in trains exactly as
before (the same identity), so only the cut cells are run.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import resource
import subprocess
import sys
import tempfile
import time
from datetime import datetime, timezone
from pathlib import Path

if os.environ.get("PROMPTCLF_CODE"):  # a child timing another checkout: promptclf from there (its submodules follow
    sys.path.insert(0, os.environ["PROMPTCLF_CODE"])  # the package's own path), before _common puts this one first
    import promptclf  # noqa: F401

from _common import ROOT  # noqa: E402

OUT = ROOT / "benchmarks" / "results" / "offline_budget"
TARGETS = {"agnews": 180, "imdb": 600}  # seconds, from the issue


def agnews() -> dict:
    from _common import ag_split

    from promptclf import Classifier
    from promptclf.core.labels import LabelSet
    from promptclf.task.examples import sample_per_class

    pool, _, test = ag_split()
    labels = ["World", "Sports", "Business", "Sci/Tech"]
    examples = sample_per_class(pool, LabelSet.of(labels), 8, seed=0)
    rows = test[:100]
    texts = [r["text"] for r in rows]
    clf = Classifier(labels, examples=examples, unlabeled=texts, progress=False)  # as classify() builds it
    predicted = clf.classify(texts)
    accuracy = sum(p == r["label"] for p, r in zip(predicted, rows)) / len(rows)
    return {"accuracy": accuracy, "report": clf.report.estimate}


def imdb_rows(n: int = 150) -> list[dict]:
    import numpy as np
    from _datasets import SHARED, _csv

    train = _csv(SHARED / "imdb" / "train.csv")
    return [train[i] for i in np.random.default_rng(0).permutation(len(train))[:n]]


def imdb() -> dict:
    import numpy as np
    from sklearn.model_selection import cross_val_score

    from promptclf.sklearn import PromptClassifier

    rows = imdb_rows()
    scores = cross_val_score(PromptClassifier(), [r["text"] for r in rows], [r["label"] for r in rows], cv=5)
    return {"accuracy": float(np.mean(scores)), "folds": [float(s) for s in scores]}


def run_here(target: str) -> None:
    """The target in this process (its parent times it): the result as one JSON line on stdout."""
    import promptclf

    result = {"agnews": agnews, "imdb": imdb}[target]()
    print(json.dumps({**result, "promptclf": str(Path(promptclf.__file__).parent.parent)}))


FEW_LABELS = ROOT / "benchmarks" / "results" / "few_labels"


def few_label_cells() -> list[dict]:
    """The kept cells, their automatic choice by today's rule (few_labels.refresh, as its table shows them)."""
    from few_labels import refresh

    return [refresh(json.loads(p.read_text())) for p in sorted(FEW_LABELS.glob("*.json"))]


def cell_name(cell: dict) -> str:
    return f"{cell['data']}-{cell['budget']}-{cell['seed']}"


def budget_plan(cell: dict):
    """The default's plan for a few_labels cell, as OfflineClassifier makes it (nothing trained)."""
    from few_labels import cell_data

    from promptclf.methods.offline import OfflineClassifier

    labels, _, texts, examples = cell_data(cell["data"], cell["budget"], cell["seed"], cell["n_test"])
    return OfflineClassifier(labels, examples, unlabeled=texts).plan


def few_labels_cell(name: str) -> dict:
    """One cell trained by the default within its budget, from an empty PROMPTCLF_HOME."""
    from few_labels import cell_data

    from promptclf import Classifier

    cell = next(c for c in few_label_cells() if cell_name(c) == name)
    labels, test, texts, examples = cell_data(cell["data"], cell["budget"], cell["seed"], cell["n_test"])
    with tempfile.TemporaryDirectory() as home:
        os.environ["PROMPTCLF_HOME"] = home
        clf = Classifier(labels.names, examples=examples, unlabeled=texts, cache=False, progress=False)
        started, cpu = time.perf_counter(), time.process_time()
        clf.method.fit()
        trained, trained_cpu = time.perf_counter() - started, time.process_time() - cpu
        predicted = clf.classify([r["text"] for r in test])
    return {
        "cell": name,
        "before": cell["accuracy"]["auto"],
        "before_chosen": cell["auto"],
        "after": sum(p == r["label"] for p, r in zip(predicted, test)) / len(test),
        "after_chosen": clf.method.estimate.chosen,
        "report": clf.method.estimate.describe(),
        "train_wall_s": round(trained, 1),
        "train_cpu_s": round(trained_cpu, 1),
        "load": load(),
        "date": datetime.now(timezone.utc).strftime("%Y-%m-%d %H:%M UTC"),
    }


def fit_costs() -> dict:
    """SetFit's cost per token of a training step (a constant and a part that grows with the padded length: the
    attention), fitted (least squares, non-negative, no intercept) to the cross-validation times
    benchmarks/few_labels.py recorded for its cells with 8+ examples a class (3 SetFit trainings each, every
    component cross-validated, wall seconds), and each cell's recorded / fitted time."""
    import math

    import numpy as np
    from few_labels import cell_data
    from scipy.optimize import nnls

    from promptclf.methods.offline import OfflineClassifier

    names, seconds, features = [], [], []
    for cell in few_label_cells():
        if "cv_seconds" not in cell or cell["budget"] < 8:
            continue
        labels, _, texts, examples = cell_data(cell["data"], cell["budget"], cell["seed"], cell["n_test"])
        work = OfflineClassifier(labels, examples, unlabeled=texts)._setfit_work()
        steps = sum(math.ceil(work.pairs(n, None) / work.config.batch_size) for n, _ in work.folds)
        token_steps = steps * 2 * work.config.batch_size * work.padded_tokens()
        names.append(cell_name(cell))
        seconds.append(cell["cv_seconds"])
        features.append([token_steps, token_steps * work.padded_tokens()])
    x, y = np.array(features), np.array(seconds)
    (per_token, per_token_per_length), _ = nnls(x, y)
    ratios = y / (x @ [per_token, per_token_per_length])
    by_set: dict[str, list] = {}
    for name, ratio in zip(names, ratios):
        by_set.setdefault(name.rsplit("-", 2)[0], []).append(float(ratio))
    return {
        "setfit_s_per_token": per_token,
        "setfit_s_per_token_per_length": per_token_per_length,
        "cells": len(names),
        "recorded/fitted": {"min": ratios.min(), "median": float(np.median(ratios)), "max": ratios.max()},
        "median by data set": {k: float(np.median(v)) for k, v in by_set.items()},
        "by_cell": {n: round(float(r), 2) for n, r in zip(names, ratios)},
    }


def replay(cell: dict, found) -> dict:
    """The automatic choice the budget's plan makes on a cell's kept cross-validation, without training: exact
    where SetFit is cut to fewer folds (its fold models on those folds are the ones kept) or left out and not
    chosen; where SetFit is chosen on fewer folds its test accuracy is that of the kept average of three fold
    models (its own average of fewer is not kept: `approximate`); where its pairs are cut, unknown."""
    import numpy as np

    from promptclf.methods.offline import OfflineConfig, fold_accuracy, margin_for, pick, priors_for

    # The other components' accuracies as few_labels' own replay takes them (candidates_cv: a refreshed cell's
    # self-trained component has no out-of-fold probabilities of today's), SetFit's on the folds it keeps.
    y = np.array(cell["y_examples"])
    means = {n: v for n, v in cell["candidates_cv"].items() if n not in ("setfit", "combination")}
    if "setfit" in cell["oof"] and not found.skip_setfit:
        kept = cell["folds"][: found.setfit_folds or len(cell["folds"])]
        means["setfit"] = float(np.mean([fold_accuracy(np.array(cell["oof"]["setfit"]), y, test) for test in kept]))
    chosen = pick(means, margin_for(OfflineConfig(), len(y)), priors_for(y))
    how = "exact"
    if chosen == "setfit" and found.setfit_pairs:
        how = "unknown"
    elif chosen == "setfit" and found.setfit_folds:
        how = "approximate"
    return {
        "cell": cell_name(cell),
        "cut": found.describe(),
        "before_chosen": cell["auto"],
        "before": cell["accuracy"]["auto"],
        "after_chosen": chosen,
        "after": None if how == "unknown" else cell["accuracy"][chosen],
        "how": how,
    }


def load() -> str:
    return " ".join(f"{x:.2f}" for x in os.getloadavg())


def commit(code: Path) -> str:
    found = subprocess.run(["git", "rev-parse", "--short", "HEAD"], cwd=code, capture_output=True, text=True)
    dirty = subprocess.run(["git", "status", "--porcelain", "promptclf"], cwd=code, capture_output=True, text=True)
    return found.stdout.strip() + ("+changes" if dirty.stdout.strip() else "")


def timed(target: str, code: Path, label: str, timeout: float | None = None) -> dict:
    """The target in a fresh process, with `code` first on its path and an empty PROMPTCLF_HOME."""
    with tempfile.TemporaryDirectory() as home:
        env = {**os.environ, "PYTHONPATH": str(code), "PROMPTCLF_CODE": str(code), "PROMPTCLF_HOME": home}
        before, started = load(), time.perf_counter()
        cpu = resource.getrusage(resource.RUSAGE_CHILDREN)
        try:
            done = subprocess.run(
                [sys.executable, __file__, "--run-here", target],
                env=env,
                capture_output=True,
                text=True,
                check=False,
                timeout=timeout,
            )
            outcome = json.loads(done.stdout.strip().splitlines()[-1]) if done.returncode == 0 else None
        except subprocess.TimeoutExpired:
            done, outcome = None, {"accuracy": None, "report": f"stopped after {timeout:.0f}s: did not finish"}
        wall = time.perf_counter() - started
        used = resource.getrusage(resource.RUSAGE_CHILDREN)
    if outcome is None:
        raise SystemExit(f"{target} with {code} failed:\n{done.stderr[-3000:]}")
    return {
        "target": target,
        "label": label,
        "code": commit(code),
        "wall_s": round(wall, 1),
        "cpu_s": round(used.ru_utime + used.ru_stime - cpu.ru_utime - cpu.ru_stime, 1),
        "target_s": TARGETS[target],
        "load_before": before,
        "load_after": load(),
        "machine": f"{platform.machine()}, {os.cpu_count()} CPU cores, shared",
        "date": datetime.now(timezone.utc).strftime("%Y-%m-%d %H:%M UTC"),
        **outcome,
    }


def costs(name: str, threads: int) -> dict:
    """Per-token costs of the encoder's forward pass and of a SetFit step, in CPU seconds / threads and wall
    seconds, and SetFit's cost per training: two trainings of different sizes on the same 8 examples a class, the
    step cost their difference. On a shared machine the CPU time is what counts: with 2 threads it also holds
    the time one thread spins waiting for the other, so measure with --threads 1 too."""
    import numpy as np
    import torch

    torch.set_num_threads(threads)
    from _datasets import load as load_set

    from promptclf.core.labels import LabelSet
    from promptclf.methods.embeddings import Encoder
    from promptclf.methods.setfit import train_setfit
    from promptclf.task.examples import sample_per_class

    def clock():
        return time.process_time(), time.perf_counter()

    def since(start):
        cpu, wall = clock()
        return (cpu - start[0]) / torch.get_num_threads(), wall - start[1]

    pool, test, names = load_set(name)
    encoder = Encoder()
    texts = [r["text"] for r in test[:128]]
    lengths = [len(encoder.tokenizer(t, truncation=True, max_length=256)["input_ids"]) for t in texts]
    whole = [len(encoder.tokenizer(t)["input_ids"]) for t in texts]
    encoder.encode(texts[:8])
    start = clock()
    encoder.encode(texts)
    encode_cpu, encode_wall = since(start)
    examples = sample_per_class(pool, LabelSet.of(names), 8, seed=0)
    example_tokens = [len(encoder.tokenizer(r["text"], truncation=True, max_length=256)["input_ids"]) for r in examples]
    seconds = {}
    for pairs in (32, 96):
        start = clock()
        train_setfit(examples, names, min_pairs=pairs, max_pairs=pairs, iterations=1)
        seconds[pairs] = since(start)
    padded = float(np.quantile(example_tokens, 1 - 1 / 17))
    step_tokens = (96 - 32) * 2 * padded  # tokens the extra 64 pairs (4 steps) ran
    return {
        "data": name,
        "chars_per_token": sum(len(t) for t in texts) / sum(whole),
        "encode_us_per_token": {
            "cpu/threads": 1e6 * encode_cpu / sum(lengths),
            "wall": 1e6 * encode_wall / sum(lengths),
        },
        "setfit_us_per_token": {
            kind: 1e6 * (seconds[96][i] - seconds[32][i]) / step_tokens
            for i, kind in enumerate(("cpu/threads", "wall"))
        },
        "setfit_32_pairs_s": {"cpu/threads": seconds[32][0], "wall": seconds[32][1]},
        "padded_tokens": padded,
        "threads": torch.get_num_threads(),
        "load": load(),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("targets", nargs="*", help="agnews, imdb; with --costs: data sets (ag_news, imdb, ...)")
    parser.add_argument("--code", type=Path, default=ROOT, help="the checkout to time (default: this one)")
    parser.add_argument("--label", default="after", help="what the checkout is, in the result file")
    parser.add_argument("--timeout", type=float, help="stop a run after this many seconds (recorded as unfinished)")
    parser.add_argument("--fit-costs", action="store_true", help="fit SetFit's per-token cost to few_labels' times")
    parser.add_argument("--costs", action="store_true", help="measure the cost model's constants instead")
    parser.add_argument("--threads", type=int, default=2, help="--costs: torch threads (default 2)")
    parser.add_argument(
        "--few-labels",
        help="plan: the few_labels cells the budget cuts; cells to run (a,b,...); sample:N of the cut ones",
    )
    parser.add_argument("--run-here", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.run_here:
        return run_here(args.run_here)
    if args.few_labels == "plan":
        for cell in few_label_cells():
            if cell["budget"]:
                found = budget_plan(cell)
                print(f"{cell_name(cell)}\t{found.uncut:.0f}s\t{found.describe() or '-'}", flush=True)
        return None
    if args.few_labels == "replay":
        OUT.mkdir(parents=True, exist_ok=True)
        replayed = [replay(c, budget_plan(c)) for c in few_label_cells() if "oof" in c]
        (OUT / "few_labels-replay.json").write_text(json.dumps(replayed, indent=1) + "\n")
        for r in replayed:
            print(json.dumps(r), flush=True)
        return None
    if args.few_labels:
        OUT.mkdir(parents=True, exist_ok=True)
        names = args.few_labels.split(",")
        if args.few_labels.startswith("sample:"):  # a seed-0 sample of the cells the budget cuts
            import numpy as np

            cut = [cell_name(c) for c in few_label_cells() if c["budget"] and budget_plan(c).cut]
            names = sorted(np.random.default_rng(0).choice(cut, int(args.few_labels[7:]), replace=False))
        for name in names:
            result = few_labels_cell(name)
            (OUT / f"few_labels-{name}.json").write_text(json.dumps(result, indent=2) + "\n")
            print(json.dumps(result), flush=True)
        return None
    if args.fit_costs:
        print(json.dumps(fit_costs()))
        return None
    if args.costs:
        OUT.mkdir(parents=True, exist_ok=True)
        for name in args.targets or ["ag_news", "imdb"]:
            measured = {**costs(name, args.threads), "date": datetime.now(timezone.utc).strftime("%Y-%m-%d %H:%M UTC")}
            with open(OUT / f"costs-{measured['date'][:10]}.jsonl", "a") as out:
                out.write(json.dumps(measured) + "\n")
            print(json.dumps(measured), flush=True)
        return None
    OUT.mkdir(parents=True, exist_ok=True)
    for target in args.targets or list(TARGETS):
        result = timed(target, args.code.resolve(), args.label, args.timeout)
        stamp = result["date"][:10]
        (OUT / f"{stamp}-{target}-{args.label}.json").write_text(json.dumps(result, indent=2) + "\n")
        print(json.dumps(result), flush=True)
    return None


if __name__ == "__main__":
    main()
