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

Every set's model is the default as it is, within its default time budget of 100 s (the models table says what
each chose and what the budget cut); `--without-setfit` trains the default's other components only.

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
from pathlib import Path

import numpy as np
from _common import ROOT
from _datasets import load

from promptclf.core import trust
from promptclf.core.labels import LabelSet
from promptclf.task.examples import sample_per_class

SETS = ("sms_spam", "trec", "ag_news", "imdb")  # fastest to train first
OUT = ROOT / "benchmarks" / "results" / "trust"
PER_CLASS = 8
POOL = 1200
UNLABELED = 800
VALIDATION = 200
DRAWS = 20
HOLDING_DRAWS = 2000  # the interval's holding rate again over this many draws: 20 cannot tell 88% from 93%
TARGETS = (0.90, 0.95)
RISK = 0.1
DIAGRAMS = ROOT / "docs" / "assets" / "trust"
MACHINE = "2 shared CPU cores (x86_64), no GPU"


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


def trained_probabilities(name: str, retrain: bool = False, without_setfit: bool = False) -> dict:
    """The offline model's probabilities on the pool, trained once and kept as JSON. `without_setfit`: the
    default's other components only (SetFit's folds are most of the training time)."""
    path = OUT / "probabilities" / f"{name}.json"
    if path.exists() and not retrain:
        return json.loads(path.read_text())
    from promptclf.methods.offline import SELF_TRAINED, OfflineClassifier, OfflineConfig

    labels, examples, pool, unlabeled = pool_rows(name)
    print(f"{name}: training the offline model on {len(examples)} examples", file=sys.stderr)
    started = time.perf_counter()
    config = OfflineConfig(components=("labels", "examples", SELF_TRAINED)) if without_setfit else None
    model = OfflineClassifier(labels, examples, config=config, progress=True, unlabeled=unlabeled).fit()
    trained = time.perf_counter() - started
    probs = model.probabilities([r["text"] for r in pool])
    kept = {
        "data": name,
        "labels": list(labels.names),
        "gold": [labels.index(r["label"]) for r in pool],
        "probabilities": np.round(probs, 6).tolist(),
        "estimate": model.estimate.describe(),
        "components": "default without SetFit" if without_setfit else "default",
        "train_s": round(trained, 1),
        "label_s": round(time.perf_counter() - started - trained, 1),
        "machine": f"{platform.machine()}, {platform.processor() or 'cpu'}, 2 cores",
    }
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(kept))
    print(f"{name}: trained in {trained:.0f} s, wrote {path}", file=sys.stderr)
    return kept


# --- the draws ---------------------------------------------------------------------------------------------


def arrays(kept: dict) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    probs = np.array(kept["probabilities"])
    probs /= probs.sum(axis=1, keepdims=True)
    gold = np.array(kept["gold"])
    return probs, gold, probs.max(axis=1), probs.argmax(axis=1) == gold


def split(n: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """Draw `seed`'s validation rows (VALIDATION of the n pool rows) and its test rows (the others)."""
    order = np.random.default_rng(seed).permutation(n)
    return order[:VALIDATION], order[VALIDATION:]


def naive_threshold(confidence: np.ndarray, right: np.ndarray, target: float) -> float | None:
    """The rule without a guarantee: the lowest threshold whose accepted validation rows' accuracy (the point
    estimate) reaches the target."""
    values, accepted, correct = trust._ranked(confidence, right)
    ok = np.flatnonzero(correct / accepted >= target)
    return float(values[ok[-1]]) if len(ok) else None


def oracle_coverage(confidence: np.ndarray, right: np.ndarray, target: float) -> float:
    """The share the best threshold chosen on the test rows themselves accepts."""
    threshold = naive_threshold(confidence, right, target)
    return 0.0 if threshold is None else float(np.mean(confidence >= threshold))


def on_test(threshold: float | None, confidence: np.ndarray, right: np.ndarray, target: float) -> dict:
    """Coverage on the test rows, and whether the accepted rows missed the target (clearly: their one-sided 95%
    Clopper-Pearson upper bound is below it)."""
    if threshold is None:
        return {"coverage": 0.0, "miss": False, "clear_miss": False}
    accepted = confidence >= threshold
    n, k = int(accepted.sum()), int(right[accepted].sum())
    return {
        "coverage": n / len(confidence),
        "miss": n > 0 and k / n < target,
        "clear_miss": n > 0 and float(trust.upper_bound(k, n, 0.05)) < target,
    }


def run_draws(kept: dict) -> dict:
    """Every draw's validation estimate, calibration and thresholds, scored on its test rows."""
    probs, gold, confidence, right = arrays(kept)
    draws = []
    for seed in range(DRAWS):
        val, test = split(len(gold), seed)
        low, high = trust.accuracy_interval(int(right[val].sum()), len(val))
        calibration = trust.fit_calibration(confidence[val], right[val], probs[val], gold[val])
        isotonic = trust.fit_calibration(confidence[val], right[val], isotonic_from=0)
        platt = trust.fit_calibration(confidence[val], right[val])
        after = calibration.many(confidence[test], probs[test])
        draw = {
            "seed": seed,
            "val_accuracy": float(right[val].mean()),
            "test_accuracy": float(right[test].mean()),
            "low": low,
            "high": high,
            "temperature": calibration.temperature,
            "ece_before": trust.expected_calibration_error(confidence[test], right[test]),
            "ece_after": trust.expected_calibration_error(after, right[test]),
            "ece_isotonic": trust.expected_calibration_error(isotonic.many(confidence[test]), right[test]),
            "ece_platt": trust.expected_calibration_error(platt.many(confidence[test]), right[test]),
            "ece_perfect": trust.perfectly_calibrated_ece(after, seed=seed),
        }
        for target in TARGETS:
            rules = {
                search: trust.accept_threshold(confidence[val], right[val], target, RISK, search=search).threshold
                for search in trust.SEARCHES
            }
            rules["fixed-sequence from fewest_to_certify"] = trust.accept_threshold(
                confidence[val], right[val], target, RISK, first=trust.fewest_to_certify(target, RISK)
            ).threshold
            rules["naive"] = naive_threshold(confidence[val], right[val], target)
            for rule, threshold in rules.items():
                draw[f"{target}/{rule}"] = on_test(threshold, confidence[test], right[test], target)
            draw[f"{target}/oracle"] = oracle_coverage(confidence[test], right[test], target)
        draws.append(draw)
    return {"data": kept["data"], "draws": draws, "kept": kept, "holding": holding_rate(right)}


# --- the tables ----------------------------------------------------------------------------------------------


def guarantee_table(results: list[dict]) -> str:
    lines = [
        f"Auto-accept at risk {RISK}: {DRAWS} draws of a {VALIDATION}-row validation sample, the other rows of "
        f"the {POOL}-row pool as test rows.",
        "clear misses: draws whose accepted test rows' one-sided 95% Clopper-Pearson upper bound is below the "
        "target (goal <= 2 of 20); misses: their accuracy is below it; coverage: share of test rows accepted "
        "(mean over draws); oracle: the best threshold chosen on the test rows themselves. fixed-sequence starts at "
        "first_tested accepted rows, the other fixed sequence at fewest_to_certify; naive: the lowest threshold "
        "whose validation rows' point accuracy reaches the target.",
        "",
        "| data | target | rule | clear misses | misses | coverage | oracle coverage |",
        "|---|---|---|---|---|---|---|",
    ]
    for result in results:
        for target in TARGETS:
            oracle = np.mean([d[f"{target}/oracle"] for d in result["draws"]])
            for rule in (*trust.SEARCHES, "fixed-sequence from fewest_to_certify", "naive"):
                scored = [d[f"{target}/{rule}"] for d in result["draws"]]
                name = f"{rule} (kept)" if rule == trust.DEFAULT_SEARCH else rule
                lines.append(
                    f"| {result['data']} | {target:.2f} | {name} | {sum(s['clear_miss'] for s in scored)} | "
                    f"{sum(s['miss'] for s in scored)} | {np.mean([s['coverage'] for s in scored]):.3f} | "
                    f"{oracle:.3f} |"
                )
    return "\n".join(lines) + "\n"


def calibration_table(results: list[dict]) -> str:
    lines = [
        f"Expected calibration error ({trust.ECE_BINS} bins) on the test rows of each draw (mean, max over "
        f"{DRAWS} draws), calibration fitted on the {VALIDATION} validation rows. Goal: mean after <= 0.05, every "
        "set <= 0.08. perfect: the ECE a perfectly calibrated model shows on as many rows (simulated, 200 times "
        "per draw); isotonic and Platt: the top confidence's alternatives on the same 200 rows (promptclf uses "
        f"temperature scaling below {trust.ISOTONIC_FROM} rows).",
        "",
        "| data | before | after: temperature (mean, max) | perfect | isotonic at 200 rows | Platt at 200 rows | T |",
        "|---|---|---|---|---|---|---|",
    ]
    for result in results:
        draws = result["draws"]
        mean = lambda key, draws=draws: np.mean([d[key] for d in draws])  # noqa: E731
        lines.append(
            f"| {result['data']} | {mean('ece_before'):.3f} | {mean('ece_after'):.3f}, "
            f"{max(d['ece_after'] for d in draws):.3f} | {mean('ece_perfect'):.3f} | {mean('ece_isotonic'):.3f} | "
            f"{mean('ece_platt'):.3f} | {mean('temperature'):.2f} |"
        )
    return "\n".join(lines) + "\n"


def interval_table(results: list[dict]) -> str:
    lines = [
        "The estimated accuracy: the validation rows' 95% Wilson interval (statsmodels proportion_confint), and "
        "how often it held the test rows' accuracy (nominal 95%; the test rows add their own noise: an interval "
        f"for the rate itself holds the accuracy of {POOL - VALIDATION} other rows about "
        f"{expected_holding():.1%} of the time). The last column draws {HOLDING_DRAWS} validation samples "
        f"(seeds 0-{HOLDING_DRAWS - 1}) from the same pool: {DRAWS} draws alone cannot tell that rate from 88%.",
        "",
        f"| data | test accuracy (mean) | validation accuracy (mean) | interval width (mean) | holds | holds in "
        f"{HOLDING_DRAWS} draws |",
        "|---|---|---|---|---|---|",
    ]
    for result in results:
        draws = result["draws"]
        holds = sum(d["low"] <= d["test_accuracy"] <= d["high"] for d in draws)
        lines.append(
            f"| {result['data']} | {np.mean([d['test_accuracy'] for d in draws]):.3f} | "
            f"{np.mean([d['val_accuracy'] for d in draws]):.3f} | "
            f"{np.mean([d['high'] - d['low'] for d in draws]):.3f} | {holds} of {len(draws)} | "
            f"{result['holding']:.1%} |"
        )
    return "\n".join(lines) + "\n"


def holding_rate(right: np.ndarray, draws: int = HOLDING_DRAWS) -> float:
    """The share of `draws` seeded validation samples whose 95% interval holds the other rows' accuracy."""
    held = 0
    for seed in range(draws):
        val, test = split(len(right), seed)
        low, high = trust.accuracy_interval(int(right[val].sum()), len(val))
        held += low <= right[test].mean() <= high
    return held / draws


def expected_holding() -> float:
    """How often a 95% interval on the validation rows' accuracy holds the test rows' accuracy when both are
    samples of one rate: their difference has the variance of both samples, the interval's width only one's."""
    from scipy.stats import norm

    return float(2 * norm.cdf(1.96 / np.sqrt(1 + VALIDATION / (POOL - VALIDATION))) - 1)


def models_table(results: list[dict]) -> str:
    lines = [
        f"The offline models ({PER_CLASS} examples a class, seed 0), trained once per set on {MACHINE}.",
        "",
        "| data | components | pool rows | what it chose | training s |",
        "|---|---|---|---|---|",
    ]
    for result in results:
        kept = result["kept"]
        components = kept.get("components", "default")
        lines.append(
            f"| {kept['data']} | {components} | {len(kept['gold'])} | {kept['estimate']} | {kept['train_s']:.0f} |"
        )
    return "\n".join(lines) + "\n"


def diagram(result: dict) -> Path:
    """Draw 0's reliability diagram on its test rows, before and after calibration."""
    from promptclf.core.reliability_plot import write_reliability_diagram

    probs, gold, confidence, right = arrays(result["kept"])
    val, test = split(len(gold), 0)
    assessment = trust.assess(list(confidence[test]), right[test], probs[test], gold[test])
    calibration = trust.fit_calibration(confidence[val], right[val], probs[val], gold[val])
    assessment.calibration = calibration
    assessment.confidence_after = calibration.many(confidence[test], probs[test])
    assessment.ece_after = trust.expected_calibration_error(assessment.confidence_after, right[test])
    path = DIAGRAMS / f"{result['data']}.png"
    return write_reliability_diagram(assessment, path, title=f"{result['data']}: test rows of draw 0")


def write_tables(results: list[dict]) -> None:
    for name, table in (
        ("guarantee", guarantee_table),
        ("calibration", calibration_table),
        ("interval", interval_table),
        ("models", models_table),
    ):
        text = table(results)
        (OUT / f"{name}.txt").write_text(text)
        print(text)
    for result in results:
        print(f"wrote {diagram(result)}", file=sys.stderr)


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", default=",".join(SETS))
    parser.add_argument("--retrain", action="store_true")
    parser.add_argument(
        "--without-setfit", action="store_true", help="train the default's components but SetFit (much faster)"
    )
    parser.add_argument("--train-only", action="store_true")
    parser.add_argument("--tables-only", action="store_true")
    args = parser.parse_args(argv)
    names = [n for n in args.data.split(",") if n]
    kept = {}
    for name in names:
        path = OUT / "probabilities" / f"{name}.json"
        if args.tables_only and not path.exists():
            continue
        kept[name] = trained_probabilities(name, args.retrain, args.without_setfit)
    if args.train_only:
        return 0
    write_tables([run_draws(kept[name]) for name in SETS if name in kept])
    return 0


if __name__ == "__main__":
    sys.exit(main())
