"""SetFit (PyPI `setfit`): contrastive fine-tuning of a sentence-transformers encoder on pairs of the few
labelled rows, then a logistic-regression head on its embeddings. The strongest packaged method with a
handful of labels per class; saved in the same `finetuned:<dir>` format as LoRA models."""

from __future__ import annotations

import json
import logging
import math
import time
from collections.abc import Iterator, Sequence
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np

from promptclf.core.errors import ConfigError
from promptclf.core.files import write_atomically
from promptclf.core.identity import method_identity
from promptclf.core.labels import LabelSet
from promptclf.core.methods import Outcome, from_probabilities
from promptclf.core.quiet import quiet_dependencies
from promptclf.core.usage import Usage
from promptclf.methods.setfit_head import load_head, save_head

log = logging.getLogger("promptclf")

META = "promptclf.json"


@dataclass
class SetFitConfig:
    """The training budget scales with the rows: `iterations` pairs per row and side (SetFit's
    num_iterations), at least `min_pairs` and at most `max_pairs` in all, so 8 rows per class of 4 labels
    train 40 steps and 64 per class stops at 100 steps."""

    base: str = "minilm"
    iterations: int = 10
    max_pairs: int = 1600
    min_pairs: int = 160
    batch_size: int = 16
    body_learning_rate: float = 2e-5
    head_c: float = 1.0
    max_length: int | None = None  # tokens per text, in training and labelling; None: the encoder's own (256)
    seed: int = 0
    # Seconds after which the encoder's training stops at the end of its step (the head is still fitted); None: it
    # runs every step. The offline model's time budget sets it (offline_budget.STOP_SLACK).
    stop_after: float | None = None

    def steps(self, n_rows: int) -> int:
        pairs = min(max(2 * self.iterations * n_rows, self.min_pairs), self.max_pairs)
        return max(1, math.ceil(pairs / self.batch_size))


def _body_path(base: str) -> str:
    if base == "minilm":
        from promptclf.methods.embeddings import minilm_path

        return str(minilm_path())
    path = Path(base).expanduser()
    if not path.is_dir():
        raise ConfigError(f"SetFit base {base!r}: use minilm or a local sentence-transformers directory")
    return str(path)


def train_setfit(
    train_rows: Sequence[dict],
    labels,
    *,
    out: str | Path | None = None,
    progress: bool = False,
    multi_label: bool = False,
    dev_rows: Sequence[dict] | None = None,
    **options,
) -> SetFitMethod:
    """Train SetFit on [{"text", "label"}] rows; saved to `out` when given. Options are SetFitConfig's.
    `multi_label`: rows carry `labels` (a list, or names joined by `;`); SetFit's one-vs-rest strategy, a
    logistic regression per label with balanced class weights (each label is rare among the rows: unweighted,
    few probabilities reach 0.5), each label given where its probability reaches the threshold: 0.5, or the
    one with the best micro-F1 on `dev_rows` when given. Single-label training takes no dev rows."""
    from datasets import Dataset
    from setfit import Trainer, TrainingArguments
    from transformers import ProgressCallback, set_seed

    config = SetFitConfig(**options)
    labels = LabelSet.of(labels)
    if not train_rows:
        raise ConfigError("SetFit needs training rows: got none")
    if multi_label:
        from promptclf.core.multilabel import check_label_sets, indicator

        sets = check_label_sets(
            [r["labels"] if "labels" in r else r["label"] for r in train_rows], labels, "training row"
        )
        y = indicator(sets, labels).astype(int).tolist()
    else:
        y = [labels.index(labels.check(r["label"], f"training row {i}")) for i, r in enumerate(train_rows)]
    set_seed(config.seed)
    if not progress:  # "Running training": expected here, noise to a user
        logging.getLogger("setfit").setLevel(logging.ERROR)
    head = {"C": config.head_c, "max_iter": 2000}
    if multi_label:
        head["class_weight"] = "balanced"
    model = _new_model(_body_path(config.base), head, multi_label)
    if config.max_length:  # set on the body: SetFit's own max_length reaches only a differentiable head
        model.model_body.max_seq_length = config.max_length
    steps = config.steps(len(train_rows))
    args = TrainingArguments(
        batch_size=config.batch_size,
        num_epochs=1,
        max_steps=steps,
        num_iterations=config.iterations,
        body_learning_rate=config.body_learning_rate,
        seed=config.seed,
        report_to="none",
        show_progress_bar=progress,
        save_strategy="no",
        logging_strategy="no",
        logging_first_step=False,
        output_dir=str(Path(out) / "checkpoints") if out else "/tmp/promptclf-setfit",
    )
    data = Dataset.from_dict({"text": [r["text"] for r in train_rows], "label": y})
    started = time.perf_counter()
    with quiet_dependencies():  # SetFit prints its training dicts on stdout; datasets shows Map bars
        trainer = Trainer(
            model=model, args=args, train_dataset=data, metric=_subset_accuracy if multi_label else _accuracy
        )
        # SetFit's show_progress_bar does not reach the steps bar of the trainer it runs, which shows one only while
        # transformers' logging is at WARNING or below (the CLI sets it to ERROR): the bar is there iff asked for.
        trainer.pop_callback(ProgressCallback)
        if progress:
            trainer.add_callback(ProgressCallback)
        clock = _stop_after(config.stop_after)
        trainer.add_callback(clock)
        trainer.train()
    if clock.stopped_at is not None:
        log.warning(
            "promptclf: SetFit stopped after %d of %d steps: its %.0fs of the time budget ran out (the machine ran "
            "slower than the budget's estimate)",
            clock.stopped_at,
            steps,
            config.stop_after,
        )
    method = SetFitMethod(model, labels, config, path=Path(out) if out else None, multi_label=multi_label)
    if multi_label and dev_rows:
        method.threshold = _dev_threshold(method, dev_rows, labels, np.asarray(y))
    if out:
        method.save(
            Path(out),
            {
                "train_seconds": time.perf_counter() - started,
                "train_rows": len(train_rows),
                "steps": steps,
                "steps_run": clock.stopped_at or steps,
            },
        )
    return method


def _stop_after(seconds: float | None):
    """A trainer callback that stops the training at the end of the step during which `seconds` have passed since
    it began (`stopped_at`: that step; None where it ran every step)."""
    from transformers import TrainerCallback

    class StopAfter(TrainerCallback):
        stopped_at: int | None = None
        deadline: float | None = None

        def on_train_begin(self, args, state, control, **kwargs):
            self.deadline = None if seconds is None else time.monotonic() + seconds

        def on_step_end(self, args, state, control, **kwargs):
            if self.deadline is not None and time.monotonic() > self.deadline and state.global_step < state.max_steps:
                control.should_training_stop = True
                self.stopped_at = state.global_step
            return control

    return StopAfter()


def _dev_threshold(method: SetFitMethod, dev_rows: Sequence[dict], labels: LabelSet, train_y: np.ndarray) -> float:
    """The one threshold with the best micro-F1 on the dev rows among those giving no more labels per dev row than
    the training rows carry plus CARDINALITY_SLACK: a weakly trained head (a few rows, a few pairs) scores best by
    giving every label to every item, which is no answer (offline_multilabel.Cardinality)."""
    from promptclf.core.multilabel import check_label_sets, indicator
    from promptclf.methods.offline_multilabel import CARDINALITY_SLACK, Cardinality, shared_threshold

    dev = check_label_sets([r["labels"] if "labels" in r else r["label"] for r in dev_rows], labels, "dev row")
    probs = method.probabilities([r["text"] for r in dev_rows])
    limit = float(train_y.sum(axis=1).mean()) * (1 + CARDINALITY_SLACK)
    gold = indicator(dev, labels).astype(int)
    return shared_threshold(probs, gold, allow_empty=True, cardinality=Cardinality(probs, limit))


def _new_model(body: str, head_params: dict, multi_label: bool):
    """An untrained SetFitModel on the encoder in `body`. Not SetFitModel.from_pretrained: it unpickles a
    model_head.pkl it finds there (setfit_head.py)."""
    from setfit import SetFitModel
    from sklearn.linear_model import LogisticRegression
    from sklearn.multiclass import OneVsRestClassifier

    head = LogisticRegression(**head_params)
    if multi_label:
        return SetFitModel(
            model_body=_encoder(body), model_head=OneVsRestClassifier(head), multi_target_strategy="one-vs-rest"
        )
    return SetFitModel(model_body=_encoder(body), model_head=head)


def _encoder(path: str | Path, safetensors_only: bool = False):
    from sentence_transformers import SentenceTransformer

    model_kwargs = {"use_safetensors": True} if safetensors_only else None
    with quiet_dependencies():  # transformers' "Loading weights" bar
        return SentenceTransformer(str(path), local_files_only=True, trust_remote_code=False, model_kwargs=model_kwargs)


def _accuracy(predicted, gold) -> dict:
    # SetFit's default metric loads "accuracy" from the hub, which is out of reach offline.
    return {"accuracy": float(np.mean(np.asarray(predicted) == np.asarray(gold)))}


def _subset_accuracy(predicted, gold) -> dict:
    return {"accuracy": float(np.mean(np.all(np.asarray(predicted) == np.asarray(gold), axis=1)))}


class SetFitMethod:
    """A labelling method backed by a trained SetFit model (encoder + logistic-regression head)."""

    cacheable = False

    def __init__(
        self,
        model,
        labels: LabelSet,
        config: SetFitConfig,
        path: Path | None = None,
        multi_label: bool = False,
        threshold: float = 0.5,
    ):
        self.model, self.labels, self.config, self.path = model, labels, config, path
        self.multi_label, self.threshold = multi_label, threshold

    @property
    def identity(self) -> str:
        return method_identity(None, f"setfit:{self.path}")

    def save(self, out: Path, metrics: dict) -> None:
        """The encoder as safetensors, the head as JSON (setfit_head.py); not SetFitModel.save_pretrained,
        which pickles the head."""
        import setfit

        out.mkdir(parents=True, exist_ok=True)
        with quiet_dependencies():
            self.model.model_body.save(str(out), create_model_card=False, safe_serialization=True)
        save_head(self.model.model_head, out, self.model.normalize_embeddings)
        meta = {
            "format": 2,
            "method": "setfit",
            "labels": self.labels.to_json(),
            "config": asdict(self.config),
            "metrics": metrics,
            "versions": {"setfit": setfit.__version__},
        }
        if self.multi_label:
            meta.update(multi_label=True, threshold=self.threshold)
        write_atomically(out / META, json.dumps(meta, indent=2))  # last, and whole: it marks a saved model
        import shutil

        shutil.rmtree(out / "checkpoints", ignore_errors=True)

    @classmethod
    def load(cls, path: str | Path, meta: dict) -> SetFitMethod:
        """The model `save` wrote; one with only setfit's pickled head (format 1) is refused (setfit_head.py)."""
        from setfit import SetFitModel

        head, settings = load_head(Path(path))
        model = SetFitModel(model_body=_encoder(path, safetensors_only=True), model_head=head, **settings)
        return cls(
            model,
            LabelSet.from_json(meta["labels"]),
            SetFitConfig(**meta["config"]),
            path=Path(path),
            multi_label=bool(meta.get("multi_label")),
            threshold=meta.get("threshold", 0.5),
        )

    @property
    def metrics(self) -> dict:
        return json.loads((self.path / META).read_text())["metrics"] if self.path else {}

    def probabilities(self, texts: Sequence[str]) -> np.ndarray:
        if not len(texts):
            return np.zeros((0, len(self.labels)))
        if self.multi_label:  # one-vs-rest: a column per label, P(label applies)
            return _positive_columns(self.model.predict_proba(list(texts), as_numpy=True), len(self.labels))
        probs = np.asarray(self.model.predict_proba(list(texts), as_numpy=True), dtype=np.float64)
        # The head's columns follow the classes it saw; a label without training rows gets probability 0.
        full = np.zeros((len(texts), len(self.labels)))
        full[:, np.asarray(self.model.model_head.classes_, dtype=int)] = probs
        return full

    def predict(self, texts: Sequence[str], usage: Usage) -> Iterator[tuple[int, Outcome]]:
        if self.multi_label:
            from promptclf.core.multilabel import from_label_probabilities

            return from_label_probabilities(self.labels, self.probabilities, texts, usage, self.threshold, "setfit")
        return from_probabilities(self.labels, self.probabilities, texts, usage, "setfit")


def _positive_columns(probs, n_labels: int) -> np.ndarray:
    """sklearn's one-vs-rest predict_proba is (n, labels) already; a list of (n, 2) arrays, one per label,
    (as other multi-output heads give) is reduced to each label's positive column."""
    if isinstance(probs, np.ndarray) and probs.ndim == 2 and probs.shape[1] == n_labels:
        return probs.astype(np.float64)
    return np.stack([np.asarray(p, dtype=np.float64)[:, 1] for p in probs], axis=1)
