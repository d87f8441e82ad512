"""One offline classifier that combines what it has (model string `offline`, the default).

Components, each giving per-label probabilities: the embedded LLM's label scoring (`llm`), embedding similarity to
the labels (`labels`), self-training on unlabelled texts (`self-trained`: the label similarity self-trained on
them, label_similarity.py; with examples, logistic regression on the examples and on the texts it labels most
confidently, pseudo_labels.py; `classify` passes the texts it labels), logistic regression on the examples'
embeddings (`examples`) and SetFit trained on the examples (`setfit`). The combination is a weighted sum of their
log-probabilities.

With examples, every component is cross-validated on them (stratified folds, each component trained on the other
folds; SetFit's fold models are kept and averaged as its final model), the weights are fitted to the out-of-fold
probabilities, and the automatic choice (`pick`) is the first of PRIORS that ran (the self-trained component, else
SetFit, which joins the defaults from SETFIT_FROM examples per label; SetFit first from SETFIT_FIRST_FROM,
priors_for) unless the other leads it clearly in cross-validated accuracy (by margin_for: more with fewer examples;
the prior is cross-validated first, and the other's folds stop as soon as it could no longer lead: SetFit not
trained at all where the self-trained component is within the margin of 1.0); the combination (its estimate with
weights fitted on the other folds) is used when asked for. That accuracy (mean ± spread over the folds; for the
self-trained component blended with its mean confidence on the texts, with_confidence) and its 95% interval
(accuracy_interval) is reported before anything is labelled. Without examples, given enough unlabelled texts, the
self-trained similarity is used alone: it beat the LLM and the plain similarity on all five shared data sets, at
embedding speed. Without either, the combination of `llm` and `labels` uses weights measured across the shared data
sets.

Training is kept within a time budget (offline_budget.py): its cost is estimated from the texts before anything is
trained, and SetFit is cut (fewer folds, fewer pairs, left out) where it would not fit. Given validation rows (a
sample of the texts being labelled, with their labels), each component is trained once on all the examples and
the choice and the estimate are made on those rows instead (choose_on_validation).

The trained state (SetFit fold models, weights, choice, estimate) is kept under $PROMPTCLF_HOME/offline/ by a
fingerprint of the labels, examples and settings, so a second run with the same examples starts at once (one
process trains it; another with the same examples meanwhile waits for it).
"""

from __future__ import annotations

import json
import logging
import shutil
import sys
import time
from collections.abc import Iterator, Sequence
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path
from typing import NamedTuple

import numpy as np

from promptclf.cache.offline_state import STATE, state_dir
from promptclf.core.files import directory_lock, write_atomically
from promptclf.core.hashing import fingerprint
from promptclf.core.identity import method_identity
from promptclf.core.labels import LabelSet
from promptclf.core.methods import Failure, Outcome, Prediction, from_probabilities
from promptclf.core.usage import Usage
from promptclf.methods.offline_budget import DEFAULT_TIME_BUDGET, STOP_SLACK, Plan, SetFitWork, plan
from promptclf.methods.setfit import SetFitConfig

log = logging.getLogger("promptclf")

ZERO_SHOT = ("llm", "labels")
SELF_TRAINED = "self-trained"  # a component wherever there are enough unlabelled texts
# The LLM is not among the defaults with examples: in the first run of benchmarks/few_labels.py (figures in
# the README) it was never the best single component at 2 or 8 per class on any of the five data sets, and
# its scoring of the examples was most of the cross-validation time (IMDb, 2 per class: 969 s).
# `components=` can add it.
WITH_EXAMPLES = ("labels", "examples", "setfit")
# SetFit is a default component only where every label has this many examples: below, it was far behind the
# self-trained component on every shared data set (benchmarks/few_labels.py: 2 per class, seeds 0-1, by 0.07 to
# 0.21; 4 per class, seed 0, by 0.05 to 0.18), and its cross-validation is most of the training time. At 8 it
# led on SMS Spam and GoEmotions. `components=` adds it anywhere.
SETFIT_FROM = 8
# Weights of the components' log-probabilities where they cannot be fitted. Without examples: chosen on the
# five shared data sets (benchmarks/few_labels.py --fit-defaults 0): the LLM at a quarter of the label
# similarity's weight had the best worst case (-0.045 against the better single component; equal weights
# -0.115, similarity alone -0.050). With fewer than two examples for some label nothing was measured: equal.
ZERO_SHOT_WEIGHTS = {"llm": 0.25, "labels": 1.0}
DEFAULT_WEIGHTS = {"llm": 1.0, "labels": 1.0, "self-trained": 1.0, "examples": 1.0, "setfit": 1.0}


@dataclass
class OfflineConfig:
    components: tuple | None = None  # None: see OfflineClassifier.names
    folds: int = 3
    seed: int = 0
    choose: str = "auto"  # auto (see pick), combination, or a component
    switch_margin: float | None = None  # how far another candidate must lead the prior (pick); None: margin_for
    l2: float = 0.01  # pulls fitted weights towards zero: few examples must not buy extreme weights
    setfit: dict = field(default_factory=dict)  # SetFitConfig options
    llm_model: str = "gemma3-270m"
    # Seconds of training (on 2 quiet CPU cores, as offline_budget.py estimates them before training) that SetFit
    # is cut to fit; None: no limit. Not part of the identity: only what it cuts is (OfflineClassifier.plan).
    time_budget: float | None = DEFAULT_TIME_BUDGET
    # [{"text", "label"}] from the texts being labelled, never trained on: each component is trained once on all
    # the examples and the choice and the estimate are made on these rows instead of by cross-validation.
    validation: list = field(default_factory=list)


# The options that are not the trained model's settings (OfflineClassifier.identity adds what they change).
NOT_SETTINGS = ("time_budget", "validation")


# --- components -------------------------------------------------------------------------------------


def method_probabilities(method, texts: Sequence[str], labels: LabelSet, usage: Usage | None = None) -> np.ndarray:
    """[len(texts), len(labels)] from any Method's per-label scores; a failed item gets a uniform row."""
    probs = np.full((len(texts), len(labels)), 1.0 / len(labels))
    for pos, outcome in method.predict(list(texts), usage or Usage()):
        if isinstance(outcome, Prediction) and outcome.scores:
            probs[pos] = [outcome.scores.get(name, 0.0) for name in labels.names]
    return probs


class Component:
    """fit(rows) -> self; probabilities(texts) -> array. `trains`: fitting on examples changes it. `progress`: a
    training that shows its own progress (SetFit's steps) shows it; off for cross-validation's folds, which one bar
    counts."""

    name = ""
    trains = True
    progress = False

    def __init__(self, labels: LabelSet, config: OfflineConfig):
        self.labels, self.config = labels, config

    def fit(self, rows: Sequence[dict], workdir: Path | None = None) -> Component:
        return self

    def fresh(self) -> Component:
        """An untrained copy with the same settings (for a cross-validation fold)."""
        return type(self)(self.labels, self.config)

    def probabilities(self, texts: Sequence[str], usage: Usage | None = None) -> np.ndarray:
        """The per-label probabilities of the Method this component fitted (`self.method`)."""
        return method_probabilities(self.method, texts, self.labels, usage)


class LabelsComponent(Component):
    name, trains = "labels", False

    def __init__(self, labels, config):
        from promptclf.methods.label_similarity import LabelSimilarity

        super().__init__(labels, config)
        self.method = LabelSimilarity(labels)  # embeds the labels once, on first use


class SelfTrainedComponent(Component):
    """Self-training on unlabelled texts: the label similarity self-trained on them (label_similarity.py);
    with examples, logistic regression on the examples and on the texts it labels most confidently
    (pseudo_labels.py)."""

    name = SELF_TRAINED

    def __init__(self, labels, config, unlabeled: Sequence[str] = ()):
        super().__init__(labels, config)
        self.unlabeled = unlabeled
        self.fit([])

    def fresh(self):
        return type(self)(self.labels, self.config, self.unlabeled)

    def fit(self, rows, workdir=None):
        from promptclf.methods.label_similarity import LabelSimilarity
        from promptclf.methods.pseudo_labels import PseudoLabelLR

        if rows:
            self.method = PseudoLabelLR(self.labels, self.unlabeled, rows, seed=self.config.seed).fit()
        else:
            self.method = LabelSimilarity(self.labels, unlabeled=self.unlabeled)
        return self


class ExamplesComponent(Component):
    name = "examples"

    def fit(self, rows, workdir=None):
        from promptclf.methods.baselines import EmbeddingLR

        self.method = EmbeddingLR(self.labels, seed=self.config.seed).fit(
            [r["text"] for r in rows], [r["label"] for r in rows]
        )
        return self


class SetFitComponent(Component):
    name = "setfit"

    def fit(self, rows, workdir=None):
        from promptclf.methods.setfit import SetFitMethod, train_setfit

        saved = workdir / "promptclf.json" if workdir else None
        if saved is not None and saved.exists():  # trained by an earlier run with the same examples
            self.method = SetFitMethod.load(workdir, json.loads(saved.read_text()))
        else:
            self.method = train_setfit(
                rows, self.labels, out=workdir, seed=self.config.seed, progress=self.progress, **self.config.setfit
            )
        return self


class LLMComponent(Component):
    """Label scoring by the embedded LLM: zero-shot (calibrated, float32) without examples, the nearest
    example as the demonstration (int8) with them; the settings measured best for each (see local.py)."""

    name = "llm"

    def __init__(self, labels, config):
        super().__init__(labels, config)
        self.rows: list[dict] = []
        self._method = None

    def fit(self, rows, workdir=None):
        self.rows, self._method = list(rows), None
        return self

    @property
    def method(self):
        """Built once per fit: it keeps the calibration prior and the example pool's embeddings."""
        if self._method is None:
            from promptclf.methods.local import local_scorer
            from promptclf.methods.scoring import LabelScorer, ScoringPrompt
            from promptclf.methods.similar_examples import SimilarExamples

            selector = SimilarExamples(self.rows, k=1) if self.rows else None
            scorer = local_scorer(self.config.llm_model, quantize="int8" if self.rows else None)
            self._method = LabelScorer(
                scorer, self.labels, prompt=ScoringPrompt.build(demo_words=12), selector=selector
            )
        return self._method


# What answered, as Prediction.source names it, per component ("llm": see OfflineClassifier.source).
SOURCES = {"labels": "embedding", "self-trained": "embedding", "examples": "embedding", "setfit": "setfit"}

COMPONENTS = {
    c.name: c for c in (LLMComponent, LabelsComponent, SelfTrainedComponent, ExamplesComponent, SetFitComponent)
}
# Components whose cross-validation models are also the final model (their probabilities averaged): SetFit's
# training is its costliest step, so it trains once per fold and never again on all the examples. Each fold
# model saw (folds - 1) / folds of the examples, so the estimate is of one such model, and the average of
# them is what labels.
CROSS_FITTED = ("setfit",)


class FoldAverage(Component):
    """The mean of the fold models' probabilities."""

    def __init__(self, members: list[Component]):
        super().__init__(members[0].labels, members[0].config)
        self.members = members

    def probabilities(self, texts, usage=None):
        return np.mean([m.probabilities(texts, usage) for m in self.members], axis=0)


def fold_dir(workdir: Path | None, name: str, k: int) -> Path | None:
    return workdir / name / f"fold-{k}" if workdir is not None and name in CROSS_FITTED else None


# --- combining --------------------------------------------------------------------------------------


def combine(probs: dict[str, np.ndarray], weights: dict[str, float]) -> np.ndarray:
    """softmax(sum_m w_m log p_m): the weighted geometric mean of the components, normalised."""
    from promptclf.methods.scoring import softmax

    first = next(iter(probs.values()))
    total = np.zeros_like(first)
    for name, p in probs.items():
        if weights.get(name, 0.0):
            total += weights[name] * np.log(np.clip(p, 1e-6, 1.0))
    return softmax(total)


def fit_weights(probs: dict[str, np.ndarray], y: np.ndarray, l2: float) -> dict[str, float]:
    """Non-negative weights minimising the log-loss of the combination on (out-of-fold) probabilities."""
    from scipy.optimize import minimize

    names = list(probs)
    logs = np.stack([np.log(np.clip(probs[n], 1e-6, 1.0)) for n in names])  # [M, n, L]
    rows = np.arange(len(y))

    def loss(w):
        z = np.tensordot(w, logs, axes=1)
        z = z - z.max(axis=1, keepdims=True)
        logp = z - np.log(np.exp(z).sum(axis=1, keepdims=True))
        return -logp[rows, y].mean() + l2 * float(w @ w)

    start = np.full(len(names), 1.0 / len(names))
    best = minimize(loss, start, method="L-BFGS-B", bounds=[(0.0, None)] * len(names))
    return {n: float(w) for n, w in zip(names, best.x)}


def fewest_per_label(y: np.ndarray, n_labels: int = 0) -> int:
    """How many examples the rarest label has (0 without examples, or where one of n_labels has none)."""
    return int(np.bincount(y, minlength=n_labels).min()) if len(y) else 0


def can_cross_validate(y: np.ndarray, n_labels: int) -> bool:
    """Stratified folds need at least two examples of every label."""
    return fewest_per_label(y, n_labels) >= 2


def folds_of(y: np.ndarray, n_folds: int, seed: int) -> list[tuple[np.ndarray, np.ndarray]]:
    from sklearn.model_selection import StratifiedKFold

    splitter = StratifiedKFold(n_splits=min(n_folds, fewest_per_label(y)), shuffle=True, random_state=seed)
    return list(splitter.split(np.zeros(len(y)), y))


@dataclass
class Estimate:
    """The estimated accuracy of what was chosen: cross-validated (mean and spread (std) over the folds), for the
    self-trained component blended with its confidence on the texts (with_confidence); or, given validation rows,
    its accuracy on them (`validation`: how many)."""

    chosen: str
    weights: dict
    accuracy: float | None = None
    spread: float | None = None
    folds: int = 0
    candidates: dict = field(default_factory=dict)  # every candidate's cross-validated (or validation) accuracy
    low: float | None = None  # the stated 95% interval of `accuracy` (accuracy_interval)
    high: float | None = None
    cross_validated: float | None = None  # where `accuracy` also weighs the confidence (with_confidence)
    confidence: float | None = None
    texts: int = 0
    stopped: dict = field(default_factory=dict)  # candidates stopped early: their fold accuracies (hopeless)
    rows: int = 0  # the examples the accuracy was measured on, where fewer than all (folds cut by the budget)
    validation: int = 0  # the validation rows it was measured on (0: cross-validated on the examples)
    budget: dict = field(default_factory=dict)  # the time budget's plan where it cut something (Plan.to_json)

    def describe(self) -> str:
        used = "+".join(n for n, w in self.weights.items() if w) or self.chosen
        cut = f"; {self.budget['said']}" if self.budget.get("said") else ""
        if self.accuracy is None:
            how = self.chosen if self.chosen != "combination" else f"{used}, default weights"
            return f"offline: {how} (no estimate without 2+ examples per label){cut}"
        interval = f", 95% interval {self.low:.2f}-{self.high:.2f}" if self.low is not None else ""
        if self.validation:
            return (
                f"offline: {self.chosen} ({used}), accuracy {self.accuracy:.3f} on {self.validation} validation rows "
                f"(each component trained once on the examples){interval}{cut}"
            )
        measured = self.accuracy if self.confidence is None else self.cross_validated
        cv = (
            f"cross-validated accuracy {measured:.3f} ± {self.spread:.3f} over {self.folds} folds of the examples"
            if self.folds != 1
            else f"accuracy {measured:.3f} on the held-out fold of the examples"  # one fold: no spread to give
        )
        stopped = "".join(
            f"; {name} stopped after {len(accs)} of {self.folds_of(name)} folds"
            f"{f' ({np.mean(accs):.3f})' if accs else ''}: it could not be chosen"
            for name, accs in self.stopped.items()
        )
        if self.confidence is None:
            return f"offline: {self.chosen} ({used}), {cv}{interval}{stopped}{cut}"
        return (
            f"offline: {self.chosen} ({used}), estimated accuracy {self.accuracy:.3f} ({cv}, mean confidence "
            f"{self.confidence:.3f} on {self.texts} of the texts){interval}{stopped}{cut}"
        )

    def folds_of(self, name: str) -> int:
        """The folds a component was cross-validated on (SetFit's may be fewer: the time budget)."""
        return (self.budget.get("folds") or {}).get(name, self.folds)


# How many examples the mean confidence on the texts being labelled counts as in the estimate (with_confidence).
# Measured on the five shared data sets (benchmarks/few_labels.py --estimators: the self-trained component, 2-16
# examples per class, seeds 0-9, 200 runs, accuracy on 800 texts): mean |estimate - accuracy| 0.097 for the
# cross-validated accuracy alone, 0.072 for the mean confidence alone, 0.060 blended with 16 (0.059-0.067 for 8
# to 64). SetFit's averaged fold models are far less confident than they are right (mean confidence 0.23 below
# the accuracy in the few_labels cells), so the blend is for the self-trained component only.
CONFIDENCE_WEIGHT = 16
CALIBRATED = (SELF_TRAINED,)


def with_confidence(estimate: Estimate, confidence: float, texts: int, n_examples: int) -> Estimate:
    """The cross-validated accuracy on n examples blended with the chosen component's mean confidence (its
    top probability) on the texts being labelled: many texts but a biased measure, against few examples but
    an unbiased one. The interval is the one on n examples (accuracy_interval)."""
    blended = (n_examples * estimate.accuracy + CONFIDENCE_WEIGHT * confidence) / (n_examples + CONFIDENCE_WEIGHT)
    low, high = accuracy_interval(blended, n_examples)
    return replace(
        estimate,
        accuracy=blended,
        low=low,
        high=high,
        cross_validated=estimate.accuracy,
        confidence=confidence,
        texts=texts,
    )


class CrossValidation(NamedTuple):
    oof: dict[str, np.ndarray]  # out-of-fold probabilities of every component that ran every fold
    folds: list
    fold_models: dict[str, list[Component]]  # of the cross-fitted components
    stopped: dict[str, list[float]]  # the fold accuracies of the candidates stopped early (hopeless)


def cross_validate(
    components: dict[str, Component],
    rows: list[dict],
    y: np.ndarray,
    config: OfflineConfig,
    workdir: Path | None,
    progress: bool = False,
    stop_hopeless: bool = False,
    ran: dict[str, int] | None = None,
) -> CrossValidation:
    """Out-of-fold probabilities of every component on the examples (a zero-shot one needs no folds). With
    stop_hopeless, the automatic choice's prior runs first and another candidate stops at the fold after which
    it could no longer be picked (hopeless): the same choice, without SetFit's remaining trainings. `ran`:
    components trained on only the first so many folds (the time budget's cut; their other rows stay 0)."""
    folds = folds_of(y, config.folds, config.seed)
    texts = [r["text"] for r in rows]
    oof, fold_models, stopped, means = {}, {}, {}, {}
    prior = next((n for n in priors_for(y) if n in components), None) if stop_hopeless else None
    own = {name: folds[: (ran or {}).get(name, len(folds))] for name in components}
    bar = _trainings_bar(components, own, progress)
    for name in sorted(components, key=lambda n: n != prior):  # the others are measured against the prior
        component, started = components[name], time.perf_counter()
        if not component.trains:
            oof[name] = component.probabilities(texts)
        else:
            oof[name], accuracies, its = np.zeros((len(rows), len(component.labels))), [], own[name]
            for k, (train, test) in enumerate(its):
                if prior and hopeless(name, accuracies, len(its), prior, means, margin_for(config, len(rows))):
                    stopped[name] = accuracies
                    bar.update(len(its) - k)  # the folds it will not train
                    break
                bar.set_postfix_str(f"{name}, fold {k + 1} of {len(its)}")
                part = component.fresh().fit([rows[i] for i in train], fold_dir(workdir, name, k))
                bar.update(1)
                oof[name][test] = part.probabilities([texts[i] for i in test])
                accuracies.append(fold_accuracy(oof[name], y, test))
                if name in CROSS_FITTED:
                    fold_models.setdefault(name, []).append(part)
        if name in stopped:
            del oof[name]
            fold_models.pop(name, None)
            if fold_dir(workdir, name, 0) is not None:  # the folds it trained are never used
                shutil.rmtree(workdir / name, ignore_errors=True)
        else:
            means[name] = float(np.mean([fold_accuracy(oof[name], y, test) for _, test in own[name]]))
        if progress:
            how = f"stopped after {len(stopped[name])} folds: it could not be picked" if name in stopped else "done"
            log.warning(
                "promptclf: cross-validated %s on %d examples in %.0fs (%s)",
                name,
                len(rows),
                time.perf_counter() - started,
                how,
            )
    bar.close()
    return CrossValidation({n: oof[n] for n in components if n in oof}, folds, fold_models, stopped)


def _trainings_bar(components: dict[str, Component], folds: dict[str, list], progress: bool):
    """One bar on stderr over the trainings cross-validation makes (SetFit's take minutes on 2 cores)."""
    from tqdm.auto import tqdm

    trainings = sum(len(folds[n]) for n, c in components.items() if c.trains)
    return tqdm(
        total=trainings,
        desc="cross-validating on the examples",
        unit="training",
        file=sys.stderr,
        disable=not progress or trainings == 0,
    )


def fold_accuracy(probs: np.ndarray, y: np.ndarray, test) -> float:
    """The accuracy of out-of-fold probabilities on one fold's rows: cross_validate (to stop a hopeless candidate)
    and choose (to pick) must compute it alike, to the last bit."""
    return float((probs[test].argmax(1) == y[test]).mean())


def hopeless(
    name: str, accuracies: list[float], n_folds: int, prior: str | None, means: dict[str, float], margin: float
) -> bool:
    """Whether a candidate of pick() cannot be picked even if it is right on every row of the folds left: it must
    lead the prior's cross-validated accuracy by more than the margin (before its first fold: whether the prior
    is within the margin of 1.0). Its best case is averaged as choose() averages, so rounding cannot make it
    stop a candidate that pick() would have taken."""
    if prior not in means or name == prior or name not in PRIORS:
        return False
    best_possible = float(np.mean(accuracies + [1.0] * (n_folds - len(accuracies))))
    return not best_possible - means[prior] > margin


# The candidates of the automatic choice, the first that ran kept unless another leads it by more than the
# margin. Chosen on benchmarks/few_labels.py (--rules, 22 cells, seeds 0-1): the self-trained component first,
# SetFit second, margin 0.10, the others candidates only where neither ran: within a point of the best single
# component in 17 cells, mean shortfall 0.011 (with every single component a candidate: 16 cells, 0.022;
# SetFit first: 11 cells). Replayed on the 60 cells of 2-64 per class, seeds 0-2, with the margin below: 50 of
# 60, mean shortfall 0.005 / 0.010 (seed 0 / seeds 1-2). The other orders, at their best fixed margin (0.00):
# SetFit first 50, 0.005 / 0.027; every single component a candidate 48; the equal-weight self-trained+SetFit
# pair first 46, the pair alone 39.
PRIORS = (SELF_TRAINED, "setfit")
# From this many examples of every label SetFit comes first (priors_for): with more examples it learns more from
# them, the self-trained component less. benchmarks/few_labels.py at 16 and 32 per class (seeds 0-2): SetFit led
# or tied on AG News, TREC, SMS Spam and GoEmotions in every cell, and trailed on IMDb in 5 of 6 (by 0.01 to 0.075).
# Replayed (--rules, 90 cells) SetFit first from 16 was within a point of the best single component in 76 cells,
# from 32 in 71, from 64 in 70, never in 68, on seed 0 and on the other seeds alike (README).
SETFIT_FIRST_FROM = 16


def priors_for(y: np.ndarray, setfit_first_from: int = SETFIT_FIRST_FROM) -> tuple:
    """PRIORS in the order for these examples' labels: SetFit first where every label has setfit_first_from."""
    return PRIORS[::-1] if len(y) and fewest_per_label(y) >= setfit_first_from else PRIORS


# How far another candidate must lead the prior in cross-validated accuracy: SWITCH_SCALE / sqrt(examples), as
# the cross-validation's noise shrinks. A fixed 0.10 kept the self-trained component at 64 per class where
# SetFit led by 0.08 in cross-validation and by 0.065 (SMS Spam) and 0.125 (GoEmotions) on the test rows;
# replayed on 60 cells (--rules: 2-64 per class, seeds 0-2) 0.4/sqrt(n) is within a point of the best single
# component in 50 (0.10: 43; 0.05: 50; 0.57/sqrt(n): 49; 0.3/sqrt(n) and 0.00: 51, one cell more, not enough to
# drop the lead of 0.10 to 0.20 that 0.4/sqrt(n) still asks for at 2 per class, where leads were noise).
SWITCH_SCALE = 0.4


def margin_for(config: OfflineConfig, n_examples: int) -> float:
    return config.switch_margin if config.switch_margin is not None else SWITCH_SCALE / float(np.sqrt(n_examples))


def pick(means: dict[str, float], margin: float, priors: tuple = ()) -> str:
    """The first of `priors` (PRIORS) that ran, unless another of them leads it by more than `margin` in
    cross-validated accuracy; where none of them ran, the best single component. With a few examples per fold
    that accuracy is noisy: on the shared data sets (2 and 8 per class) the plain similarity's and the
    examples' leads were noise (TREC, 2 per class: the similarity led by 0.17 in cross-validation and scored
    0.46 against 0.615), and taking the plain best picked the LLM on SMS Spam at 0.575 where SetFit scored
    0.905. The combination is chosen only when asked for."""
    singles = {n: v for n, v in means.items() if n != "combination"}
    ran = [n for n in priors or PRIORS if n in singles]
    candidates = {n: singles[n] for n in ran} if ran else singles
    prior = ran[0] if ran else None
    best = max(candidates, key=lambda n: (candidates[n], n == prior))
    return best if prior is None or candidates[best] - candidates[prior] > margin else prior


def choose(
    oof: dict[str, np.ndarray],
    y: np.ndarray,
    folds: list,
    config: OfflineConfig,
    stopped: dict[str, list[float]] | None = None,
    ran: dict[str, int] | None = None,
) -> Estimate:
    """Cross-validated accuracy of every single component and of the combination, and the choice among them
    (the components stopped early, cross_validate's hopeless ones, are not among them). `ran`: components
    cross-validated on only the first so many folds (the time budget's cut): their accuracy is on those folds'
    rows, and the combination, which needs every component on every row, is no candidate."""
    ran = {n: k for n, k in (ran or {}).items() if n in oof and k < len(folds)}
    per_fold = {name: [fold_accuracy(p, y, test) for _, test in folds[: ran.get(name)]] for name, p in oof.items()}
    if not ran:
        per_fold["combination"] = []
        for train, test in folds:
            weights = fit_weights({n: p[train] for n, p in oof.items()}, y[train], config.l2)
            combined = combine({n: p[test] for n, p in oof.items()}, weights)
            per_fold["combination"].append(float((combined.argmax(1) == y[test]).mean()))
    means = {name: float(np.mean(accs)) for name, accs in per_fold.items()}
    chosen = pick(means, margin_for(config, len(y)), priors_for(y)) if config.choose == "auto" else config.choose
    if chosen not in means:
        from promptclf.core.errors import ConfigError

        raise ConfigError(f"choose={chosen!r}: the time budget left it out or it did not run; raise time_budget=")
    weights = fit_weights(oof, y, config.l2) if chosen == "combination" else {chosen: 1.0}
    rows = sum(len(test) for _, test in folds[: ran.get(chosen)])
    low, high = accuracy_interval(means[chosen], rows)
    return Estimate(
        chosen,
        weights,
        means[chosen],
        float(np.std(per_fold[chosen])),
        len(per_fold[chosen]),
        means,
        low,
        high,
        stopped=dict(stopped or {}),
        rows=rows if rows < len(y) else 0,
    )


def choose_on_validation(probs: dict[str, np.ndarray], y: np.ndarray, config: OfflineConfig, priors: tuple) -> Estimate:
    """The choice among components trained once on all the examples, by their accuracy on validation rows they
    were never trained on: the prior (priors_for the examples) unless another single component leads it by more
    than margin_for that many rows. With a random sample of the texts the leads of the plain similarity and the
    examples component are no longer the noise they were in cross-validation on a few examples (pick), so every
    single component is a candidate. The combination's weights are fitted on the validation rows, its accuracy
    measured on the folds of them it was not fitted on; the interval is the Wilson interval on those rows."""
    means = {n: float((p.argmax(1) == y).mean()) for n, p in probs.items()}
    if len(probs) > 1 and can_cross_validate(y, probs[next(iter(probs))].shape[1]):
        right = 0
        for train, test in folds_of(y, config.folds, config.seed):
            weights = fit_weights({n: p[train] for n, p in probs.items()}, y[train], config.l2)
            right += int((combine({n: p[test] for n, p in probs.items()}, weights).argmax(1) == y[test]).sum())
        means["combination"] = right / len(y)
    if config.choose != "auto":
        chosen = config.choose
    else:
        singles = {n: v for n, v in means.items() if n != "combination"}
        prior = next((n for n in priors if n in singles), None)
        best = max(singles, key=lambda n: (singles[n], n == prior))
        chosen = best if prior is None or singles[best] - singles[prior] > margin_for(config, len(y)) else prior
    if chosen not in means:
        from promptclf.core.errors import ConfigError

        raise ConfigError(f"choose={chosen!r}: not measured on the validation rows (give 2+ rows of every label)")
    weights = fit_weights(probs, y, config.l2) if chosen == "combination" else {chosen: 1.0}
    low, high = wilson_interval(means[chosen], len(y))
    return Estimate(chosen, weights, means[chosen], candidates=means, low=low, high=high, validation=len(y))


def stated_interval(estimate: Estimate, n_examples: int) -> tuple[float, float]:
    """The interval an estimate states: the Wilson interval on its validation rows, else accuracy_interval on
    the examples it was measured on."""
    if estimate.validation:
        return wilson_interval(estimate.accuracy, estimate.validation)
    return accuracy_interval(estimate.accuracy, estimate.rows or n_examples)


def checked_rows(rows, labels: LabelSet, what: str) -> list[dict]:
    """[{"text", "label"}] with every label one of `labels` and every text a string (InputError otherwise)."""
    from promptclf.core.errors import InputError

    checked = []
    for i, row in enumerate(rows or ()):
        if not isinstance(row, dict) or not isinstance(row.get("text"), str):
            raise InputError(f"{what} {i}: give a dict with a text (str) and a label, got {row!r:.80}")
        checked.append({"text": row["text"], "label": labels.check(row.get("label"), f"{what} {i}")})
    return checked


def wilson_interval(accuracy: float, n: int, z: float = 1.96) -> tuple[float, float]:
    """The 95% Wilson score interval of an accuracy measured on n examples: with a few examples per label it
    is wide, and the fold spread alone understates that. (statsmodels' proportion_confint, through
    promptclf.core.trust.accuracy_interval; `z` the normal quantile of the two-sided level.)"""
    from scipy.stats import norm

    from promptclf.core.trust import accuracy_interval as interval

    return interval(accuracy * n, n, level=float(2 * norm.cdf(z) - 1), method="wilson")


# The estimate's error that no number of examples removes, as a standard deviation: examples drawn per class
# measure another label mix than the texts have (GoEmotions), SetFit's fold models are scored one by one and
# used averaged, the confidence is calibrated differently on each data set. The Wilson interval alone held the
# accuracy in 93% of the self-trained component's runs on 800 texts and in 76 of the 90 few_labels cells (34 of
# 44 where SetFit was chosen, from 16 examples per label: narrow intervals). The smallest bias that brought
# the former to 95% (benchmarks/few_labels.py --estimators: 0.02 94%, 0.03 96%, 0.04 97%); with it the cells: 82 of 90.
ESTIMATE_BIAS = 0.03


def accuracy_interval(accuracy: float, n: int, bias: float = ESTIMATE_BIAS, z: float = 1.96) -> tuple[float, float]:
    """The 95% interval stated with the estimate: each side of the Wilson interval on n examples widened by the
    estimate's systematic error (`bias`, a standard deviation) added in quadrature."""
    low, high = wilson_interval(accuracy, n, z)
    return (
        float(max(0.0, accuracy - np.hypot(accuracy - low, z * bias))),
        float(min(1.0, accuracy + np.hypot(high - accuracy, z * bias))),
    )


class OfflineClassifier:
    """A labelling method: the components' probabilities, combined as chosen (see the module's docstring)."""

    cacheable = True

    def __init__(
        self,
        labels,
        examples: Sequence[dict] = (),
        config: OfflineConfig | None = None,
        progress: bool = False,
        unlabeled: Sequence[str] = (),
    ):
        from promptclf.methods.label_similarity import unlabeled_sample

        self.labels = LabelSet.of(labels)
        self.examples = [
            {"text": r["text"], "label": self.labels.check(r["label"], f"example {i}")}
            for i, r in enumerate(examples or ())
        ]
        self.config = config or OfflineConfig()
        self.validation = checked_rows(self.config.validation, self.labels, "validation row")
        self.progress = progress
        self.unlabeled = unlabeled_sample(unlabeled)
        self.estimate: Estimate | None = None
        self.components: dict[str, Component] = {}
        self._fold_models: dict[str, list[Component]] = {}

    @property
    def names(self) -> tuple:
        if self.config.components:
            return tuple(self.config.components)
        self_trained = (SELF_TRAINED,) if self.unlabeled else ()
        if not self.examples:
            return self_trained or ZERO_SHOT
        enough = fewest_per_label(self.example_labels, len(self.labels)) >= SETFIT_FROM
        return tuple(c for c in WITH_EXAMPLES if c != "setfit" or enough) + self_trained

    @property
    def trained_names(self) -> tuple:
        """The components this fit trains: `names`, less SetFit where the time budget left it out."""
        return tuple(n for n in self.names if not (n == "setfit" and self.plan.skip_setfit))

    @property
    def example_labels(self) -> np.ndarray:
        """The examples' labels, as indices into the label set."""
        return np.array([self.labels.index(r["label"]) for r in self.examples], dtype=int)

    @property
    def plan(self) -> Plan:
        """What this fit trains within config.time_budget (offline_budget.py), decided before any training."""
        if not hasattr(self, "_plan"):
            # The unlabelled texts are not counted: they are the texts being labelled, embedded for that anyway.
            texts = [r["text"] for r in self.examples + self.validation]
            self._plan = plan(self.config.time_budget, texts, self._setfit_work(), self.config.choose != "combination")
        return self._plan

    def _setfit_work(self) -> SetFitWork | None:
        """SetFit's trainings as _fit_in will run them: once on all the examples with validation rows or too few
        examples to cross-validate, else once per fold (CROSS_FITTED: no training on all of them)."""
        if "setfit" not in self.names or not self.examples:
            return None
        texts, n = tuple(r["text"] for r in self.examples), len(self.examples)
        config = SetFitConfig(**self.config.setfit)
        y = self.example_labels
        if self.validation or not can_cross_validate(y, len(self.labels)):
            return SetFitWork(texts, final=(n, len(self.validation)), config=config)
        folds = tuple((len(train), len(test)) for train, test in folds_of(y, self.config.folds, self.config.seed))
        return SetFitWork(texts, folds=folds, config=config)

    @property
    def training_config(self) -> OfflineConfig:
        """The config the components train with: SetFit's pairs cut where the time budget cut them, and within a
        budget each SetFit training's steps stopped at STOP_SLACK times its estimate (setfit.py's stop_after)."""
        setfit = dict(self.config.setfit)
        if self.plan.setfit_pairs is not None:
            fewest = SetFitConfig(**setfit).min_pairs
            setfit.update(max_pairs=self.plan.setfit_pairs, min_pairs=min(fewest, self.plan.setfit_pairs))
        if self.plan.budget is not None and self.plan.setfit_training and "stop_after" not in setfit:
            setfit["stop_after"] = STOP_SLACK * self.plan.setfit_training
        return self.config if setfit == self.config.setfit else replace(self.config, setfit=setfit)

    @property
    def identity(self) -> str:
        if not hasattr(self, "_identity"):
            from promptclf.methods.embeddings import encoder_identity

            # The identity's version, where the other methods name their model (the components' models follow:
            # the encoder and the embedded LLM's version). With examples: 2 when the self-trained component
            # learned from pseudo-labels (pseudo_labels.py), 3 when the automatic choice became the self-trained
            # component or SetFit only (pick), 4 when its margin became margin_for, 5 when SetFit came first from
            # SETFIT_FIRST_FROM examples per label: answers and trained state kept before are not this method's.
            # The time budget and validation rows come after, only where they change what is trained or chosen,
            # so a fit they change nothing in keeps its identity.
            version = 5 if self.examples else 1
            settings = {k: v for k, v in asdict(self.config).items() if k not in NOT_SETTINGS}
            changes = []
            if self.plan.cut:
                changes.append({"time_budget": self.plan.key()})
            if self.validation:
                changes.append({"validation": [[r["text"], r["label"]] for r in self.validation]})
            self._identity = method_identity(
                "offline",
                version,
                settings,
                self.names,
                self.labels.fingerprint(),
                encoder_identity(),  # the default encoder's, known without loading it
                self._llm_version(),
                [[r["text"], r["label"]] for r in self.examples],
                fingerprint(self.unlabeled) if self.unlabeled else None,
                *changes,
                hashed=True,
            )
        return self._identity

    def _llm_version(self) -> str | None:
        from promptclf.methods.local import EMBEDDED, embedded_version

        if "llm" not in self.names:
            return None
        return embedded_version() if self.config.llm_model == EMBEDDED else self.config.llm_model

    def workdir(self) -> Path:
        return state_dir(self.identity)

    def fit(self) -> OfflineClassifier:
        """Cross-validate and choose (or read the choice an earlier run made), then train what is used. One process
        at a time: another with the same examples waits, then reads what this one kept."""
        workdir = self.workdir()
        with directory_lock(workdir, "training the offline classifier in"):
            self._fit_in(workdir)
        (log.warning if self.progress else log.info)("promptclf: %s", self.estimate.describe())
        return self

    def _fit_in(self, workdir: Path) -> None:
        y = self.example_labels
        state = workdir / STATE
        if state.exists():
            self.estimate = Estimate(**json.loads(state.read_text()))
            if self.estimate.accuracy is not None:  # computed on every read: states saved before get today's
                self.estimate = replace(
                    self.estimate, **dict(zip(("low", "high"), stated_interval(self.estimate, len(y))))
                )
        elif self.validation:
            self._choose_on_validation(workdir)
        elif can_cross_validate(y, len(self.labels)):
            self._cross_validate(workdir)
        else:
            defaults = DEFAULT_WEIGHTS if self.examples else ZERO_SHOT_WEIGHTS
            chosen = f"self-trained on {len(self.unlabeled)} unlabelled texts" if self.unlabeled else "combination"
            weights = {n: defaults.get(n, 1.0) for n in self.trained_names}
            self.estimate = Estimate(chosen, weights, budget=self.plan.to_json())
        used = [n for n, w in self.estimate.weights.items() if w > 0]
        self.components = {n: self.components.get(n) or self._final(n, workdir) for n in used}
        if (
            self.estimate.chosen in CALIBRATED
            and self.estimate.accuracy is not None
            and self.estimate.confidence is None
            and not self.estimate.validation
            and self.unlabeled
        ):
            confidence = self.components[self.estimate.chosen].probabilities(self.unlabeled).max(axis=1).mean()
            rows = self.estimate.rows or len(y)
            self.estimate = with_confidence(self.estimate, float(confidence), len(self.unlabeled), rows)
        write_atomically(state, json.dumps(asdict(self.estimate), indent=2))

    def _announce(self, doing: str) -> None:
        if self.progress:
            cut = f"; {self.plan.describe()}" if self.plan.cut else ""
            log.warning("promptclf: %s, once for these examples%s", doing, cut)

    def _cross_validate(self, workdir: Path) -> None:
        y = self.example_labels
        names = self.trained_names
        self._announce(f"cross-validating {', '.join(names)} on {len(y)} examples ({self.config.folds} folds)")
        ran = {"setfit": self.plan.setfit_folds} if self.plan.setfit_folds else {}
        cv = cross_validate(
            {n: self._component(n) for n in names},
            self.examples,
            y,
            self.training_config,
            workdir,
            self.progress,
            stop_hopeless=self.config.choose == "auto",
            ran=ran,
        )
        self._fold_models = cv.fold_models
        self.estimate = replace(choose(cv.oof, y, cv.folds, self.config, cv.stopped, ran), budget=self.plan.to_json())

    def _choose_on_validation(self, workdir: Path) -> None:
        """Each component trained once on all the examples, chosen and measured on the validation rows."""
        names = self.trained_names
        self._announce(
            f"training {', '.join(names)} on {len(self.examples)} examples, choosing on "
            f"{len(self.validation)} validation rows"
        )
        trained = {n: self._trained_on_all(n, workdir) for n in names}
        texts = [r["text"] for r in self.validation]
        y = np.array([self.labels.index(r["label"]) for r in self.validation], dtype=int)
        probs = {n: c.probabilities(texts) for n, c in trained.items()}
        estimate = choose_on_validation(probs, y, self.config, priors_for(self.example_labels))
        self.estimate = replace(estimate, budget=self.plan.to_json())
        self.components = {n: trained[n] for n, w in estimate.weights.items() if w > 0}

    def _final(self, name: str, workdir: Path) -> Component:
        """The cross-fitted fold models where cross-validation made them, else one trained on all examples."""
        if name in self._fold_models:
            return FoldAverage(self._fold_models[name])
        folds = [fold_dir(workdir, name, k) for k in range(self.estimate.folds_of(name))]
        if folds and all(d is not None and (d / "promptclf.json").exists() for d in folds):
            return FoldAverage([self._component(name).fit([], d) for d in folds])
        return self._trained_on_all(name, workdir)

    def _trained_on_all(self, name: str, workdir: Path) -> Component:
        if self.progress and name == "setfit" and not (workdir / name / "promptclf.json").exists():
            log.warning(
                "promptclf: training SetFit on %d examples (%d steps)",
                len(self.examples),
                SetFitConfig(**self.training_config.setfit).steps(len(self.examples)),
            )
        component = self._component(name)
        component.progress = self.progress  # one training: its own steps bar
        return component.fit(self.examples, workdir / name)

    def _component(self, name: str) -> Component:
        if name == SELF_TRAINED:
            if not self.unlabeled:
                from promptclf.core.errors import ConfigError
                from promptclf.methods.label_similarity import MIN_UNLABELED

                raise ConfigError(f"the {SELF_TRAINED} component needs {MIN_UNLABELED} or more unlabelled texts")
            return SelfTrainedComponent(self.labels, self.training_config, self.unlabeled)
        return COMPONENTS[name](self.labels, self.training_config)

    def probabilities(self, texts: Sequence[str], usage: Usage | None = None) -> np.ndarray:
        if self.estimate is None:
            self.fit()
        probs = {n: c.probabilities(texts, usage) for n, c in self.components.items()}
        return combine(probs, self.estimate.weights)

    @property
    def source(self) -> str:
        """What answers (Prediction.source): the components in use, by kind, joined by "+" where several are
        combined ("gemma+embedding" for the zero-shot combination)."""
        from promptclf.methods.local import EMBEDDED

        llm = "gemma" if self.config.llm_model == EMBEDDED else "local-llm"
        return "+".join(dict.fromkeys(SOURCES.get(name, llm) for name in self.components))

    def predict(self, texts: Sequence[str], usage: Usage) -> Iterator[tuple[int, Outcome]]:
        if self.estimate is None:
            self.fit()  # outside the try: a training or configuration error is the caller's, not an item's
        try:  # each component adds its own compute time and tokens to the usage
            yield from from_probabilities(
                self.labels, lambda t: self.probabilities(t, usage), texts, Usage(), self.source
            )
        except Exception as exc:  # noqa: BLE001 - reported per item, like any method's failure
            yield from ((i, Failure(f"offline classifier failed: {exc}")) for i in range(len(texts)))
