"""Few labels or none: every offline method, their combination and the automatic choice, on every shared
data set, with 0, 2, 8 and 64 examples per class, over seeds; mean and spread; plus the estimate
the automatic choice reports, next to its measured test accuracy.

Data (benchmarks/_datasets.py): AG News (pool = seed-0 rows 0-3,999, test = the last 3,000), TREC (its
train / test files), IMDb (train / test), SMS Spam (seeded stratified 70/30), GoEmotions Ekman (single-label
rows of train / test). Test rows: the same seeded sample of --n-test rows of each test set for every seed
and budget. Examples: --per-class rows of each label drawn from the pool with the seed
(promptclf.task.examples.sample_per_class). Each cell (data set, budget, seed) is stored in --out as JSON
(benchmarks/results/few_labels, kept in git) and skipped when present, so an interrupted run resumes; the table
is printed from whatever cells exist.

    python benchmarks/few_labels.py                      # everything (hours on 2 CPU cores)
    python benchmarks/few_labels.py --data ag_news,trec --budgets 0,8 --seeds 0
    python benchmarks/few_labels.py --table-only
    python benchmarks/few_labels.py --rules         # the automatic choice replayed under other rules, its
                                                    # misses, and how much of them the test rows' noise explains
    python benchmarks/few_labels.py --estimators    # ways to estimate the accuracy, 200 cheap runs
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import numpy as np
from _common import ROOT  # noqa: F401 - puts the repository on sys.path
from _datasets import NAMES, load

from promptclf.core.labels import LabelSet
from promptclf.methods.offline import (
    CALIBRATED,
    COMPONENTS,
    CONFIDENCE_WEIGHT,
    DEFAULT_WEIGHTS,
    ESTIMATE_BIAS,
    SELF_TRAINED,
    SETFIT_FIRST_FROM,
    SETFIT_FROM,
    WITH_EXAMPLES,
    ZERO_SHOT,
    ZERO_SHOT_WEIGHTS,
    Estimate,
    FoldAverage,
    OfflineConfig,
    SelfTrainedComponent,
    accuracy_interval,
    can_cross_validate,
    choose,
    combine,
    cross_validate,
    fewest_per_label,
    fold_accuracy,
    margin_for,
    pick,
    priors_for,
    with_confidence,
)
from promptclf.task.examples import sample_per_class

METHODS = ("llm", "labels", SELF_TRAINED, "examples", "setfit", "combination", "auto")
# The texts a user labels: the first UNLABELED rows of the seeded test sample, of which the first --n-test are
# scored. classify() passes them as the unlabelled texts the self-trained component learns from.
UNLABELED = 800


def test_sample(test: list[dict], n: int) -> list[dict]:
    order = np.random.default_rng(0).permutation(len(test))[:n]
    return [test[i] for i in order]


def cell_data(name: str, budget: int, seed: int, n_test: int) -> tuple[LabelSet, list[dict], list[str], list[dict]]:
    """A cell's labels, its n_test scored test rows, the texts a user labels (the first UNLABELED rows of the
    same seeded sample, so the scored rows are among them) and its examples (budget per class, drawn with the
    seed; none for budget 0)."""
    pool, test, label_names = load(name)
    labels = LabelSet.of(label_names)
    unlabeled = [r["text"] for r in test_sample(test, max(UNLABELED, n_test))]
    examples = sample_per_class(pool, labels, budget, seed) if budget else []
    return labels, test_sample(test, n_test), unlabeled, examples


def self_trained_cv(
    labels: LabelSet, unlabeled: list[str], examples: list[dict], seed: int
) -> tuple[float, np.ndarray]:
    """The self-trained component's cross-validated accuracy on the examples, as OfflineClassifier measures it,
    and its out-of-fold probabilities."""
    y = np.array([labels.index(r["label"]) for r in examples], dtype=int)
    config = OfflineConfig(seed=seed, choose=SELF_TRAINED)
    cv = cross_validate({SELF_TRAINED: SelfTrainedComponent(labels, config, unlabeled)}, examples, y, config, None)
    return choose(cv.oof, y, cv.folds, config).accuracy, cv.oof[SELF_TRAINED]


def run_cell(name: str, budget: int, seed: int, n_test: int, zero_shot_memo: dict) -> dict:
    labels, test, unlabeled, examples = cell_data(name, budget, seed, n_test)
    texts = [r["text"] for r in test]
    y_test = np.array([labels.index(r["label"]) for r in test])
    config = OfflineConfig(seed=seed)
    cell = {"data": name, "budget": budget, "seed": seed, "n_test": len(test), "n_examples": len(examples)}
    names = WITH_EXAMPLES + (SELF_TRAINED,) if examples else ZERO_SHOT

    def make(c):
        return (
            SelfTrainedComponent(labels, config, unlabeled)
            if c == SELF_TRAINED  # noqa: E731
            else COMPONENTS[c](labels, config)
        )

    accuracy = lambda p: float((p.argmax(1) == y_test).mean())  # noqa: E731
    fold_models: dict = {}
    y = np.array([labels.index(r["label"]) for r in examples], dtype=int)
    if can_cross_validate(y, len(labels)):
        started = time.perf_counter()
        oof, folds, fold_models, _ = cross_validate({c: make(c) for c in names}, examples, y, config, None)
        estimate = choose(oof, y, folds, OfflineConfig(seed=seed, choose="combination"))
        cell["cv_seconds"] = time.perf_counter() - started
        # so that another choice rule or weighting can be replayed without training again
        cell["oof"] = {c: p.round(5).tolist() for c, p in oof.items()}
        cell["y_examples"], cell["folds"] = y.tolist(), [test.tolist() for _, test in folds]
    probs, seconds = {}, {}
    for component in names:  # on the test rows, as OfflineClassifier labels them
        started = time.perf_counter()
        if component in fold_models:
            probs[component] = FoldAverage(fold_models[component]).probabilities(texts)
        elif component in zero_shot_memo and not (examples and COMPONENTS[component].trains):
            probs[component] = zero_shot_memo[component]
        else:
            probs[component] = make(component).fit(examples).probabilities(texts)
            if not examples or not COMPONENTS[component].trains:
                zero_shot_memo[component] = probs[component]
        seconds[component] = time.perf_counter() - started
    cell["seconds"] = seconds
    cell["accuracy"] = {c: accuracy(p) for c, p in probs.items()}
    if examples:
        add_confidence(cell, labels, unlabeled, examples)
    if "cv_seconds" in cell:
        cell["weights"] = estimate.weights
        cell["accuracy"]["combination"] = accuracy(combine(probs, estimate.weights))
        cell["candidates_cv"] = estimate.candidates
        cell["auto"] = auto = automatic_choice(cell)
        cell["accuracy"]["auto"] = cell["accuracy"][auto]
        cell["estimate"] = estimate_of(cell, auto)
    else:
        weights = {c: (DEFAULT_WEIGHTS if examples else ZERO_SHOT_WEIGHTS).get(c, 1.0) for c in names}
        cell["weights"] = weights
        cell["accuracy"]["combination"] = cell["accuracy"]["auto"] = accuracy(combine(probs, weights))
        cell["auto"] = "combination"
    if not examples:  # what classify(texts, labels) runs: the label similarity self-trained on the texts
        add_self_trained(cell, labels, unlabeled, y_test)
    cell["probs"] = {c: p.round(5).tolist() for c, p in probs.items()}  # for choosing default weights offline
    cell["y_test"] = y_test.tolist()
    return cell


def add_self_trained(cell: dict, labels: LabelSet, unlabeled: list[str], y_test: np.ndarray) -> dict:
    """The no-example default: self-trained on all the unlabelled texts, scored on the first n_test of them."""
    started = time.perf_counter()
    probs = SelfTrainedComponent(labels, OfflineConfig(), unlabeled).probabilities(unlabeled[: len(y_test)])
    cell["seconds"][SELF_TRAINED] = time.perf_counter() - started
    cell["accuracy"][SELF_TRAINED] = float((probs.argmax(1) == y_test).mean())
    cell["unlabeled"] = len(unlabeled)
    return cell


def with_new_self_trained(cell: dict) -> dict:
    """A cell stored by older code (--refresh-from) with only the self-trained component computed again: cross-
    validated on the same folds of the same examples and scored on the same test rows. The other components'
    code has not changed since. The combination needs SetFit's out-of-fold probabilities, which were not
    stored then, so it is left out of such a cell."""
    labels, test, unlabeled, examples = cell_data(cell["data"], cell["budget"], cell["seed"], cell["n_test"])
    started = time.perf_counter()
    cell["candidates_cv"][SELF_TRAINED] = self_trained_cv(labels, unlabeled, examples, cell["seed"])[0]
    cell["cv_seconds"] += time.perf_counter() - started
    started = time.perf_counter()
    probs = (
        SelfTrainedComponent(labels, OfflineConfig(seed=cell["seed"]), unlabeled)
        .fit(examples)
        .probabilities([r["text"] for r in test])
    )
    cell["seconds"][SELF_TRAINED] = time.perf_counter() - started
    cell["accuracy"][SELF_TRAINED] = float((probs.argmax(1) == np.array(cell["y_test"])).mean())
    cell["probs"][SELF_TRAINED] = probs.round(5).tolist()
    for stale in ("combination", "auto"):
        cell["accuracy"].pop(stale, None)
    cell["candidates_cv"].pop("combination", None)
    cell["refreshed"] = SELF_TRAINED
    return cell


def add_confidence(cell: dict, labels: LabelSet, unlabeled: list[str], examples: list[dict]) -> dict:
    """The self-trained component's mean confidence on all the unlabelled texts, for the estimate
    (offline.with_confidence), as OfflineClassifier computes it."""
    component = SelfTrainedComponent(labels, OfflineConfig(seed=cell["seed"]), unlabeled).fit(examples)
    cell["confidence"] = {SELF_TRAINED: float(component.probabilities(unlabeled).max(axis=1).mean())}
    cell["unlabeled"] = len(unlabeled)
    return cell


def estimate_of(cell: dict, chosen: str) -> float:
    """What the run report states: the cross-validated accuracy, blended with the mean confidence where the
    chosen component is calibrated that way."""
    cross_validated = cell["candidates_cv"][chosen]
    if chosen not in CALIBRATED or chosen not in cell.get("confidence", {}):
        return cross_validated
    return with_confidence(
        Estimate(chosen, {chosen: 1.0}, cross_validated),
        cell["confidence"][chosen],
        cell["unlabeled"],
        cell["n_examples"],
    ).accuracy


def update_confidence(path: Path) -> None:
    """A cell stored before the estimate weighed the confidence gains the self-trained component's."""
    cell = json.loads(path.read_text())
    if not cell["budget"] or "confidence" in cell:
        return
    labels, _, unlabeled, examples = cell_data(cell["data"], cell["budget"], cell["seed"], cell["n_test"])
    path.write_text(json.dumps(add_confidence(cell, labels, unlabeled, examples)))


def update_zero_shot(path: Path) -> None:
    """A no-example cell stored before self-training existed gains its self-trained column."""
    cell = json.loads(path.read_text())
    if cell["budget"] or "unlabeled" in cell:  # TREC has 500 texts, not UNLABELED: present is what counts
        return
    labels, _, unlabeled, _ = cell_data(cell["data"], 0, 0, cell["n_test"])
    add_self_trained(cell, labels, unlabeled, np.array(cell["y_test"]))
    path.write_text(json.dumps(cell))


def automatic_choice(cell: dict) -> str:
    """What the automatic choice (offline.pick) takes on the cell's cross-validation."""
    y = np.array(cell["y_examples"])
    return pick(cell["candidates_cv"], margin_for(OfflineConfig(), len(y)), priors_for(y))


def refresh(cell: dict) -> dict:
    """A cell without cross-validation, combined with today's default weights from its stored probabilities."""
    if "candidates_cv" in cell:  # today's rule for the automatic choice, on the stored cross-validation
        cell["auto"] = automatic_choice(cell)
        cell["accuracy"]["auto"] = cell["accuracy"][cell["auto"]]
        cell["estimate"] = estimate_of(cell, cell["auto"])
        return cell
    probs = {n: np.array(p) for n, p in cell["probs"].items()}
    weights = {c: (DEFAULT_WEIGHTS if cell["n_examples"] else ZERO_SHOT_WEIGHTS).get(c, 1.0) for c in probs}
    accuracy = float((combine(probs, weights).argmax(1) == np.array(cell["y_test"])).mean())
    cell["weights"] = weights
    cell["accuracy"].update(combination=accuracy, auto=accuracy)
    if SELF_TRAINED in cell["accuracy"]:  # the default without examples (OfflineClassifier)
        cell["auto"], cell["weights"] = SELF_TRAINED, {SELF_TRAINED: 1.0}
        cell["accuracy"]["auto"] = cell["accuracy"][SELF_TRAINED]
    return cell


EMBEDDING_ONLY = {"labels", SELF_TRAINED, "examples"}  # their cost is embedding the texts


def items_per_s(cell: dict) -> float | None:
    """Labelling speed of the automatic choice: the test rows over the seconds of the components it runs; None
    where it runs only embedding components, whose texts were embedded (and cached) by an earlier cell."""
    used = [n for n, w in cell["weights"].items() if w] if cell["auto"] == "combination" else [cell["auto"]]
    if set(used) <= EMBEDDING_ONLY:
        return None
    return cell["n_test"] / sum(cell["seconds"][n] for n in used)


def table(cells: list[dict]) -> str:
    cells = [refresh(c) for c in cells]
    lines = [
        "| data | per class | seeds | " + " | ".join(METHODS) + " | auto picks | estimate | estimate − test "
        "| train s | auto items/s |",
        "|---" * (len(METHODS) + 8) + "|",
    ]
    gaps = []
    for (name, budget), group in sorted(rows_of(cells).items(), key=lambda kv: (NAMES.index(kv[0][0]), kv[0][1])):
        row = [name, str(budget), str(len(group))]
        for m in METHODS:
            values = [c["accuracy"][m] for c in group if m in c["accuracy"]]
            row.append(f"{np.mean(values):.3f} ± {np.std(values):.3f}" if values else "–")
        row.append(", ".join(sorted({c["auto"] for c in group})))
        estimates = [(c["estimate"], c["accuracy"]["auto"]) for c in group if "estimate" in c]
        if estimates:
            gap = [e - t for e, t in estimates]
            gaps += gap
            row += [
                f"{np.mean([e for e, _ in estimates]):.3f}",
                f"{np.mean(gap):+.3f} (|mean| {np.mean(np.abs(gap)):.3f})",
            ]
        else:
            row += ["–", "–"]
        row.append(f"{np.mean([c['cv_seconds'] for c in group]):.0f}" if "cv_seconds" in group[0] else "0")
        speeds = [v for v in map(items_per_s, group) if v is not None]
        row.append(f"{np.mean(speeds):.1f}" if speeds else "encoder")
        lines.append("| " + " | ".join(row) + " |")
    if gaps:
        lines.append(
            f"\nMean |estimate − test accuracy| over {len(gaps)} cells with examples: "
            f"{np.mean(np.abs(gaps)):.3f} (mean signed {np.mean(gaps):+.3f}); the test accuracy was inside "
            f"the estimate's stated 95% interval (accuracy_interval) in {intervals_holding(cells)} (the "
            f"Wilson interval alone: {intervals_holding(cells, bias=0.0)})."
        )
    return "\n".join(lines)


def intervals_holding(cells: list[dict], bias: float = ESTIMATE_BIAS) -> str:
    """In how many cells the interval around the estimate holds the test accuracy of what auto runs, in all and
    where it runs SetFit."""
    cells = [c for c in cells if "estimate" in c]
    inside = np.array([inside_interval(c["estimate"], c["n_examples"], c["accuracy"]["auto"], bias) for c in cells])
    setfit = np.array([c["auto"] == "setfit" for c in cells])
    return f"{inside.sum()} of {len(cells)} cells, {inside[setfit].sum()} of {setfit.sum()} where SetFit was chosen"


def inside_interval(estimate: float, n: int, accuracy: float, bias: float = ESTIMATE_BIAS) -> bool:
    low, high = accuracy_interval(estimate, n, bias)
    return low <= accuracy <= high


def fit_defaults(cells: list[dict], budget: int) -> str:
    """Grid over the zero-shot components' weights on the stored test probabilities of the cells with this
    budget: each data set's accuracy minus the better single component's, worst case and mean. This is how
    DEFAULT_WEIGHTS were chosen; it looks at test rows, so the no-example rows of the table are in-sample
    for these two numbers (the data sets you do not have are what keeps them honest)."""
    cells = [c for c in cells if c["budget"] == budget]
    if not cells:
        return f"no cells with {budget} examples per class"
    grid = [0.0, 0.25, 0.5, 1.0, 1.5, 2.0, 3.0]
    names = list(cells[0]["probs"])
    results = []
    for weights in np.array(np.meshgrid(*[grid] * len(names))).T.reshape(-1, len(names)):
        if not weights.any() or weights.max() != 1.0:
            continue  # only ratios matter for the argmax; fix the largest weight at 1
        margins = []
        for c in cells:
            probs = {n: np.array(c["probs"][n]) for n in names}
            y = np.array(c["y_test"])
            combined = float((combine(probs, dict(zip(names, weights))).argmax(1) == y).mean())
            margins.append(combined - max(c["accuracy"][n] for n in names))
        results.append((min(margins), float(np.mean(margins)), dict(zip(names, weights.tolist()))))
    results.sort(key=lambda r: (r[0], r[1]), reverse=True)
    lines = [
        f"weights for {budget} examples per class over {len(cells)} cells: worst and mean margin over the "
        f"better single component"
    ]
    lines += [f"  {w}: worst {lo:+.3f}, mean {mean:+.3f}" for lo, mean, w in results[:8]]
    return "\n".join(lines)


PAIR = "self-trained+setfit"


def add_pair(cell: dict) -> dict:
    """The cell with the equal-weight combination of the self-trained component and SetFit as one more candidate
    (its cross-validated and test accuracy, from the stored probabilities), where both ran."""
    if not {SELF_TRAINED, "setfit"} <= set(cell.get("oof", {})):
        return cell

    def pair(probs):
        return combine(
            {n: np.array(probs[n]) for n in (SELF_TRAINED, "setfit")},  # noqa: E731
            {SELF_TRAINED: 1.0, "setfit": 1.0},
        )

    y, oof = np.array(cell["y_examples"]), pair(cell["oof"])
    cell["candidates_cv"][PAIR] = float(np.mean([fold_accuracy(oof, y, np.array(t)) for t in cell["folds"]]))
    cell["accuracy"][PAIR] = float((pair(cell["probs"]).argmax(1) == np.array(cell["y_test"])).mean())
    return cell


def compare_rules(cells: list[dict]) -> str:
    """The automatic choice under other candidates, orders and margins, replayed on the stored cross-validation:
    per rule, the cells where it lands within a point of the best single component (seed 0, then the other
    seeds), the rows (data set and budget, mean over the seeds) where it does, and its mean shortfall. A rule is
    `pick` with these priors: the first that ran is kept unless another of them leads it by more than the
    margin. `self-trained+setfit` is their equal-weight combination (add_pair), a candidate only in the rules
    that name it; "setfit from T" puts SetFit first where every label has T examples or more (priors_for)."""
    cells = [add_pair(c) for c in cells if "candidates_cv" in c]
    fixed = [(f"{m:.2f}" if m < 1 else "never switch", lambda c, m=m: m) for m in (0.0, 0.05, 0.10, 0.15, 0.20, 1.0)]
    # a margin that shrinks as the cross-validation's noise does, with the number of examples n
    scaled = [(f"{k}/sqrt(n)", lambda c, k=k: k / np.sqrt(c["n_examples"])) for k in (0.3, 0.4, 0.57, 0.8)]
    fixed_order = lambda *order: (", ".join(order), lambda c: order)  # noqa: E731
    rules = [(*fixed_order(SELF_TRAINED, "setfit"), fixed + scaled)]
    rules += [
        (
            f"self-trained, setfit; setfit from {t}",
            lambda c, t=t: priors_for(np.array(c["y_examples"]), t),
            fixed[:1] + scaled,
        )
        for t in (8, 16, 32, 64)
    ]
    rules += [
        (*fixed_order(*order), fixed[:1])
        for order in [
            ("setfit", SELF_TRAINED),
            (SELF_TRAINED, "setfit", "labels", "examples"),
            ("setfit", SELF_TRAINED, "labels", "examples"),
            (PAIR, SELF_TRAINED, "setfit"),
            (PAIR,),
        ]
    ]
    rules += [("self-trained+setfit first from 8 to 15 per label; setfit from 16", pair_in_between, fixed[:1] + scaled)]
    choosers = [
        (order_name, margin_name, lambda c, o=order, m=margin: pick(c["candidates_cv"], m(c), priors=o(c)))
        for order_name, order, margins in rules
        for margin_name, margin in margins
    ]
    choosers.append(
        (
            "the higher estimate (self-trained: blended with its confidence; setfit: cross-validated)",
            "0.00",
            higher_estimate,
        )
    )
    choosers.append(
        (
            "the higher out-of-fold recall weighted by the test rows' own label mix (known only here)",
            "0.00",
            higher_mix_weighted_recall,
        )
    )
    lines = [
        "| candidates, in order | margin | seed 0: cells within 1 pt | seeds 1+: cells | rows within 1 pt "
        "| mean shortfall |",
        "|---|---|---|---|---|---|",
    ]
    for rule_name, margin_name, chooser in choosers:
        accuracy = {id(c): c["accuracy"][chooser(c)] for c in cells}
        gaps = {id(c): c["accuracy"][best_single(c)] - accuracy[id(c)] for c in cells}
        row = [rule_name, margin_name]
        for group in ([c for c in cells if c["seed"] == 0], [c for c in cells if c["seed"] != 0]):
            row.append(f"{sum(within_a_point(gaps[id(c)]) for c in group)}/{len(group)}")
        rows = rows_within_a_point(cells, lambda c, accuracy=accuracy: accuracy[id(c)])
        row += [rows, f"{np.mean(list(gaps.values())):.3f}"]
        lines.append("| " + " | ".join(row) + " |")
    return "\n".join(lines)


def misses(cells: list[dict]) -> str:
    """The cells where today's rule lands more than a point below the best single component, with SetFit's lead
    over the self-trained component in cross-validation (pooled over the examples, ± the standard error of that
    paired difference) and on the test rows: how far the examples could tell them apart."""
    lines = [
        "| data | per class | seed | chosen | best single | setfit − self-trained, cross-validated "
        "| on the test rows |",
        "|---|---|---|---|---|---|---|",
    ]
    for c in sorted(cells, key=lambda c: (NAMES.index(c["data"]), c["budget"], c["seed"])):
        chosen, best = automatic_choice(c), best_single(c)
        if within_a_point(c["accuracy"][best] - c["accuracy"][chosen]):
            continue
        row = [
            c["data"],
            c["budget"],
            c["seed"],
            f"{chosen} {c['accuracy'][chosen]:.3f}",
            f"{best} {c['accuracy'][best]:.3f}",
            "–",
            "–",
        ]
        if {"setfit", SELF_TRAINED} <= set(c.get("oof", {})):
            y = np.array(c["y_examples"])
            right = [(np.array(c["oof"][n]).argmax(1) == y).astype(float) for n in ("setfit", SELF_TRAINED)]
            difference = right[0] - right[1]
            row[5] = f"{difference.mean():+.3f} ± {difference.std(ddof=1) / np.sqrt(len(y)):.3f}"
            row[6] = f"{c['accuracy']['setfit'] - c['accuracy'][SELF_TRAINED]:+.3f}"
        lines.append("| " + " | ".join(map(str, row)) + " |")
    return "\n".join(lines)


def noise_of_test_rows(cells: list[dict], draws: int = 2000, seed: int = 0) -> str:
    """How far the cells' own test rows can confirm the targets: each cell's test rows drawn again with
    replacement (the same draw for all its components), its measured accuracies taken as the truth. A chooser
    that knows the truth takes each cell's best single component; today's rule keeps what it chose. Per chooser,
    the rows within a point of the best single component's mean on the drawn rows, and the mean |estimate − test|
    an estimate equal to the truth would show."""
    cells = [c for c in cells if "candidates_cv" in c]
    rng = np.random.default_rng(seed)
    drawn: dict[int, dict[str, np.ndarray]] = {}  # per cell: each component's accuracy on every draw
    for c in cells:
        y = np.array(c["y_test"])
        index = rng.integers(0, len(y), (draws, len(y)))
        drawn[id(c)] = {n: (np.array(c["probs"][n]).argmax(1) == y)[index].mean(1) for n in SINGLES if n in c["probs"]}
    rows = rows_of(cells)
    cell_best = {i: np.max(list(accuracies.values()), 0) for i, accuracies in drawn.items()}
    choosers = {"knows each cell's accuracy": best_single, "today's rule": automatic_choice}
    lines = [
        "| chooser | rows within 1 pt: mean | 5th-95th percentile | all rows | cells within 1 pt: mean |",
        "|---|---|---|---|---|",
    ]
    for name, chooser in choosers.items():
        row_hits = np.zeros(draws)
        cell_hits = np.zeros(draws)
        for group in rows.values():
            chosen = [drawn[id(c)][chooser(c)] for c in group]
            row_hits += within_a_point(best_single_mean(group, lambda c: drawn[id(c)]) - np.mean(chosen, 0))
            for c, accuracy in zip(group, chosen):
                cell_hits += within_a_point(cell_best[id(c)] - accuracy)
        low, high = np.percentile(row_hits, [5, 95])
        lines.append(
            f"| {name} | {row_hits.mean():.1f}/{len(rows)} | {low:.0f}-{high:.0f} | "
            f"{(row_hits == len(rows)).mean():.1%} of draws | {cell_hits.mean():.1f}/{len(cells)} |"
        )
    floor = np.mean(
        [np.abs(drawn[id(c)][chosen] - c["accuracy"][chosen]).mean() for c in cells for chosen in [automatic_choice(c)]]
    )
    lines.append(
        f"\nAn estimate equal to the true accuracy would still be {floor:.3f} from the accuracy on "
        f"{cells[0]['n_test']} test rows on average ({draws} draws of the test rows, seed {seed})."
    )
    return "\n".join(lines)


def pair_in_between(cell: dict) -> tuple:
    """The equal-weight pair first where every label has 8 to 15 examples, where neither component led
    reliably; elsewhere the priors of today's rule."""
    y = np.array(cell["y_examples"])
    return (PAIR, SELF_TRAINED, "setfit") if SETFIT_FROM <= fewest_per_label(y) < SETFIT_FIRST_FROM else priors_for(y)


def setfit_ran(cell: dict) -> bool:
    """Whether SetFit was a candidate of the cell's automatic choice (every label has SETFIT_FROM examples)."""
    return fewest_per_label(np.array(cell["y_examples"])) >= SETFIT_FROM and "setfit" in cell["candidates_cv"]


def higher_estimate(cell: dict) -> str:
    """Whichever of the two components the estimate (estimate_of) expects to score higher on the texts: the
    self-trained component's cross-validated accuracy is biased upwards (+0.039 on the cells where it was
    chosen) and its blend with the confidence corrects that, where SetFit's is not."""
    if not setfit_ran(cell):
        return SELF_TRAINED
    return "setfit" if cell["candidates_cv"]["setfit"] > estimate_of(cell, SELF_TRAINED) else SELF_TRAINED


def higher_mix_weighted_recall(cell: dict) -> str:
    """Whichever of the two components has the higher out-of-fold recall per label, weighted by the label mix of
    the cell's test rows: what cross-validation on per-class examples would say if it knew the texts' mix."""
    if not setfit_ran(cell):
        return SELF_TRAINED
    y = np.array(cell["y_examples"])
    mix = np.bincount(cell["y_test"], minlength=len(cell["oof"]["setfit"][0])) / len(cell["y_test"])
    setfit, self_trained = (weighted_recall(cell["oof"][n], y, mix) for n in ("setfit", SELF_TRAINED))
    return "setfit" if setfit > self_trained else SELF_TRAINED


def weighted_recall(oof, y: np.ndarray, mix: np.ndarray) -> float:
    """The out-of-fold recall of each label (0 for a label without examples), weighted by `mix`."""
    answers = np.array(oof).argmax(1)
    return float(sum(m * (answers[y == k] == k).mean() for k, m in enumerate(mix) if (y == k).any()))


# The single components the automatic choice is measured against.
SINGLES = ("labels", SELF_TRAINED, "examples", "setfit")


def best_single(cell: dict) -> str:
    """The single component that scored highest on the cell's test rows."""
    return max((n for n in SINGLES if n in cell["accuracy"]), key=lambda n: cell["accuracy"][n])


def rows_of(cells: list[dict]) -> dict[tuple, list[dict]]:
    """The cells by row: (data set, budget)."""
    groups: dict[tuple, list[dict]] = {}
    for c in cells:
        groups.setdefault((c["data"], c["budget"]), []).append(c)
    return groups


def rows_within_a_point(cells: list[dict], accuracy) -> str:
    """In how many rows (data set, budget) the mean of `accuracy` over the seeds is within a point of the best
    single component's mean."""
    groups = rows_of(cells)
    best = lambda group: best_single_mean(group, lambda c: c["accuracy"])  # noqa: E731
    within = sum(within_a_point(best(group) - np.mean([accuracy(c) for c in group])) for group in groups.values())
    return f"{within}/{len(groups)}"


def best_single_mean(group: list[dict], accuracies) -> float | np.ndarray:
    """The best single component's mean over a row's cells, of `accuracies(cell)` (per component: a number, or
    one per draw of the test rows), among the components every cell ran."""
    singles = [n for n in SINGLES if all(n in accuracies(c) for c in group)]
    return np.max([np.mean([accuracies(c)[n] for c in group], 0) for n in singles], 0)


def within_a_point(shortfall):
    """Whether a shortfall (a number or an array of them) is a point or less, tolerating float rounding."""
    return shortfall <= 0.01 + 1e-9


ESTIMATOR_BUDGETS, ESTIMATOR_SEEDS = (2, 4, 8, 16), 10


def estimator_run(name: str, budget: int, seed: int) -> dict:
    """The self-trained component on one draw of examples: its cross-validated accuracy and out-of-fold
    probabilities, its probabilities on the UNLABELED texts and its accuracy on them (no SetFit: cheap enough
    for many seeds)."""
    labels, rows, unlabeled, examples = cell_data(name, budget, seed, UNLABELED)  # rows: the unlabelled texts
    y_unlabeled = np.array([labels.index(r["label"]) for r in rows])
    cross_validated, oof = self_trained_cv(labels, unlabeled, examples, seed)
    probs = SelfTrainedComponent(labels, OfflineConfig(seed=seed), unlabeled).fit(examples).probabilities(unlabeled)
    return {
        "data": name,
        "budget": budget,
        "seed": seed,
        "n": len(examples),
        "cross_validated": cross_validated,
        "confidence": float(probs.max(axis=1).mean()),
        "accuracy": float((probs.argmax(1) == y_unlabeled).mean()),
        "oof": oof.round(5).tolist(),
        "y": [labels.index(r["label"]) for r in examples],
        "probs": probs.round(5).tolist(),
    }


def tempered_confidence(run: dict) -> float:
    """The mean top probability on the texts after temperature scaling fitted to the out-of-fold probabilities
    of the examples (minimum log-loss)."""
    from scipy.optimize import minimize_scalar

    oof, y = np.log(np.clip(np.array(run["oof"]), 1e-9, 1)), np.array(run["y"])
    logp = np.log(np.clip(np.array(run["probs"]), 1e-9, 1))

    def softmax(z, t):
        z = z / t
        e = np.exp(z - z.max(axis=1, keepdims=True))
        return e / e.sum(axis=1, keepdims=True)

    loss = lambda log_t: -np.log(softmax(oof, np.exp(log_t))[np.arange(len(y)), y] + 1e-12).mean()  # noqa: E731
    t = np.exp(minimize_scalar(loss, bounds=(-3, 3), method="bounded").x)
    return float(softmax(logp, t).max(axis=1).mean())


def rescaled_confidence(run: dict) -> float:
    """The mean confidence on the texts times how right the out-of-fold answers were for their confidence."""
    oof = np.array(run["oof"])
    return float(min(1.0, run["confidence"] * run["cross_validated"] / oof.max(axis=1).mean()))


def mix_weighted_recall(run: dict, solve: bool) -> float:
    """The out-of-fold recall of each label weighted by the label mix of the texts, for examples drawn per class
    from texts whose mix is skewed (GoEmotions): the mix the answers on the texts show, or with solve, the mix
    that explains those answers through the out-of-fold confusion matrix (black-box shift estimation)."""
    from scipy.optimize import nnls

    oof, y = np.array(run["oof"]).argmax(1), np.array(run["y"])
    n_labels = len(run["probs"][0])
    answered = np.bincount(np.array(run["probs"]).argmax(1), minlength=n_labels) / len(run["probs"])
    confusion = np.zeros((n_labels, n_labels))
    np.add.at(confusion, (oof, y), 1.0)
    confusion /= np.maximum(confusion.sum(axis=0, keepdims=True), 1.0)  # P(answer | label)
    mix = nnls(confusion, answered)[0] if solve else answered
    mix = mix / mix.sum() if mix.sum() else np.full(n_labels, 1.0 / n_labels)
    return weighted_recall(run["oof"], y, mix)


def compare_estimators(out: Path) -> str:
    """How far each way of estimating the accuracy lands from the accuracy on the texts (mean |error|, signed
    mean, per budget), over every data set x ESTIMATOR_BUDGETS x ESTIMATOR_SEEDS; this chose
    offline.CONFIDENCE_WEIGHT."""
    out.mkdir(parents=True, exist_ok=True)
    runs = []
    for name in NAMES:
        for budget in ESTIMATOR_BUDGETS:
            for seed in range(ESTIMATOR_SEEDS):
                path = out / f"{name}-{budget}-{seed}.json"
                if not path.exists():
                    path.write_text(json.dumps(estimator_run(name, budget, seed)))
                runs.append(json.loads(path.read_text()))
    blend = lambda r, k: (r["n"] * r["cross_validated"] + k * r["confidence"]) / (r["n"] + k)  # noqa: E731
    rules = {
        "cross-validated alone": lambda r: r["cross_validated"],
        "mean confidence alone": lambda r: r["confidence"],
    }
    rules |= {f"blended, confidence weighs {k} examples": (lambda r, k=k: blend(r, k)) for k in (4, 8, 16, 32, 64)}
    for r in runs:
        r["tempered"], r["rescaled"] = tempered_confidence(r), rescaled_confidence(r)
    rules |= {
        "confidence after temperature scaling on the examples' out-of-fold answers": lambda r: r["tempered"],
        "confidence rescaled by the out-of-fold accuracy / confidence": lambda r: r["rescaled"],
    }
    for what in ("tempered", "rescaled"):
        rules |= {
            f"{what}, blended, weighs {k} examples": (
                lambda r, k=k, w=what: (r["n"] * r["cross_validated"] + k * r[w]) / (r["n"] + k)
            )
            for k in (16, 64)
        }
    for solve, what in ((False, "the texts' answered label mix"), (True, "the label mix solved from the answers")):
        rules[f"out-of-fold recall weighted by {what}, blended, weighs 16 examples"] = lambda r, s=solve: (
            (r["n"] * mix_weighted_recall(r, s) + 16 * r["confidence"]) / (r["n"] + 16)
        )
    lines = [
        f"Estimators of the self-trained component's accuracy on {UNLABELED} texts: {len(runs)} runs ("
        f"{', '.join(NAMES)}; {ESTIMATOR_BUDGETS} per class; seeds 0-{ESTIMATOR_SEEDS - 1})\n",
        "| estimate | mean abs error | mean signed | "
        + " | ".join(f"abs, {b}/class" for b in ESTIMATOR_BUDGETS)
        + " | stated 95% interval holds the accuracy |",
        "|---" * (4 + len(ESTIMATOR_BUDGETS)) + "|",
    ]
    for label, rule in rules.items():
        errors = np.array([rule(r) - r["accuracy"] for r in runs])
        budgets = np.array([r["budget"] for r in runs])
        inside = np.mean([inside_interval(rule(r), r["n"], r["accuracy"]) for r in runs])
        lines.append(
            f"| {label} | {np.abs(errors).mean():.3f} | {errors.mean():+.3f} | "
            + " | ".join(f"{np.abs(errors[budgets == b]).mean():.3f}" for b in ESTIMATOR_BUDGETS)
            + f" | {inside:.0%} |"
        )
    return "\n".join(lines) + "\n\n" + interval_coverage(runs, lambda r: blend(r, CONFIDENCE_WEIGHT))


def interval_coverage(runs: list[dict], estimate) -> str:
    """How often the stated interval (accuracy_interval) around the blended estimate holds the accuracy on the
    texts, for a few values of the estimate's systematic error (this chose offline.ESTIMATE_BIAS)."""
    lines = [
        "| systematic error (sd) | interval holds the accuracy | " + " | ".join(NAMES) + " | mean width |",
        "|---" * (3 + len(NAMES)) + "|",
    ]
    names, accuracy = np.array([r["data"] for r in runs]), np.array([r["accuracy"] for r in runs])
    for bias in (0.0, 0.02, 0.03, 0.04, 0.05):
        bounds = np.array([accuracy_interval(estimate(r), r["n"], bias) for r in runs])
        inside = (bounds[:, 0] <= accuracy) & (accuracy <= bounds[:, 1])
        width = np.mean(bounds[:, 1] - bounds[:, 0])
        lines.append(
            f"| {bias:.2f}{' (Wilson alone)' if not bias else ''} | {inside.mean():.1%} | "
            + " | ".join(f"{inside[names == n].mean():.0%}" for n in NAMES)
            + f" | {width:.3f} |"
        )
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--data", default=",".join(NAMES))
    parser.add_argument("--budgets", default="0,2,8,64", help="examples per class")
    parser.add_argument("--seeds", default="0,1,2")
    parser.add_argument("--n-test", type=int, default=200)
    parser.add_argument(
        "--out",
        default=str(ROOT / "benchmarks" / "results" / "few_labels"),
        help="the cells (kept in git, so that the README's table can be printed again anywhere)",
    )
    parser.add_argument("--table-only", action="store_true")
    parser.add_argument(
        "--rules",
        action="store_true",
        help="replay the automatic choice under other priors and "
        "margins on the stored cells; print its misses and how much of them the test rows' noise "
        "explains",
    )
    parser.add_argument(
        "--fit-defaults",
        type=int,
        metavar="BUDGET",
        help="grid the default weights on the cells with this many examples per class (0: the zero-shot components)",
    )
    parser.add_argument(
        "--estimators",
        action="store_true",
        help="compare ways of estimating the accuracy on "
        "many cheap runs of the self-trained component (stored in reports/estimators/)",
    )
    parser.add_argument(
        "--refresh-from",
        metavar="DIR",
        help="cells stored by older code: compute only the "
        "self-trained component again (the combination is left out of them)",
    )
    args = parser.parse_args()
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    if args.estimators:
        print(compare_estimators(ROOT / "reports" / "estimators"))  # 6 MB of probabilities: not kept
        return
    if args.rules:
        cells = [json.loads(p.read_text()) for p in sorted(out.glob("*.json"))]
        print(
            compare_rules(cells)
            + "\n\n"
            + misses([c for c in cells if "candidates_cv" in c])
            + "\n\n"
            + noise_of_test_rows(cells)
        )
        return
    if args.fit_defaults is not None:
        print(fit_defaults([json.loads(p.read_text()) for p in sorted(out.glob("*.json"))], args.fit_defaults))
        return
    if args.refresh_from:  # cells of older code: only the self-trained component computed again
        for old in sorted(Path(args.refresh_from).glob("*.json")):
            cell = json.loads(old.read_text())
            if cell["budget"] and not (out / old.name).exists():
                (out / old.name).write_text(json.dumps(with_new_self_trained(cell)))
                print(f"{old.name}: self-trained {cell['accuracy'][SELF_TRAINED]:.3f}", flush=True)
    if not args.table_only:
        for name in args.data.split(","):
            memo: dict = {}
            for budget in map(int, args.budgets.split(",")):
                for seed in map(int, args.seeds.split(",")):
                    path = out / f"{name}-{budget}-{seed}.json"
                    if path.exists():
                        continue
                    started = time.perf_counter()
                    cell = run_cell(name, budget, seed, args.n_test, memo)
                    path.write_text(json.dumps(cell))
                    print(
                        f"{name} {budget}/class seed {seed}: "
                        + ", ".join(f"{k} {v:.3f}" for k, v in cell["accuracy"].items())
                        + f"  ({time.perf_counter() - started:.0f}s)",
                        flush=True,
                    )
    for path in sorted(out.glob("*.json")):
        update_zero_shot(path)
        update_confidence(path)
    cells = [json.loads(p.read_text()) for p in sorted(out.glob("*.json"))]
    print(
        f"\nFew labels: accuracy on {args.n_test} seeded test rows per data set, mean ± std over seeds "
        f"(examples per class drawn with each seed). auto = the choice cross-validated on the examples; "
        f"train s = cross-validation, which is all the training (SetFit's fold models are its final model); "
        f'items/s = labelling speed of what auto runs, on a 2-core CPU shared with other jobs ("encoder": only '
        f"embedding components, as fast as the encoder embeds; the test texts were already embedded).\n"
    )
    print(table(cells))


if __name__ == "__main__":
    main()
