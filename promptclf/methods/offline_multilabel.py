"""Offline multi-label (model `offline` with multi_label=True): a probability per label, each its own (one-vs-rest,
not a softmax across the labels), so an item gets every label its probability carries past that label's threshold.

Without examples (zero-shot): the label similarity (label_similarity.py, self-trained on the texts being labelled
where there are enough) scores the labels against each other; a label's score is its probability relative to the
most probable label's, and an item gets every label within ZERO_SHOT_RATIO of its best (the best always).

With examples (rows with `labels`, a list or names joined by `;`, or one `label`), every component trains on them:
`examples`, one logistic regression per label on the examples' MiniLM embeddings, and `labels`, the label
similarity turned into a probability per label by a logistic regression per label on it (Platt scaling). They are
cross-validated on the examples (COMPONENTS; folds shuffled with the seed), their combination (a weighted sum of
their log-odds, weights shared by the labels and fitted on the out-of-fold probabilities) joins them as a
candidate, and the candidate with the best cross-validated F1 is used. Each label's threshold is chosen on the
out-of-fold probabilities of what is used, for the F1 the config names (micro by default; choose_thresholds),
giving no more labels per item than the examples carry plus CARDINALITY_SLACK (Cardinality); a
`validation` sample (rows never trained on) takes the place of the cross-validation where given. An item with no
label past its threshold gets its most probable label, unless the task allows no label (`allow_empty`).

Everything trains on embeddings (kept on disk per text, embedded_texts), logistic regressions in seconds to a few
minutes for thousands of examples, so no trained state is kept: the answers are cached under the identity, which
names the examples. SetFit is not a component: its cross-validation takes minutes a fold on 2 CPU cores.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Iterator, Sequence
from dataclasses import asdict, dataclass, field, fields

import numpy as np

from promptclf.core.errors import ConfigError
from promptclf.core.hashing import fingerprint
from promptclf.core.identity import method_identity
from promptclf.core.labels import LabelSet
from promptclf.core.methods import Failure, Outcome
from promptclf.core.multilabel import check_label_sets, indicator, multi_prediction
from promptclf.core.usage import Usage

log = logging.getLogger("promptclf")

COMPONENTS = ("labels", "examples")
COMBINATION = "combination"
# Zero-shot: a label is given where its probability is at least this share of the best label's. On 5,000 GoEmotions
# train rows, self-trained on them (benchmarks/multi_label.py --zero-shot-ratios; never the test rows), micro-F1
# hardly moved with it (Ekman, 0.3-0.8: 0.319-0.323; 28 labels: 0.134-0.140) while the labels per item fell (Ekman
# 2.47 to 1.20, gold 1.08; 28 labels 3.47 to 1.26, gold 1.17): half as probable as the best is a middle that keeps
# second labels possible, not a tuned optimum (on the benchmark's 300 test rows it gave 1.26 and 1.07 per item).
ZERO_SHOT_RATIO = 0.5
# Thresholds are searched on this grid; a label with fewer positive rows than MIN_POSITIVES where they are chosen
# keeps the one threshold that is best for all labels together (a threshold fitted to two rows is noise).
GRID = np.round(np.arange(0.02, 0.99, 0.02), 2)
MIN_POSITIVES = 4
# The thresholds give at most this share more labels per item, on the texts being labelled (on the examples where
# there are none), than the examples carry (Cardinality). Measured: benchmarks/multi_label.py, GoEmotions.
CARDINALITY_SLACK = 0.1
AVERAGES = ("micro", "macro")


@dataclass
class MultiLabelConfig:
    """The offline multi-label method's options (Classifier(..., offline={...}) with multi_label=True)."""

    components: tuple | None = None  # None: COMPONENTS
    folds: int = 3
    seed: int = 0
    C: float = 1.0  # the examples' regression: 10 (baselines.EmbeddingLR) overfits a few examples a label
    l2: float = 0.01  # pulls the combination's weights towards zero
    average: str = "micro"  # the F1 the thresholds and the choice are made for
    choose: str = "auto"  # auto (the best cross-validated F1), combination, or a component
    allow_empty: bool = False  # an item may get no label (else its most probable one)
    # [{"text", "labels"}] never trained on: weights, choice and thresholds are made on them instead of folds.
    validation: list = field(default_factory=list)

    @classmethod
    def of(cls, options: dict) -> MultiLabelConfig:
        known = {f.name for f in fields(cls)}
        unknown = sorted(set(options) - known)
        if unknown:
            raise ConfigError(
                f"offline option(s) {', '.join(unknown)} do not apply to a multi-label task; it takes "
                f"{', '.join(sorted(known))}"
            )
        config = cls(**options)
        if config.average not in AVERAGES:
            raise ConfigError(f"offline average={config.average!r}: choose {' or '.join(AVERAGES)}")
        names = config.components or COMPONENTS
        wrong = [n for n in names if n not in COMPONENT_TYPES]
        if wrong or not names:
            raise ConfigError(f"offline components {wrong or names}: choose from {', '.join(COMPONENT_TYPES)}")
        if config.choose not in ("auto", COMBINATION, *names):
            raise ConfigError(f"offline choose={config.choose!r}: choose auto, {COMBINATION} or one of {names}")
        if config.folds < 2:
            raise ConfigError(f"offline folds={config.folds}: at least 2")
        return config


# --- embeddings -------------------------------------------------------------------------------------------


def embedded_texts(encoder, texts: Sequence[str]) -> np.ndarray:
    """encoder.encode(texts), each text's vector kept on disk on its own (the store cached_encode uses, under the
    key cached_encode gives a one-text list): examples, validation rows and labelled texts drawn from one pool are
    embedded once whatever lists they come in."""
    import diskcache

    from promptclf.cache.store import home
    from promptclf.methods.embeddings import VectorDisk, from_npy, to_npy

    texts = list(texts)
    out = np.zeros((len(texts), encoder.model.config.hidden_size), dtype=np.float32)
    keys = [fingerprint(encoder.identity, [t]) for t in texts]
    with diskcache.Cache(str(home() / "embeddings"), size_limit=2**31, disk=VectorDisk) as store:
        missing = []
        for i, key in enumerate(keys):
            found = from_npy(store.get(key))
            if found is not None and found.shape == (1, out.shape[1]):
                out[i] = found[0]
            else:
                missing.append(i)
        todo = list(dict.fromkeys(texts[i] for i in missing))
        if todo:
            vectors = dict(zip(todo, encoder.encode(todo)))
            for text, vector in vectors.items():
                store.set(fingerprint(encoder.identity, [text]), to_npy(vector[None, :]))
            for i in missing:
                out[i] = vectors[texts[i]]
    return out


# --- components: per-label probabilities from embeddings ----------------------------------------------------


def logit(p: np.ndarray) -> np.ndarray:
    p = np.clip(p, 1e-6, 1 - 1e-6)
    return np.log(p / (1 - p))


def sigmoid(z: np.ndarray) -> np.ndarray:
    return 1.0 / (1.0 + np.exp(-z))


class PerLabelRegression:
    """One logistic regression per label (a label that all or none of the rows have: that constant)."""

    def __init__(self, C: float, seed: int):
        self.C, self.seed, self.models = C, seed, []

    def fit(self, features: np.ndarray, y: np.ndarray) -> PerLabelRegression:
        """features: [n, d] shared by the labels, or [n, labels, d] one block per label."""
        from sklearn.linear_model import LogisticRegression

        self.models = []
        for j in range(y.shape[1]):
            column = y[:, j]
            if column.min() == column.max():
                self.models.append(float(column[0]))
                continue
            model = LogisticRegression(C=self.C, max_iter=2000, random_state=self.seed)
            self.models.append(model.fit(self._block(features, j), column))
        return self

    def probabilities(self, features: np.ndarray) -> np.ndarray:
        return np.stack(
            [
                np.full(len(features), m) if isinstance(m, float) else m.predict_proba(self._block(features, j))[:, 1]
                for j, m in enumerate(self.models)
            ],
            axis=1,
        )

    @staticmethod
    def _block(features: np.ndarray, j: int) -> np.ndarray:
        return features if features.ndim == 2 else features[:, j, :]


class ExamplesComponent:
    """Logistic regression per label on the examples' embeddings."""

    name = "examples"

    def __init__(self, config: MultiLabelConfig, label_scores):
        self.config = config

    def fit(self, vectors: np.ndarray, y: np.ndarray) -> ExamplesComponent:
        self.model = PerLabelRegression(self.config.C, self.config.seed).fit(vectors, y)
        return self

    def probabilities(self, vectors: np.ndarray) -> np.ndarray:
        return self.model.probabilities(vectors)


class LabelsComponent:
    """The label similarity made a probability per label: a logistic regression per label on that label's
    similarity and its log-probability among the labels (how far it is from the best)."""

    name = "labels"

    def __init__(self, config: MultiLabelConfig, label_scores):
        self.config, self.label_scores = config, label_scores

    def features(self, vectors: np.ndarray) -> np.ndarray:
        similarity, log_p = self.label_scores(vectors)
        return np.stack([similarity, log_p], axis=2)  # [n, labels, 2]

    def fit(self, vectors: np.ndarray, y: np.ndarray) -> LabelsComponent:
        self.model = PerLabelRegression(1.0, self.config.seed).fit(self.features(vectors), y)
        return self

    def probabilities(self, vectors: np.ndarray) -> np.ndarray:
        return self.model.probabilities(self.features(vectors))


COMPONENT_TYPES = {c.name: c for c in (LabelsComponent, ExamplesComponent)}


# --- combining, thresholds, choosing ---------------------------------------------------------------------------


def combine(probs: dict[str, np.ndarray], weights: dict[str, float]) -> np.ndarray:
    """sigmoid(sum_m w_m logit(p_m) + bias), label by label."""
    first = next(iter(probs.values()))
    total = np.full(first.shape, weights.get("bias", 0.0))
    for name, p in probs.items():
        total += weights.get(name, 0.0) * logit(p)
    return sigmoid(total)


def fit_weights(probs: dict[str, np.ndarray], y: np.ndarray, l2: float) -> dict[str, float]:
    """Non-negative weights (and a shared bias) minimising the binary log-loss of the combination."""
    from scipy.optimize import minimize

    names = list(probs)
    logits = np.stack([logit(probs[n]) for n in names])

    def loss(w):
        p = np.clip(sigmoid(np.tensordot(w[:-1], logits, axes=1) + w[-1]), 1e-9, 1 - 1e-9)
        return -(y * np.log(p) + (1 - y) * np.log(1 - p)).mean() + l2 * float(w[:-1] @ w[:-1])

    start = np.r_[np.full(len(names), 1.0 / len(names)), 0.0]
    best = minimize(loss, start, method="L-BFGS-B", bounds=[(0.0, None)] * len(names) + [(None, None)])
    return {**{n: float(w) for n, w in zip(names, best.x[:-1])}, "bias": float(best.x[-1])}


def decide(probs: np.ndarray, thresholds: np.ndarray, allow_empty: bool) -> np.ndarray:
    """Label sets as 0/1 rows: every label at or above its threshold; where none is and no label is not allowed,
    the most probable one."""
    chosen = probs >= thresholds
    if not allow_empty:
        rows = np.flatnonzero(~chosen.any(axis=1))
        chosen[rows, probs[rows].argmax(axis=1)] = True
    return chosen


def f1(gold: np.ndarray, chosen: np.ndarray, average: str) -> float:
    """Micro- or macro-F1 of 0/1 rows, as sklearn.metrics.f1_score gives it (zero_division=0). Counted here: the
    threshold search scores thousands of candidate sets, and f1_score's input checks cost milliseconds each."""
    gold, chosen = gold.astype(bool), chosen.astype(bool)
    tp = (gold & chosen).sum(axis=0)
    wrong = (gold ^ chosen).sum(axis=0)  # false positives + false negatives
    if average == "micro":
        denominator = 2 * tp.sum() + wrong.sum()
        return float(2 * tp.sum() / denominator) if denominator else 0.0
    denominator = 2 * tp + wrong
    return float(np.mean(np.divide(2 * tp, denominator, out=np.zeros(len(tp)), where=denominator > 0)))


@dataclass
class Cardinality:
    """The most labels per item the thresholds may give on `rows` (probabilities of the texts being labelled, or
    the rows the thresholds are chosen on): `limit`. Without it, where the components are weak (a few examples a
    label) the F1 of the rows is highest when every item gets nearly every label (a label given to every item
    scores 2p/(1+p) for its share p), which is no one's answer; the examples say how many labels an item carries."""

    rows: np.ndarray
    limit: float

    def allows(self, thresholds: np.ndarray, allow_empty: bool) -> bool:
        return float(decide(self.rows, thresholds, allow_empty).sum(axis=1).mean()) <= self.limit + 1e-9


def shared_threshold(
    probs: np.ndarray,
    gold: np.ndarray,
    average: str = "micro",
    allow_empty: bool = False,
    cardinality: Cardinality | None = None,
) -> float:
    """The one threshold for all labels with the best F1 (`average`) of the sets decide() gives on these rows
    among those the cardinality allows (the highest of the grid where none does); ties go to the one nearest 0.5."""
    width = probs.shape[1]

    def score(t: float) -> tuple:
        row = np.full(width, t)
        allowed = cardinality is None or cardinality.allows(row, allow_empty)
        return allowed, f1(gold, decide(probs, row, allow_empty), average) if allowed else t, -abs(t - 0.5)

    return float(max(GRID, key=score))


def choose_thresholds(
    probs: np.ndarray,
    gold: np.ndarray,
    average: str = "micro",
    allow_empty: bool = False,
    cardinality: Cardinality | None = None,
) -> np.ndarray:
    """A threshold per label for the best F1 (`average`) of the sets decide() gives on these rows: from the shared
    one (shared_threshold), each label's in turn holding the others', twice over, ties going to the shared one,
    never past what the cardinality allows. A label with fewer than MIN_POSITIVES positives keeps the shared one."""
    shared = shared_threshold(probs, gold, average, allow_empty, cardinality)
    thresholds = np.full(probs.shape[1], shared)

    def score(j: int, t: float) -> tuple:
        moved = thresholds.copy()
        moved[j] = t
        allowed = t == thresholds[j] or cardinality is None or cardinality.allows(moved, allow_empty)
        return allowed, f1(gold, decide(probs, moved, allow_empty), average) if allowed else 0.0, -abs(t - shared)

    for _ in range(2):
        for j in np.flatnonzero(gold.sum(axis=0) >= MIN_POSITIVES):
            thresholds[j] = max(GRID, key=lambda t, j=j: score(j, t))
    return thresholds


def fold_indices(n: int, folds: int, seed: int) -> list[tuple[np.ndarray, np.ndarray]]:
    from sklearn.model_selection import KFold

    return list(KFold(n_splits=min(folds, n), shuffle=True, random_state=seed).split(np.zeros(n)))


@dataclass
class MultiLabelEstimate:
    """What was chosen and how well it did: F1 on the out-of-fold probabilities with each fold's thresholds chosen
    on the other folds (or on the validation rows with the thresholds chosen on them: optimistic)."""

    chosen: str
    weights: dict
    examples: int = 0
    thresholds: dict = field(default_factory=dict)
    micro_f1: float | None = None
    macro_f1: float | None = None
    spread: float | None = None  # of the F1 the config names, over the folds
    folds: int = 0
    validation: int = 0
    average: str = "micro"
    candidates: dict = field(default_factory=dict)  # every candidate's F1 (`average`)
    labels_per_item: float | None = None  # what the thresholds give on the rows they were chosen on
    zero_shot: str = ""

    def describe(self) -> str:
        if self.zero_shot:
            return f"offline multi-label: {self.zero_shot} (no estimate without examples)"
        used = "+".join(n for n, w in self.weights.items() if w and n != "bias")
        trained = f"{used} trained on {self.examples} examples"
        where = (
            f"on {self.validation} validation rows"
            if self.validation
            else f"cross-validated over {self.folds} folds of the examples"
        )
        spread = {"micro": "", "macro": ""}
        if self.spread is not None:  # over the folds, of the F1 the thresholds were chosen for
            spread[self.average] = f" ± {self.spread:.3f}"
        thresholds = ", ".join(f"{name} {t:.2f}" for name, t in self.thresholds.items())
        return (
            f"offline multi-label: {self.chosen} ({trained}), micro-F1 {self.micro_f1:.3f}{spread['micro']}, "
            f"macro-F1 {self.macro_f1:.3f}{spread['macro']} {where}; {self.labels_per_item:.2f} labels per item; "
            f"thresholds {thresholds}"
        )


# --- the method ----------------------------------------------------------------------------------------------


class OfflineMultiLabel:
    """A multi-label labelling method (see the module's docstring)."""

    cacheable = True
    multi_label = True
    source = "embedding"

    def __init__(
        self,
        labels,
        examples: Sequence[dict] = (),
        config: MultiLabelConfig | None = None,
        unlabeled: Sequence[str] = (),
        progress: bool = False,
    ):
        from promptclf.methods.label_similarity import unlabeled_sample

        self.labels = LabelSet.of(labels)
        self.config = config or MultiLabelConfig()
        self.examples = self._rows(examples, "example")
        self.validation = self._rows(self.config.validation, "validation row")
        if 0 < len(self.examples) < self.config.folds and not self.validation:
            raise ConfigError(
                f"offline multi-label: {len(self.examples)} example(s) cannot be cross-validated over "
                f"{self.config.folds} folds to choose the thresholds: give more, or none (zero-shot)"
            )
        if self.validation and not self.examples:
            raise ConfigError(
                "offline multi-label: validation rows choose among models trained on examples; give examples"
            )
        self.unlabeled = unlabeled_sample(unlabeled)
        self.progress = progress
        self.estimate: MultiLabelEstimate | None = None
        self._similarity = None
        self.components: dict = {}

    def _rows(self, rows: Sequence[dict], what: str) -> list[tuple[str, list[str]]]:
        sets = check_label_sets([r["labels"] if "labels" in r else r["label"] for r in rows], self.labels, what + "s")
        return [(r["text"], names) for r, names in zip(rows, sets)]

    @property
    def names(self) -> tuple:
        return tuple(self.config.components or COMPONENTS)

    @property
    def identity(self) -> str:
        from promptclf.methods.embeddings import encoder_identity

        # The version is this method's: answers kept under another are not its.
        return method_identity(
            "offline-multi-label",
            1,
            {k: v for k, v in asdict(self.config).items() if k != "validation"},
            self.labels.fingerprint(),
            encoder_identity(),
            self.examples,
            self.validation,
            fingerprint(self.unlabeled) if self.unlabeled else None,
            ZERO_SHOT_RATIO if not self.examples else None,
            hashed=True,
        )

    # --- the label similarity (self-trained where there are unlabelled texts) ---

    @property
    def similarity(self):
        if self._similarity is None:
            from promptclf.methods.label_similarity import LabelSimilarity

            self._similarity = LabelSimilarity(self.labels, unlabeled=self.unlabeled)
        return self._similarity

    def label_scores(self, vectors: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """(cosine similarity to each label, log-probability of each label among them) as LabelSimilarity gives
        them, from vectors."""
        from promptclf.methods.label_similarity import MIX
        from promptclf.methods.scoring import softmax

        similarity = self.similarity
        plain = vectors @ similarity.seeds.T
        centroids = similarity.centroids
        mixed = plain if centroids is None else MIX * (vectors @ centroids.T) + (1 - MIX) * plain
        return mixed, np.log(np.clip(softmax(mixed / similarity.temperature), 1e-12, 1.0))

    def vectors(self, texts: Sequence[str]) -> np.ndarray:
        return embedded_texts(self.similarity.encoder, texts)

    # --- training ---

    def fit(self) -> OfflineMultiLabel:
        started = time.perf_counter()
        if not self.examples:
            self.estimate = MultiLabelEstimate(
                "zero-shot",
                {},
                zero_shot=f"label similarity{self._self_trained()}, every label within {ZERO_SHOT_RATIO:g} "
                "of the best label's probability",
            )
        else:
            self.estimate = self._train()
        (log.warning if self.progress else log.info)(
            "promptclf: %s (%.1f s)", self.estimate.describe(), time.perf_counter() - started
        )
        return self

    def _self_trained(self) -> str:
        return f" self-trained on {len(self.unlabeled)} unlabelled texts" if self.unlabeled else ""

    def _component(self, name: str):
        return COMPONENT_TYPES[name](self.config, self.label_scores)

    def _train(self) -> MultiLabelEstimate:
        config = self.config
        vectors = self.vectors([t for t, _ in self.examples])
        y = indicator([names for _, names in self.examples], self.labels).astype(int)
        if self.progress:
            how = f"{len(self.validation)} validation rows" if self.validation else f"{config.folds} folds"
            log.warning("promptclf: training %s on %d examples (%s)", ", ".join(self.names), len(y), how)
        self.components = {n: self._component(n).fit(vectors, y) for n in self.names}
        if self.validation:
            held = self.vectors([t for t, _ in self.validation])
            gold = indicator([names for _, names in self.validation], self.labels).astype(int)
            probs = {n: c.probabilities(held) for n, c in self.components.items()}
            folds = None
        else:
            folds = fold_indices(len(y), config.folds, config.seed)
            probs = self._out_of_fold(vectors, y, folds)
            gold = y
        return self._choose(probs, gold, folds, self._cardinality(probs, gold, y))

    def _cardinality(self, probs: dict, gold: np.ndarray, y: np.ndarray) -> dict[str, Cardinality]:
        """Each candidate's Cardinality: on its probabilities of the texts being labelled where there are any
        (the final models'), else of the rows the thresholds are chosen on; the limit from the examples."""
        limit = float(y.sum(axis=1).mean()) * (1 + CARDINALITY_SLACK)
        if self.unlabeled:
            texts = self.vectors(self.unlabeled)
            rows = {n: c.probabilities(texts) for n, c in self.components.items()}
        else:
            rows = dict(probs)
        if len(rows) > 1:
            rows[COMBINATION] = combine(rows, fit_weights(probs, gold, self.config.l2)) if self.unlabeled else None
        return {n: Cardinality(r, limit) for n, r in rows.items() if r is not None}

    def _out_of_fold(self, vectors: np.ndarray, y: np.ndarray, folds) -> dict[str, np.ndarray]:
        out = {n: np.zeros(y.shape) for n in self.names}
        for train, test in folds:
            for name in self.names:
                out[name][test] = self._component(name).fit(vectors[train], y[train]).probabilities(vectors[test])
        return out

    def _choose(
        self, probs: dict[str, np.ndarray], gold: np.ndarray, folds, cardinality: dict[str, Cardinality]
    ) -> MultiLabelEstimate:
        config = self.config
        candidates = dict(probs)
        if len(probs) > 1:
            candidates[COMBINATION] = self._combined_out_of_fold(probs, gold, folds)
            cardinality.setdefault(COMBINATION, Cardinality(candidates[COMBINATION], cardinality[self.names[0]].limit))
        scored = {name: self._cross_validated(p, gold, folds, cardinality[name]) for name, p in candidates.items()}
        if config.choose != "auto":
            chosen = config.choose
        else:  # ties go to the combination, then in COMPONENTS order
            order = [COMBINATION, *self.names]
            chosen = max(scored, key=lambda n: (scored[n][config.average], -order.index(n)))
        weights = fit_weights(probs, gold, config.l2) if chosen == COMBINATION and len(probs) > 1 else {chosen: 1.0}
        self.weights = weights
        thresholds = choose_thresholds(
            candidates[chosen], gold, config.average, config.allow_empty, cardinality[chosen]
        )
        self.thresholds = thresholds
        chosen_sets = decide(candidates[chosen], thresholds, config.allow_empty)
        return MultiLabelEstimate(
            chosen,
            weights,
            examples=len(self.examples),
            thresholds=dict(zip(self.labels.names, map(float, thresholds))),
            micro_f1=scored[chosen]["micro"],
            macro_f1=scored[chosen]["macro"],
            spread=scored[chosen].get("spread"),
            folds=len(folds) if folds else 0,
            validation=len(self.validation),
            average=config.average,
            candidates={n: s[config.average] for n, s in scored.items()},
            labels_per_item=float(chosen_sets.sum(axis=1).mean()),
        )

    def _combined_out_of_fold(self, probs, gold, folds) -> np.ndarray:
        """The combination's probabilities on each fold with its weights fitted on the other folds (on the
        validation rows: fitted on them)."""
        if folds is None:
            return combine(probs, fit_weights(probs, gold, self.config.l2))
        out = np.zeros(gold.shape)
        for train, test in folds:
            weights = fit_weights({n: p[train] for n, p in probs.items()}, gold[train], self.config.l2)
            out[test] = combine({n: p[test] for n, p in probs.items()}, weights)
        return out

    def _cross_validated(self, probs: np.ndarray, gold: np.ndarray, folds, cardinality: Cardinality) -> dict:
        """Micro- and macro-F1 of the sets each fold gets at thresholds chosen on the other folds (on the
        validation rows: at thresholds chosen on them)."""
        config = self.config
        if folds is None:
            chosen = decide(
                probs,
                choose_thresholds(probs, gold, config.average, config.allow_empty, cardinality),
                config.allow_empty,
            )
            return {"micro": f1(gold, chosen, "micro"), "macro": f1(gold, chosen, "macro")}
        chosen = np.zeros(gold.shape, dtype=bool)
        per_fold = []
        for train, test in folds:
            thresholds = choose_thresholds(probs[train], gold[train], config.average, config.allow_empty, cardinality)
            chosen[test] = decide(probs[test], thresholds, config.allow_empty)
            per_fold.append(f1(gold[test], chosen[test], config.average))
        return {
            "micro": f1(gold, chosen, "micro"),
            "macro": f1(gold, chosen, "macro"),
            "spread": float(np.std(per_fold)),
        }

    # --- labelling ---

    def probabilities(self, texts: Sequence[str]) -> np.ndarray:
        """[len(texts), labels]: each label's probability (zero-shot: relative to the best label's)."""
        if self.estimate is None:
            self.fit()
        vectors = self.vectors(texts)
        if not self.examples:
            log_p = self.label_scores(vectors)[1]
            return np.exp(log_p - log_p.max(axis=1, keepdims=True))
        probs = {n: c.probabilities(vectors) for n, c in self.components.items() if n in self.weights}
        return combine(probs, self.weights) if self.estimate.chosen == COMBINATION else next(iter(probs.values()))

    @property
    def threshold_row(self) -> np.ndarray:
        if not self.examples:
            return np.full(len(self.labels), ZERO_SHOT_RATIO)
        return self.thresholds

    def predict(self, texts: Sequence[str], usage: Usage) -> Iterator[tuple[int, Outcome]]:
        if self.estimate is None:
            self.fit()  # outside the try: a training or configuration error is the caller's, not an item's
        started = time.perf_counter()
        try:
            probs = self.probabilities(texts)
        except Exception as exc:  # noqa: BLE001 - reported per item, like any method's failure
            yield from ((i, Failure(f"offline multi-label failed: {exc}")) for i in range(len(texts)))
            return
        usage.add(compute_s=time.perf_counter() - started)
        thresholds = self.threshold_row
        chosen = decide(probs, thresholds, self.config.allow_empty)
        for i, (row, given) in enumerate(zip(probs, chosen)):
            sure = np.where(given, row, 1.0 - row) if self.examples else None
            yield (
                i,
                multi_prediction(
                    [n for n, c in zip(self.labels.names, given) if c],
                    float(sure.min()) if sure is not None else None,
                    self.source,
                    scores=dict(zip(self.labels.names, map(float, row))),
                ),
            )
