"""Find wrong labels in labelled rows (examples, validation rows): out-of-fold probabilities from the offline
components, then cleanlab's confident learning (`cleanlab.filter.find_label_issues`), ranked by self-confidence
(the out-of-fold probability of the label given). `promptclf audit` on the command line.

Each row is judged by models that never saw it: the rows are split into stratified folds (offline.folds_of), and
each fold's probabilities come from components trained on the other folds. The texts are embedded once (and
kept in the embedding cache): every fold's training and labelling reads those vectors.

Components: `examples` (logistic regression on the MiniLM embeddings), `self-trained` (logistic regression on the
training folds and on the texts the self-trained label similarity labels most confidently, every row's text
taken unlabelled; it needs 200 distinct texts), `labels` (the labels' embedding similarity, zero-shot: no
training, so nothing of a row's label reaches its own probabilities) and `setfit` (SetFit trained on each fold's
training rows: minutes a fold on a CPU). Several are combined as the offline classifier combines them (weights
fitted on the out-of-fold probabilities). The default, `examples` and `self-trained` (`examples` alone below 200
distinct texts), and cleanlab's `filter_by="both"` were chosen with benchmarks/label_errors.py (10% of 400 labels
flipped; seeds 0-2): on AG News, TREC, IMDb and SMS Spam the pair's precision was 0.53 / 0.37 / 0.27 / 0.70 against
0.41 / 0.35 / 0.22 / 0.65 for `examples` alone under the same rule, at a recall within 0.02 of it; and "both" was
as precise as cleanlab's default rule or more (0.49 / 0.35 / 0.27 / 0.70) at the same recall on every set."""

from __future__ import annotations

import logging
import sys
import time
from collections.abc import Callable, Sequence
from pathlib import Path

import numpy as np
import pandas as pd

from promptclf.core.errors import ColumnError, ConfigError, InputError
from promptclf.core.labels import LabelSet

log = logging.getLogger("promptclf")

COMPONENTS = ("examples", "labels", "self-trained", "setfit")
DEFAULT_COMPONENTS = ("examples", "self-trained")  # see the module's docstring
FILTER_BY = "both"  # cleanlab's rule: see the module's docstring
FOLDS = 5  # cleanlab's own default for out-of-fold probabilities (cv_n_folds)
COLUMNS = ("row", "text", "label", "suggested_label", "label_quality", "suggested_probability")


class KnownVectors:
    """An encoder that answers from vectors already computed (by text), and asks `encoder` only for the others
    (the labels' names): the folds' methods share one embedding of the rows. Its identity is the encoder's."""

    def __init__(self, encoder, texts: Sequence[str], vectors: np.ndarray):
        self.encoder = encoder
        self.known = dict(zip(texts, vectors))

    @property
    def identity(self) -> str:
        return self.encoder.identity

    def encode(self, texts: Sequence[str]) -> np.ndarray:
        missing = [t for t in dict.fromkeys(texts) if t not in self.known]
        if missing:
            self.known.update(zip(missing, self.encoder.encode(missing)))
        return np.stack([self.known[t] for t in texts]) if len(texts) else np.zeros((0, 0), dtype=np.float32)


def find_label_errors(
    texts: Sequence[str],
    labels: Sequence[str],
    *,
    label_set=None,
    components: Sequence[str] | None = None,
    folds: int = FOLDS,
    seed: int = 0,
    filter_by: str = FILTER_BY,
    progress: bool = False,
) -> pd.DataFrame:
    """The rows whose given label looks wrong, most suspect first: a DataFrame with `row` (0-based position in
    `texts`), `text`, `label` (as given), `suggested_label` (the out-of-fold models' most probable label),
    `label_quality` (their probability of the given label: cleanlab's self-confidence; lower is more suspect) and
    `suggested_probability`. Empty when cleanlab finds no issue.

    `labels`: one label per text (single-label rows). `label_set`: the label names (anything LabelSet.of takes,
    or a Task); default, the labels seen. Every label must have at least two rows. `components`: see the module
    docstring (None: the default; `setfit` is slow). `filter_by`: cleanlab's rule (find_label_issues)."""
    rows, names = checked_rows(texts, labels, label_set)
    probs = out_of_fold_probabilities(rows, names, components, folds=folds, seed=seed, progress=progress)
    return label_issues(rows, names, probs, filter_by=filter_by)


def checked_rows(
    texts: Sequence[str], labels: Sequence[str], label_set=None, *, where: str = "", first: int = 0
) -> tuple[list[dict], LabelSet]:
    """Rows of text and label name, each label checked against the label set (aliases resolved), and the label
    set cut to the labels the rows use; refused, naming the row (`first`: the first row's number; `where`: the
    file, as a prefix) or label, where the audit cannot judge them."""
    from promptclf.core.labels import LabelError
    from promptclf.core.multilabel import holds_a_set
    from promptclf.task.definition import Task, is_task

    texts, labels = list(texts), list(labels)
    if len(texts) != len(labels):
        raise InputError(f"{where}{len(texts)} texts but {len(labels)} labels: give one label per text")
    for i, (text, label) in enumerate(zip(texts, labels)):
        if not isinstance(text, str) or not text.strip():
            raise InputError(f"{where}row {i + first}: the text is empty or not a string ({text!r})")
        if holds_a_set(label):
            raise InputError(
                f"{where}row {i + first}: {label!r} is a label set; the audit checks single-label rows only"
            )
    seen = sorted({str(label) for label in labels})
    if len(seen) < 2:
        raise InputError(f"{where}the rows use {len(seen)} label(s) ({seen}): the audit needs two or more")
    try:
        if label_set is None:
            given = LabelSet.of(seen)
        else:
            given = Task.coerce(label_set).label_set() if is_task(label_set) else LabelSet.of(label_set)
        rows = [
            {"text": t, "label": given.check(label, f"row {i + first}")}
            for i, (t, label) in enumerate(zip(texts, labels))
        ]
    except LabelError as exc:
        raise InputError(f"{where}{exc}") from None
    counts = pd.Series([r["label"] for r in rows]).value_counts()
    alone = [name for name in given.names if counts.get(name, 0) == 1]
    if alone:
        row = next(i for i, r in enumerate(rows) if r["label"] == alone[0]) + first
        raise InputError(
            f"{where}label {alone[0]!r} has a single row (row {row}): the audit needs two or more rows of every "
            "label it judges (a misspelt label? name the label set to have it refused as one)"
        )
    used = [label for label in given.labels if counts.get(label.name, 0)]
    if len(used) < 2:
        raise InputError(f"{where}the rows use {len(used)} label(s): the audit needs two or more")
    return rows, LabelSet.of(used)


def default_components(texts: Sequence[str]) -> tuple[str, ...]:
    """DEFAULT_COMPONENTS, without `self-trained` where there are too few distinct texts for it."""
    from promptclf.methods.label_similarity import MIN_UNLABELED

    enough = len(set(texts)) >= MIN_UNLABELED
    return tuple(c for c in DEFAULT_COMPONENTS if c != "self-trained" or enough)


def out_of_fold_probabilities(
    rows: list[dict],
    labels: LabelSet,
    components: Sequence[str] | None = None,
    *,
    folds: int = FOLDS,
    seed: int = 0,
    progress: bool = False,
) -> np.ndarray:
    """[len(rows), len(labels)]: each row's probabilities from the components trained on the other folds,
    combined where several are named (offline.fit_weights and combine). None: default_components. The folds are
    offline.folds_of: `folds` of them, fewer where a label has fewer rows."""
    from promptclf.methods.offline import combine, fit_weights, folds_of

    if components is None:
        components = default_components([r["text"] for r in rows])
    unknown = [c for c in components if c not in COMPONENTS]
    if unknown or not components:
        raise ConfigError(f"audit components {list(components)}: choose from {list(COMPONENTS)}")
    texts = [r["text"] for r in rows]
    y = np.array([labels.index(r["label"]) for r in rows], dtype=int)
    encoder = shared_encoder(texts, progress)
    splits = folds_of(y, folds, seed)
    probs = {}
    for name in components:
        started = time.perf_counter()
        trained = trainer(name, labels, texts, encoder, seed)
        probs[name] = cross_fitted(trained, rows, labels, splits, name, progress)
        _say(
            progress, f"audit: {name} on {len(rows)} rows, {len(splits)} folds, in {time.perf_counter() - started:.0f}s"
        )
    if len(probs) == 1:
        return next(iter(probs.values()))
    return combine(probs, fit_weights(probs, y, l2=0.01))


def shared_encoder(texts: list[str], progress: bool) -> KnownVectors:
    """The packaged encoder, with the rows' vectors computed once (read from the embedding cache when kept)."""
    from promptclf.methods.embeddings import cached_encode, default_encoder

    started = time.perf_counter()
    _say(progress, f"audit: embedding {len(texts)} texts")
    encoder = default_encoder()
    vectors = cached_encode(encoder, texts)
    _say(progress, f"audit: embedded in {time.perf_counter() - started:.0f}s")
    return KnownVectors(encoder, texts, vectors)


def trainer(name: str, labels: LabelSet, texts: list[str], encoder, seed: int) -> Callable[[list[dict]], object]:
    """A function from training rows to a fitted labelling method (its per-label scores are the probabilities)."""
    from promptclf.methods.baselines import EmbeddingLR
    from promptclf.methods.label_similarity import LabelSimilarity
    from promptclf.methods.offline import OfflineConfig, SetFitComponent
    from promptclf.methods.pseudo_labels import PseudoLabelLR

    if name == "examples":
        return lambda rows: EmbeddingLR(labels, seed=seed, encoder=encoder).fit(
            [r["text"] for r in rows], [r["label"] for r in rows]
        )
    if name == "labels":
        zero_shot = LabelSimilarity(labels, encoder=encoder)
        return lambda rows: zero_shot
    if name == "self-trained":
        return lambda rows: PseudoLabelLR(labels, texts, rows, encoder=encoder, seed=seed).fit()
    return lambda rows: SetFitComponent(labels, OfflineConfig(seed=seed)).fit(rows).method


def cross_fitted(trained, rows: list[dict], labels: LabelSet, splits, name: str, progress: bool) -> np.ndarray:
    from tqdm.auto import tqdm

    from promptclf.methods.offline import method_probabilities

    probs = np.zeros((len(rows), len(labels)))
    for train, test in tqdm(splits, desc=f"audit: {name}", unit="fold", file=sys.stderr, disable=not progress):
        method = trained([rows[i] for i in train])
        probs[test] = method_probabilities(method, [rows[i]["text"] for i in test], labels)
    return probs


def label_issues(rows: list[dict], labels: LabelSet, probs: np.ndarray, filter_by: str = FILTER_BY):
    """cleanlab's label issues among the rows, ranked by self-confidence (see find_label_errors)."""
    from cleanlab.filter import find_label_issues
    from cleanlab.rank import get_label_quality_scores

    y = np.array([labels.index(r["label"]) for r in rows], dtype=int)
    ranked = find_label_issues(y, probs, filter_by=filter_by, return_indices_ranked_by="self_confidence")
    quality = get_label_quality_scores(y, probs, method="self_confidence")
    suggested = probs.argmax(axis=1)
    return pd.DataFrame(
        {
            "row": pd.array([int(i) for i in ranked], dtype="int64"),
            "text": [rows[i]["text"] for i in ranked],
            "label": [rows[i]["label"] for i in ranked],
            "suggested_label": [labels.names[suggested[i]] for i in ranked],
            "label_quality": [float(quality[i]) for i in ranked],
            "suggested_probability": [float(probs[i, suggested[i]]) for i in ranked],
        },
        columns=list(COLUMNS),
    )


def _say(progress: bool, message: str) -> None:
    (log.warning if progress else log.info)("%s", message)


# --- the command line -----------------------------------------------------------------------------------------


def default_output(examples: str | Path) -> Path:
    """Beside the examples file: <stem>.label_issues.csv."""
    examples = Path(examples)
    return examples.with_name(f"{examples.stem}.label_issues.csv")


def cmd_audit(args) -> int:
    from promptclf.core.data import TableWriter, read_table, text_of

    if args.labels and args.task:
        raise ConfigError("--labels and --task both given: the task file names the labels; give one of them")
    output = Path(args.output) if args.output else default_output(args.examples)
    writer = TableWriter(output)  # refuses an output it cannot write, before any work
    frame = read_table(args.examples)
    where = f"examples file {str(args.examples)!r}"
    if args.label_column not in frame.columns:
        raise ColumnError(
            f"{where} has no column {args.label_column!r}: its columns are {[str(c) for c in frame.columns]} "
            "(choose with --label-column)"
        )
    try:
        texts = text_of(frame, args.text_column)
    except ColumnError:
        raise ColumnError(
            f"{where} has no column {args.text_column!r}: its columns are {[str(c) for c in frame.columns]} "
            "(choose with --text-column)"
        ) from None
    if args.components:
        components = tuple(args.components.split(",")) + (("setfit",) if args.setfit else ())
    else:
        components = default_components(texts) + (("setfit",) if args.setfit else ())
    labels = frame[args.label_column].tolist()
    rows, names = checked_rows(texts, labels, args.task or args.labels, where=f"{where}, ", first=1)
    progress = not args.quiet
    probs = out_of_fold_probabilities(rows, names, components, folds=args.folds, seed=args.seed, progress=progress)
    issues = label_issues(rows, names, probs)
    issues["row"] = issues["row"] + 1  # the file's data rows, 1 the first
    with writer:
        writer.write(issues)
    print(describe(issues, len(rows), args.top))
    print(f"wrote {len(issues)} suspect rows to {output} (row: 1 is the first data row)", file=sys.stderr)
    return 0


def describe(issues: pd.DataFrame, rows: int, top: int) -> str:
    """The suspect rows, most suspect first, as lines of text (the first `top` of them)."""
    if issues.empty:
        return f"no suspect labels among {rows} rows"
    lines = [f"{len(issues)} of {rows} rows look mislabelled, most suspect first:"]
    lines.append(f"{'row':>6}  {'given':<16} {'suggested':<16} {'p(given)':>8}  text")
    for r in issues.head(top).itertuples(index=False):
        text = " ".join(r.text.split())
        text = text if len(text) <= 70 else text[:69] + "…"
        lines.append(f"{r.row:>6}  {r.label[:16]:<16} {r.suggested_label[:16]:<16} {r.label_quality:>8.3f}  {text}")
    if len(issues) > top:
        lines.append(f"... and {len(issues) - top} more in the output file")
    return "\n".join(lines)


def register_cli(sub) -> None:
    p = sub.add_parser(
        "audit",
        help="find wrong labels in a labelled file (examples or validation rows)",
        description="Each row is labelled by models trained on the other rows (out-of-fold); cleanlab's confident "
        "learning flags the rows whose given label those models find unlikely, ranked by the probability they give "
        "it. Results on stdout and in --output; progress on stderr.",
    )
    p.add_argument("--examples", required=True, help="the labelled file (.csv, .jsonl, .parquet)")
    p.add_argument("--text-column", default="text", help="its text column, or several joined: title,description")
    p.add_argument("--label-column", default="label", help="its label column (default: label)")
    p.add_argument("--labels", help="comma-separated label names (default: the labels the file uses)")
    p.add_argument("--task", help="a task file naming the labels, instead of --labels")
    p.add_argument(
        "--output", help="where to write the suspect rows (default: <examples stem>.label_issues.csv beside it)"
    )
    p.add_argument(
        "--components",
        help=f"the models, comma-separated, from {', '.join(COMPONENTS)} (default: examples,self-trained; examples "
        "alone below 200 distinct texts)",
    )
    p.add_argument("--setfit", action="store_true", help="add SetFit (better on some data, minutes per fold on CPU)")
    p.add_argument("--folds", type=int, default=FOLDS, help=f"cross-validation folds (default {FOLDS})")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--top", type=int, default=20, help="suspect rows printed (default 20; all are written)")
    p.add_argument("--quiet", action="store_true", help="no progress on stderr")
    p.set_defaults(func=cmd_audit)
