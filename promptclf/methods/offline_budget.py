"""The offline classifier's time budget (offline.py): what its training will cost, estimated before it starts
from the texts' lengths and counts, and what to cut from SetFit, the one component whose training takes
minutes, where the whole would not fit.

The cuts, in order, each only as far as needed: SetFit cross-validated on fewer of the folds (its fold models
are its final model, so one fold means one training, scored on that fold's rows; only where the automatic choice
decides, since the combination needs every component on every fold), then fewer training pairs (down to
MIN_SETFIT_PAIRS), then SetFit left out. The other components cost seconds (embedding the texts) and are
never cut. The plan depends only on the texts, the settings and the budget, so it is part of the trained
state's identity where it cuts something, and only then.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass, field

import numpy as np

from promptclf.core.errors import ConfigError
from promptclf.methods.setfit import SetFitConfig

# The default budget, in seconds of training on 2 quiet CPU cores (the estimate below is in those seconds):
# the time a first run with a few examples per label may take before anything is labelled. Under 2 minutes so
# that scikit-learn's 5-fold cross_val_score of the default on 150 long texts (IMDb) stays within 10 minutes,
# labelling included (issue 27).
DEFAULT_TIME_BUDGET = 100.0

# The cost model's constants, in seconds of 2 CPU cores of the development machine (an x86-64 VM, torch 2.13 CPU).
# SetFit's are fitted (least squares, non-negative) to the cross-validation times that benchmarks/few_labels.py
# recorded there for its 60 cells with 8-64 examples a class on five data sets (`python
# benchmarks/offline_budget.py --fit-costs`): a token of a step costs 0.41 ms plus 0.63 µs per token of the
# length the batch is padded to (attention: 0.46 ms a token for AG News' 75, 0.57 ms for IMDb's 256); each
# cell's recorded time is 0.65 to 2.06 times the model's (median 1.02, 0.95 to 1.16 by data set; one term
# alone: 0.74 on TREC to 1.11 on IMDb). Measured directly on AG News while others loaded the machine (`--costs`:
# CPU seconds of one thread, load 16), a step token took 1.64 ms, an encoder token 1.48 ms and a SetFit
# training's fixed part 8.5 s: the encoder's and the fixed costs are those, scaled by 0.55 / 1.64 (the
# one-term fit over that measurement).
CHARS_PER_TOKEN = 4.0  # MiniLM's tokenizer: 4.27 characters a token on AG News; fewer counts more tokens
ENCODE_S_PER_TOKEN = 0.5e-3  # the encoder's forward pass, per token, batched by length
SETFIT_S_PER_TOKEN = 0.41e-3  # a SetFit step, per token of each text of each pair: forward and backward
SETFIT_S_PER_TOKEN_PER_LENGTH = 0.63e-6  # and per token of the padded length, per such token
SETFIT_SETUP_S = 3.0  # per SetFit training: a fresh encoder, SetFit's trainer, the head's fit
LOAD_S = 5.0  # once per fit: loading the encoder
ENCODER_TOKENS = 256  # MiniLM's own max_length (SetFit's and the embedding components')

# Fewest training pairs SetFit is cut to before it is left out: 4 steps of 16 pairs (SetFitConfig's floor
# is 160; below a few dozen pairs the encoder barely moves from its start and the head is trained on the
# plain embeddings, which the examples component already does).
MIN_SETFIT_PAIRS = 64


def tokens(text: str, cap: int = ENCODER_TOKENS) -> int:
    """The estimated number of tokens of a text, as the encoder cuts it (with its two special tokens)."""
    return min(cap, math.ceil(len(text) / CHARS_PER_TOKEN) + 2)


def encode_s(texts: Sequence[str]) -> float:
    return sum(tokens(t) for t in texts) * ENCODE_S_PER_TOKEN


@dataclass(frozen=True)
class SetFitWork:
    """SetFit's trainings as a fit would run them: one per cross-validation fold (rows trained on, rows
    scored), or one on all the examples (`final`, scoring the validation rows)."""

    texts: tuple  # the examples' texts
    folds: tuple = ()  # (rows trained on, rows scored) per fold
    final: tuple | None = None  # (rows trained on, rows scored) of the one training where no folds
    config: SetFitConfig = field(default_factory=SetFitConfig)

    def padded_tokens(self) -> float:
        """Tokens a text in a training batch is padded to: about the longest of a batch's texts."""
        cap = self.config.max_length or ENCODER_TOKENS
        lengths = [tokens(t, cap) for t in self.texts]
        return float(np.quantile(lengths, 1 - 1 / (self.config.batch_size + 1))) if lengths else 0.0

    def mean_tokens(self) -> float:
        cap = self.config.max_length or ENCODER_TOKENS
        return float(np.mean([tokens(t, cap) for t in self.texts])) if self.texts else 0.0

    def pairs(self, n_rows: int, max_pairs: int | None) -> int:
        config = self.config
        pairs = min(max(2 * config.iterations * n_rows, config.min_pairs), config.max_pairs)
        return min(pairs, max_pairs) if max_pairs else pairs

    def training_s(self, n_rows: int, n_scored: int, max_pairs: int | None) -> float:
        steps = math.ceil(self.pairs(n_rows, max_pairs) / self.config.batch_size)
        padded = self.padded_tokens()
        per_step = 2 * self.config.batch_size * padded * (SETFIT_S_PER_TOKEN + padded * SETFIT_S_PER_TOKEN_PER_LENGTH)
        head = (n_rows + n_scored) * self.mean_tokens() * ENCODE_S_PER_TOKEN  # embedding for the head, scoring
        return SETFIT_SETUP_S + steps * per_step + head

    def seconds(self, n_folds: int | None = None, max_pairs: int | None = None) -> float:
        """The trainings' time: on the first n_folds folds (None: all), each with at most max_pairs pairs."""
        trainings = list(self.folds[:n_folds] if n_folds is not None else self.folds)
        if self.final is not None:
            trainings.append(self.final)
        return sum(self.training_s(n, scored, max_pairs) for n, scored in trainings)


@dataclass(frozen=True)
class Plan:
    """What a fit will train within its budget: SetFit on `setfit_folds` of the folds (None: all), with at most
    `setfit_pairs` pairs a training (None: as configured), or not at all (`skip_setfit`); `seconds` the estimate
    of the whole training so cut, `uncut` of the whole training without cuts."""

    budget: float | None
    seconds: float
    uncut: float
    setfit_folds: int | None = None
    setfit_pairs: int | None = None
    skip_setfit: bool = False
    folds: int = 0  # the cross-validation's folds (0: none, one training on all the examples)
    configured_pairs: int = 0  # the most pairs a training would have had without the cut

    @property
    def cut(self) -> bool:
        return self.skip_setfit or self.setfit_folds is not None or self.setfit_pairs is not None

    def key(self) -> dict | None:
        """What the cuts change in the trained model (for the trained state's identity); None: nothing."""
        if not self.cut:
            return None
        return {"setfit_folds": self.setfit_folds, "setfit_pairs": self.setfit_pairs, "skip_setfit": self.skip_setfit}

    def cuts(self) -> list[str]:
        """The cuts, as the run report names them."""
        said = []
        if self.skip_setfit:
            said.append("setfit left out")
        if self.setfit_folds is not None:
            said.append(f"setfit cross-validated on {self.setfit_folds} of {self.folds} folds")
        if self.setfit_pairs is not None:
            said.append(f"setfit's pairs cut to {self.setfit_pairs} a training (of {self.configured_pairs})")
        return said

    def describe(self) -> str:
        if not self.cut:
            return ""
        return (
            f"time budget {self.budget:.0f}s: {', '.join(self.cuts())} (estimated {self.seconds:.0f}s of training, "
            f"{self.uncut:.0f}s uncut)"
        )

    def to_json(self) -> dict:
        """For the estimate (Estimate.budget): empty where nothing was cut."""
        if not self.cut:
            return {}
        folds = {"setfit": self.setfit_folds} if self.setfit_folds is not None else {}
        return {
            "said": self.describe(),
            "seconds": round(self.seconds, 1),
            "uncut": round(self.uncut, 1),
            "folds": folds,
        }


def plan(
    budget: float | None,
    embedded: Sequence[str],
    setfit: SetFitWork | None,
    can_cut_folds: bool,
) -> Plan:
    """The plan for a fit that embeds `embedded` (the examples and validation rows) and trains
    `setfit` (None: no SetFit), within `budget` seconds (None: no limit)."""
    if budget is not None and not budget > 0:
        raise ConfigError(f"time_budget={budget!r}: give a number of seconds above 0, or None for no limit")
    base = LOAD_S + encode_s(embedded)
    if setfit is None:
        return Plan(budget, base, base)
    uncut = base + setfit.seconds()
    configured = max((setfit.pairs(n, None) for n, _ in (*setfit.folds, *filter(None, [setfit.final]))), default=0)
    common = {"budget": budget, "uncut": uncut, "folds": len(setfit.folds), "configured_pairs": configured}
    if budget is None or uncut <= budget:
        return Plan(seconds=uncut, **common)
    n_folds = len(setfit.folds)
    fewer_folds = range(n_folds - 1, 0, -1) if can_cut_folds and n_folds > 1 else ()
    for folds in fewer_folds:
        if base + setfit.seconds(folds) <= budget:
            return Plan(seconds=base + setfit.seconds(folds), setfit_folds=folds, **common)
    folds = 1 if fewer_folds else None
    pairs = _most_pairs(budget - base, setfit, folds, configured)
    if pairs is None:
        return Plan(seconds=base, skip_setfit=True, **common)
    return Plan(seconds=base + setfit.seconds(folds, pairs), setfit_folds=folds, setfit_pairs=pairs, **common)


def _most_pairs(seconds: float, setfit: SetFitWork, folds: int | None, configured: int) -> int | None:
    """The most pairs a training (a multiple of the batch size, at least MIN_SETFIT_PAIRS) within `seconds`."""
    batch = setfit.config.batch_size
    for pairs in range(configured - configured % batch, MIN_SETFIT_PAIRS - 1, -batch):
        if setfit.seconds(folds, pairs) <= seconds:
            return pairs
    return None
