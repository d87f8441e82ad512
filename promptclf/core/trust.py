"""The statistics behind labels you can trust, on a labelled validation sample: the estimated accuracy's
interval, confidence calibration and its expected calibration error, and the auto-accept threshold with a
guarantee. Pure functions on arrays; the classifier (promptclf.classifier) wires them to a run.

The guarantee (`accept_threshold`): the accepted labels' accuracy is at least `target` with probability at least
1 - `risk`, over the draw of the validation sample, for rows drawn like it (Learn-then-Test, Angelopoulos et al.
2021; selective classification with guaranteed risk, Geifman & El-Yaniv 2017). Each candidate threshold t is a
hypothesis "the accuracy of the rows with confidence >= t is below the target", rejected where the exact
(Clopper-Pearson) lower bound on the accepted validation rows' accuracy reaches the target.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

# Isotonic regression needs this many validation rows; below, temperature scaling (one parameter). Niculescu-Mizil
# & Caruana (ICML 2005) found isotonic calibration overfits below about 1,000 calibration rows where Platt's
# one-parameter-per-class fit does not; benchmarks/trust.py measures both on 200 rows (docs/benchmarks.md).
ISOTONIC_FROM = 1000
ECE_BINS = 10
# The two ways to test thresholds; `accept_threshold` uses DEFAULT_SEARCH, the one with more coverage at the
# same guarantee on the shared data sets (benchmarks/trust.py: the fixed sequence).
SEARCHES = ("fixed-sequence", "bonferroni")
DEFAULT_SEARCH = "fixed-sequence"
GRID = 10  # thresholds the Bonferroni search tests (each at risk / GRID)


# --- the estimated accuracy ------------------------------------------------------------------------------


def accuracy_interval(correct: float, n: int, level: float = 0.95, method: str = "wilson") -> tuple[float, float]:
    """The `level` interval of an accuracy measured as `correct` right of `n` (statsmodels' proportion_confint:
    "wilson", or "beta" for Clopper-Pearson). `correct` may be fractional (a mean over folds)."""
    from statsmodels.stats.proportion import proportion_confint

    low, high = proportion_confint(correct, n, alpha=1 - level, method=method)
    return float(max(0.0, low)), float(min(1.0, high))


def rows_for_margin(margin: float = 0.03, accuracy: float | None = None, level: float = 0.95) -> int:
    """How many labelled rows give a `level` interval of +- `margin` on an accuracy near `accuracy` (0.5, the
    widest, where nothing is known)."""
    from statsmodels.stats.proportion import samplesize_confint_proportion

    p = 0.5 if accuracy is None else min(max(accuracy, 0.01), 0.99)
    return int(np.ceil(samplesize_confint_proportion(p, margin, alpha=1 - level)))


# --- calibration -----------------------------------------------------------------------------------------


def expected_calibration_error(confidence, correct, bins: int = ECE_BINS) -> float:
    """ECE: the mean, over equal-width confidence bins weighted by their share of rows, of |accuracy - mean
    confidence| in the bin (Guo et al. 2017)."""
    confidence, correct = np.asarray(confidence, float), np.asarray(correct, float)
    if len(confidence) == 0:
        return 0.0
    which = np.minimum((confidence * bins).astype(int), bins - 1)
    total = 0.0
    for b in np.unique(which):
        inside = which == b
        total += inside.sum() * abs(correct[inside].mean() - confidence[inside].mean())
    return float(total / len(confidence))


def reliability(confidence, correct, bins: int = ECE_BINS) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Per non-empty bin: mean confidence, accuracy and rows (what a reliability diagram draws)."""
    confidence, correct = np.asarray(confidence, float), np.asarray(correct, float)
    which = np.minimum((confidence * bins).astype(int), bins - 1)
    kept = np.unique(which)
    return (
        np.array([confidence[which == b].mean() for b in kept]),
        np.array([correct[which == b].mean() for b in kept]),
        np.array([(which == b).sum() for b in kept]),
    )


def _log(p: np.ndarray) -> np.ndarray:
    return np.log(np.clip(p, 1e-12, 1.0))


def scaled(probabilities, temperature: float) -> np.ndarray:
    """softmax(log p / T): T > 1 softens overconfident probabilities, T < 1 sharpens."""
    z = _log(np.asarray(probabilities, float)) / temperature
    z -= z.max(axis=1, keepdims=True)
    e = np.exp(z)
    return e / e.sum(axis=1, keepdims=True)


def fit_temperature(probabilities, gold) -> float:
    """The temperature minimising the negative log-likelihood of the gold labels (Guo et al. 2017)."""
    from scipy.optimize import minimize_scalar

    probabilities, gold = np.asarray(probabilities, float), np.asarray(gold, int)
    rows = np.arange(len(gold))

    def nll(log_t: float) -> float:
        return float(-_log(scaled(probabilities, float(np.exp(log_t))))[rows, gold].mean())

    return float(np.exp(minimize_scalar(nll, bounds=(-3.0, 3.0), method="bounded").x))


def logit(confidence) -> np.ndarray:
    c = np.clip(np.asarray(confidence, float), 1e-6, 1 - 1e-6)
    return np.log(c / (1 - c))


def fit_platt(confidence, right) -> tuple[float, float]:
    """Platt scaling of a top confidence: (slope, intercept) of a logistic regression of right on its logit."""
    from sklearn.linear_model import LogisticRegression

    fitted = LogisticRegression(C=1e4).fit(logit(confidence).reshape(-1, 1), np.asarray(right, bool))
    return float(fitted.coef_[0, 0]), float(fitted.intercept_[0])


def platt(confidence, slope: float, intercept: float) -> np.ndarray:
    return 1.0 / (1.0 + np.exp(-(slope * logit(confidence) + intercept)))


@dataclass
class Calibration:
    """A map from a prediction's confidence (and per-label probabilities) to calibrated ones. `kind`:
    "temperature" (per-label probabilities softened or sharpened by `temperature`), "Platt" (no per-label
    probabilities: a logistic regression on the top confidence's logit, `slope` and `intercept`), "isotonic" (a
    monotone step map of the top confidence, fitted with scikit-learn's IsotonicRegression) or "none". Only
    temperature scaling keeps per-label probabilities that agree with the top confidence; the others change the
    top confidence alone."""

    kind: str
    temperature: float = 1.0
    slope: float = 1.0
    intercept: float = 0.0
    steps_x: tuple = ()
    steps_y: tuple = ()

    def confidence(self, confidence: float, scores: dict | None = None) -> tuple[float, dict | None]:
        """The calibrated top confidence, and the calibrated per-label probabilities where they are kept."""
        if self.kind == "temperature" and scores:
            names = list(scores)
            probs = scaled(np.array([[scores[n] for n in names]]), self.temperature)[0]
            calibrated = dict(zip(names, map(float, probs)))
            return max(calibrated.values()), calibrated
        if self.kind == "Platt":
            return float(platt([confidence], self.slope, self.intercept)[0]), scores
        if self.kind == "isotonic":
            return float(np.interp(confidence, self.steps_x, self.steps_y)), scores
        return confidence, scores

    def many(self, confidence, probabilities=None) -> np.ndarray:
        """Calibrated top confidences of many rows (probabilities: [rows, labels], where every row has them)."""
        confidence = np.asarray(confidence, float)
        if self.kind == "temperature" and probabilities is not None:
            return scaled(probabilities, self.temperature).max(axis=1)
        if self.kind == "Platt":
            return platt(confidence, self.slope, self.intercept)
        if self.kind == "isotonic":
            return np.interp(confidence, self.steps_x, self.steps_y)
        return confidence

    def describe(self) -> str:
        if self.kind == "temperature":
            return f"temperature scaling (T = {self.temperature:.2f})"
        if self.kind == "Platt":
            return f"Platt scaling of the top confidence (slope {self.slope:.2f}, intercept {self.intercept:.2f})"
        return {"isotonic": "isotonic regression of the top confidence"}.get(self.kind, self.kind)


def fit_calibration(confidence, correct, probabilities=None, gold=None, isotonic_from: int = ISOTONIC_FROM):
    """Calibration fitted on validation rows: isotonic on the top confidence from `isotonic_from` rows, else
    temperature scaling of the per-label probabilities where every row has them (with `gold`, their label
    indices), else Platt scaling of the top confidence."""
    confidence, correct = np.asarray(confidence, float), np.asarray(correct, bool)
    if len(confidence) >= isotonic_from:
        from sklearn.isotonic import IsotonicRegression

        fitted = IsotonicRegression(y_min=0.0, y_max=1.0, out_of_bounds="clip").fit(confidence, correct)
        return Calibration("isotonic", steps_x=tuple(fitted.X_thresholds_), steps_y=tuple(fitted.y_thresholds_))
    if probabilities is not None and gold is not None:
        return Calibration("temperature", fit_temperature(probabilities, gold))
    if correct.all() or not correct.any():  # one class: nothing to regress on
        return Calibration("none")
    slope, intercept = fit_platt(confidence, correct)
    return Calibration("Platt", slope=slope, intercept=intercept)


def perfectly_calibrated_ece(confidence, draws: int = 200, seed: int = 0, bins: int = ECE_BINS) -> float:
    """The mean ECE a perfectly calibrated model would show on these confidences (each row right with
    probability its confidence): the floor a finite sample's ECE is read against."""
    rng = np.random.default_rng(seed)
    confidence = np.asarray(confidence, float)
    return float(
        np.mean(
            [
                expected_calibration_error(confidence, rng.random(len(confidence)) < confidence, bins)
                for _ in range(draws)
            ]
        )
    )


# --- auto-accept with a guarantee --------------------------------------------------------------------------


def lower_bound(correct, n, delta: float) -> np.ndarray:
    """The exact one-sided (Clopper-Pearson) lower bound on an accuracy, holding with probability 1 - delta:
    the delta quantile of Beta(correct, n - correct + 1); 0 where nothing is right."""
    from scipy.stats import beta

    correct, n = np.asarray(correct, float), np.asarray(n, float)
    with np.errstate(invalid="ignore", divide="ignore"):
        bound = beta.ppf(delta, np.maximum(correct, 1e-12), n - correct + 1)
    return np.where((correct > 0) & (n > 0), bound, 0.0)


def upper_bound(correct, n, delta: float) -> np.ndarray:
    """The exact one-sided (Clopper-Pearson) upper bound, holding with probability 1 - delta; 1 where all are
    right."""
    from scipy.stats import beta

    correct, n = np.asarray(correct, float), np.asarray(n, float)
    with np.errstate(invalid="ignore", divide="ignore"):
        bound = beta.ppf(1 - delta, correct + 1, np.maximum(n - correct, 1e-12))
    return np.where(correct < n, bound, 1.0)


def fewest_to_certify(target: float, risk: float) -> int:
    """The fewest accepted rows whose bound can reach the target, all of them right: delta^(1/n) >= target."""
    return int(np.ceil(np.log(risk) / np.log(target)))


def first_tested(target: float, risk: float, rows: int) -> int:
    """How many accepted rows the first tested threshold has: the fewest whose bound reaches the target when
    their accuracy is halfway between the target and 1 (so a few early errors among the most confident rows do
    not end the sequence at once), at most half the rows, and never fewer than fewest_to_certify. Only counts:
    no label decides it. benchmarks/trust.py compares it with starting at fewest_to_certify: at target 0.90 it
    accepted more on every set where either accepted much; at 0.95 on 200 rows neither accepted much."""
    fewest = fewest_to_certify(target, risk)
    halfway = (1 + target) / 2
    counts = np.arange(fewest, max(fewest, rows // 2) + 1)
    passing = counts[lower_bound(np.floor(counts * halfway), counts, risk) >= target]
    return int(passing[0]) if len(passing) else max(fewest, rows // 2)


@dataclass(frozen=True)
class Acceptance:
    """The auto-accept rule chosen on validation rows: accept a label whose confidence is at least `threshold`
    (None: accept nothing, no threshold reached the target). `coverage`: the share of validation rows it
    accepts; `bound`: the exact lower bound on their accuracy at 1 - risk; `accuracy`: their measured accuracy."""

    target: float
    risk: float
    threshold: float | None
    coverage: float
    bound: float
    accuracy: float | None
    rows: int
    search: str

    def accepts(self, confidence: float | None) -> bool:
        return self.threshold is not None and confidence is not None and confidence >= self.threshold

    def describe(self) -> str:
        if self.threshold is None:
            return (
                f"auto-accept: nothing accepted: no confidence threshold certifies accuracy >= {self.target:g} at "
                f"risk {self.risk:g} on the {self.rows} validation rows (at least "
                f"{fewest_to_certify(self.target, self.risk)} accepted rows, all right, are needed)"
            )
        return (
            f"auto-accept: confidence >= {self.threshold:.4f} accepts {self.coverage:.1%} of the {self.rows} "
            f"validation rows, accuracy {self.accuracy:.3f}, lower bound {self.bound:.3f} >= target "
            f"{self.target:g} with probability >= {1 - self.risk:g} ({self.search})"
        )


def _ranked(confidence, correct) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """The distinct confidences from the highest down, and the accepted rows and right ones at each."""
    confidence, correct = np.asarray(confidence, float), np.asarray(correct, bool)
    order = np.argsort(-confidence, kind="stable")
    sorted_conf, sorted_right = confidence[order], correct[order]
    last_of_value = np.r_[sorted_conf[1:] != sorted_conf[:-1], True]  # ties are accepted together
    accepted = np.arange(1, len(confidence) + 1)[last_of_value]
    right = np.cumsum(sorted_right)[last_of_value]
    return sorted_conf[last_of_value], accepted, right


def accept_threshold(
    confidence,
    correct,
    target: float,
    risk: float = 0.1,
    search: str = DEFAULT_SEARCH,
    grid: int = GRID,
    first: int | None = None,
) -> Acceptance:
    """The lowest confidence threshold whose accepted rows' accuracy is at least `target` with probability at
    least 1 - `risk` (see the module's docstring).

    "fixed-sequence": the thresholds from the highest confidence down, each tested at the full risk, stopping at
    the first that fails; it starts at the first threshold accepting first_tested rows (fewer than
    fewest_to_certify can never pass: a sequence that starts at the single most confident row stops at once).
    Which thresholds are tested depends on the confidences and counts only, never on the labels, so the test
    stays valid.
    "bonferroni": `grid` thresholds at evenly spaced quantiles of the confidences (from the first_tested-th
    highest down), each tested at risk / grid; the lowest that passes. `first`: the accepted rows of the first
    tested threshold, instead of first_tested (the benchmark compares starts)."""
    if search not in SEARCHES:
        raise ValueError(f"search={search!r}: choose one of {SEARCHES}")
    if not (0 < target < 1 and 0 < risk < 1):
        raise ValueError(f"target {target!r} and risk {risk!r} must each be between 0 and 1")
    values, accepted, right = _ranked(confidence, correct)
    n = len(np.asarray(confidence))
    start = first_tested(target, risk, n) if first is None else first
    candidates = np.flatnonzero(accepted >= start)
    if search == "bonferroni" and len(candidates) > grid:
        picks = np.unique(np.round(np.linspace(0, len(candidates) - 1, grid)).astype(int))
        candidates = candidates[picks]
    delta = risk if search == "fixed-sequence" else risk / max(1, min(grid, len(candidates)))
    bounds = lower_bound(right[candidates], accepted[candidates], delta)
    passing = bounds >= target
    if search == "fixed-sequence":
        failed = np.flatnonzero(~passing)
        passing[failed[0] if len(failed) else len(passing) :] = False
    if not passing.any():
        return Acceptance(target, risk, None, 0.0, 0.0, None, n, search)
    chosen = candidates[np.flatnonzero(passing)[-1]]
    return Acceptance(
        target,
        risk,
        float(values[chosen]),
        float(accepted[chosen] / n),
        float(lower_bound(right[chosen], accepted[chosen], delta)),
        float(right[chosen] / accepted[chosen]),
        n,
        search,
    )


# --- a validation sample's assessment --------------------------------------------------------------------


@dataclass
class Assessment:
    """What a labelled validation sample says about a model: its accuracy with a 95% interval, the calibration
    fitted on it (ECE before, and after as measured on the half it was not fitted on), and the auto-accept rule
    where a target was set. `confidence_before` / `confidence_after` / `correct` are the validation rows' (for
    the reliability diagram); rows without a confidence are not among them."""

    rows: int
    correct: int
    low: float
    high: float
    calibration: Calibration
    ece_before: float | None
    ece_after: float | None
    acceptance: Acceptance | None
    without_confidence: int
    confidence_before: np.ndarray
    confidence_after: np.ndarray
    right: np.ndarray

    @property
    def accuracy(self) -> float:
        return self.correct / self.rows if self.rows else 0.0

    def apply(self, prediction):
        """See `apply`."""
        return apply(self, prediction)

    def describe(self) -> str:
        lines = [
            f"validation: accuracy {self.accuracy:.3f} on {self.rows} labelled rows, 95% interval "
            f"{self.low:.3f}-{self.high:.3f} (Wilson)"
        ]
        if self.ece_before is None:
            lines.append("confidence: the model gives none; nothing calibrated")
        else:
            lines.append(
                f"confidence calibrated by {self.calibration.describe()} on the validation rows: expected "
                f"calibration error {self.ece_before:.3f} before, {self.ece_after:.3f} after (cross-fitted)"
            )
        if self.without_confidence and self.ece_before is not None:
            lines.append(f"{self.without_confidence} validation answers carried no confidence")
        if self.acceptance is not None:
            if self.ece_before is None:
                lines.append("auto-accept: the model gives no confidence, so nothing is accepted")
            else:
                lines.append(self.acceptance.describe())
        return "\n".join(lines)


def _cross_fitted_ece(confidence, right, probabilities, gold, seed: int = 0) -> float:
    """ECE after calibration, each half calibrated by a fit on the other half (in-sample ECE flatters)."""
    n = len(confidence)
    order = np.random.default_rng(seed).permutation(n)
    halves = (order[: n // 2], order[n // 2 :])
    after = np.empty(n)
    for fit_on, apply_to in (halves, halves[::-1]):
        probs = None if probabilities is None else probabilities[fit_on]
        cal = fit_calibration(confidence[fit_on], right[fit_on], probs, None if gold is None else gold[fit_on])
        after[apply_to] = cal.many(confidence[apply_to], None if probabilities is None else probabilities[apply_to])
    return expected_calibration_error(after, right)


def assess(
    confidence: list,
    right,
    probabilities: np.ndarray | None = None,
    gold: np.ndarray | None = None,
    target: float | None = None,
    risk: float = 0.1,
) -> Assessment:
    """The assessment of validation rows: `confidence` per row (None where the model gave none), `right`
    whether its answer was the gold label (a failed row is wrong), `probabilities` [rows, labels] and `gold`
    (label indices) where every row has per-label probabilities."""
    right = np.asarray(right, bool)
    n, correct = len(right), int(right.sum())
    low, high = accuracy_interval(correct, n) if n else (0.0, 1.0)
    has = np.array([c is not None for c in confidence], bool)
    conf = np.array([c for c in confidence if c is not None], float)
    kept = right[has]
    probs = probabilities if probabilities is not None and has.all() else None
    gold = gold if probs is not None else None
    acceptance = None
    if len(conf) < 2:
        calibration, ece_before, ece_after, after = Calibration("none"), None, None, conf
        if target is not None:
            acceptance = Acceptance(target, risk, None, 0.0, 0.0, None, n, DEFAULT_SEARCH)
    else:
        calibration = fit_calibration(conf, kept, probs, gold)
        after = calibration.many(conf, probs)
        ece_before, ece_after = expected_calibration_error(conf, kept), _cross_fitted_ece(conf, kept, probs, gold)
        if target is not None:  # on the model's own confidence: its order does not depend on the labels
            raw = np.array([c if c is not None else -np.inf for c in confidence], float)
            acceptance = accept_threshold(raw, right, target, risk)
    return Assessment(
        n, correct, low, high, calibration, ece_before, ece_after, acceptance, int((~has).sum()), conf, after, kept
    )


def apply(assessment: Assessment, prediction):
    """A Prediction with its confidence (and per-label scores) calibrated and, where a target was set, `accepted`
    decided on its own confidence; a failed or empty one as it is."""
    from dataclasses import replace

    if prediction is None or prediction.error is not None:
        return prediction
    confidence, scores = prediction.confidence, prediction.scores
    if confidence is not None:
        confidence, scores = assessment.calibration.confidence(confidence, scores)
    acceptance = assessment.acceptance
    accepted = None if acceptance is None else acceptance.accepts(prediction.confidence)
    return replace(prediction, confidence=confidence, scores=scores, accepted=accepted)
