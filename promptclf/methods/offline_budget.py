"""The offline classifier's time budget (offline.py): what its training will cost, estimated before it starts
from the texts' lengths and counts, and what to cut from SetFit, the one component whose training takes
minutes, where the whole would not fit.

The cuts, in order, each only as far as needed: SetFit cross-validated on fewer of the folds (its fold models
are its final model, so one fold means one training, scored on that fold's rows; only where the automatic choice
decides, since the combination needs every component on every fold), then fewer training pairs (down to the
fewest it is configured to train, SetFitConfig.min_pairs: 160, the fewest benchmarks/few_labels.py measured it
with), then SetFit left out. The other components cost seconds (embedding the texts) and are
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

# The cost model's constants, in wall seconds of the development machine's 2 CPU cores (an x86-64 VM shared with
# other work, AVX2, torch 2.13 CPU), measured there on 2026-12-07 with nothing else running
# (`python benchmarks/offline_budget.py --costs`, results/offline_budget/costs-2026-12-07.jsonl, and whole SetFit
# trainings of 1 and 10 steps on 8 examples a class): a SetFit step token took 0.8-1.6 ms on AG News (75 tokens
# padded; 1.3 typical) and 1.24-1.44 ms on IMDb (256), the same machine's speed moving by up to 2x from minute to
# minute; the encoder's forward pass 0.4 ms a token on IMDb's long texts, 0.6-0.9 ms on short ones. The step
# constants are the typical figures; what the estimate misses on a slower minute, STOP_SLACK bounds. (The
# constants fitted before to benchmarks/few_labels.py's recorded cross-validation times, 0.41 ms + 0.63 µs per
# padded token, were half of what the machine does now: a 100 s budget took 190 s on AG News.)
CHARS_PER_TOKEN = 4.0  # MiniLM's tokenizer: 4.27 characters a token on AG News; fewer counts more tokens
ENCODE_S_PER_TOKEN = 0.5e-3  # the encoder's forward pass, per token, batched by length
SETFIT_S_PER_TOKEN = 1.2e-3  # a SetFit step, per token of each text of each pair: forward and backward
SETFIT_S_PER_TOKEN_PER_LENGTH = 0.5e-6  # and per token of the padded length, per such token (the attention)
SETFIT_SETUP_S = 2.0  # per SetFit training: a fresh encoder, SetFit's trainer, the head's fit
LOAD_S = 5.0  # once per fit: loading the encoder

# A SetFit training's steps stop once it has run this many times its estimate (setfit.py, stop_after): the
# estimate is of a typical minute, and the shared machine can be twice as slow. Only such a run is cut by the
# clock (so the trained model depends on the machine's speed only there), and the run says so.
STOP_SLACK = 1.5
ENCODER_TOKENS = 256  # MiniLM's own max_length (SetFit's and the embedding components')


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

    def trainings(self, n_folds: int | None = None) -> list[tuple]:
        """(rows trained on, rows scored) of each training: on the first n_folds folds (None: all)."""
        trainings = list(self.folds[:n_folds] if n_folds is not None else self.folds)
        return trainings + ([self.final] if self.final is not None else [])

    def seconds(self, n_folds: int | None = None, max_pairs: int | None = None) -> float:
        """The trainings' time: on the first n_folds folds (None: all), each with at most max_pairs pairs."""
        return sum(self.training_s(n, scored, max_pairs) for n, scored in self.trainings(n_folds))

    def longest(self, n_folds: int | None = None, max_pairs: int | None = None) -> float:
        """The longest one training's time."""
        return max((self.training_s(n, scored, max_pairs) for n, scored in self.trainings(n_folds)), default=0.0)


@dataclass(frozen=True)
class Plan:
    """What a fit will train within its budget: SetFit on `setfit_folds` of the folds (None: all), with at most
    `setfit_pairs` pairs a training (None: as configured), or not at all (`skip_setfit`); `seconds` the estimate
    of the whole training so cut, `uncut` of the whole training without cuts."""

    budget: float | None
    seconds: float
    uncut: float
    setfit_training: float = 0.0  # the estimate of SetFit's longest training as planned (0: none)
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
    configured = max((setfit.pairs(n, None) for n, _ in setfit.trainings()), default=0)
    common = {"budget": budget, "uncut": uncut, "folds": len(setfit.folds), "configured_pairs": configured}
    if budget is None or uncut <= budget:
        return Plan(seconds=uncut, setfit_training=setfit.longest(), **common)
    n_folds = len(setfit.folds)
    fewer_folds = range(n_folds - 1, 0, -1) if can_cut_folds and n_folds > 1 else ()
    for folds in fewer_folds:
        if base + setfit.seconds(folds) <= budget:
            return Plan(
                seconds=base + setfit.seconds(folds),
                setfit_training=setfit.longest(folds),
                setfit_folds=folds,
                **common,
            )
    folds = 1 if fewer_folds else None
    pairs = _most_pairs(budget - base, setfit, folds, configured)
    if pairs is None:
        return Plan(seconds=base, skip_setfit=True, **common)
    return Plan(
        seconds=base + setfit.seconds(folds, pairs),
        setfit_training=setfit.longest(folds, pairs),
        setfit_folds=folds,
        setfit_pairs=pairs,
        **common,
    )


def _most_pairs(seconds: float, setfit: SetFitWork, folds: int | None, configured: int) -> int | None:
    """The most pairs a training (a multiple of the batch size, at least the configured min_pairs) within
    `seconds`."""
    batch, fewest = setfit.config.batch_size, setfit.config.min_pairs
    for pairs in range(configured - configured % batch, fewest - 1, -batch):
        if pairs >= fewest and setfit.seconds(folds, pairs) <= seconds:
            return pairs
    return None
