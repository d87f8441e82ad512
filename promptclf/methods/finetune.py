"""A quantized LoRA sequence classifier (transformers + peft + bitsandbytes), trained with the HF Trainer.

It is a labelling method like any other (`finetuned:<dir>`), and the fallback for items an LLM could not
label. Bases: the packaged MiniLM encoder (default, fast on a CPU), the embedded Gemma 3 270M (a decoder
with a classification head), or any local transformers directory.
"""

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

log = logging.getLogger("promptclf")

META = "promptclf.json"

# Per architecture: the classification head (kept out of quantisation, trained in full and saved with the
# adapter via modules_to_save), modules also left unquantised, and the LoRA target modules.
ARCHITECTURES = {
    # BERT-style heads read the pooler (dense + tanh over [CLS]); it is trained with the head.
    "bert": dict(
        head=["classifier", "pooler"], skip=["classifier", "pooler.dense"], targets=["query", "key", "value", "dense"]
    ),
    "gemma3_text": dict(head=["score"], skip=["score"], targets=["q_proj", "k_proj", "v_proj", "o_proj"]),
    "default": dict(head=["classifier"], skip=["classifier", "score", "pooler.dense"], targets="all-linear"),
}


def resolve_base(base: str) -> Path:
    if base == "minilm":
        from promptclf.methods.embeddings import minilm_path

        return minilm_path()
    if base in ("gemma-270m", "gemma3-270m"):
        from promptclf.methods.local import embedded_model_dir

        return embedded_model_dir()
    path = Path(base).expanduser()
    if not (path / "config.json").exists():
        raise ConfigError(f"base {base!r}: use minilm, gemma-270m or a local transformers model directory")
    return path


@dataclass
class FineTuneConfig:
    base: str = "minilm"
    quantize: str = "4bit"  # 4bit (NF4, double quantisation), 8bit or none
    lora_r: int = 8
    lora_alpha: int = 16
    lora_dropout: float = 0.1
    target_modules: list | str | None = None  # None: the architecture's default
    epochs: float = 3
    learning_rate: float = 2e-3
    batch_size: int = 32
    max_length: int = 128
    early_stopping_patience: int = 2  # in evaluations
    seed: int = 0
    dev_fraction: float = 0.1
    # Small data: at least this many optimiser steps (smaller batches, then more epochs; about 5 evaluations in
    # all); 0 keeps the plain epochs x batches schedule.
    min_steps: int = 40
    # Without dev rows, hold out dev_fraction only if that gives at least this many rows; else train on all
    # rows, with no evaluation, early stopping or checkpoint choice (a 3-row dev set is noise).
    min_dev_rows: int = 20

    def __post_init__(self):
        if self.quantize not in ("4bit", "8bit", "none"):
            raise ConfigError(f"quantize={self.quantize!r}: choose 4bit, 8bit or none")


def _quantization(quantize: str, skip: list[str]):
    import torch
    from transformers import BitsAndBytesConfig

    if quantize == "none":
        return None
    if quantize == "8bit":
        return BitsAndBytesConfig(load_in_8bit=True, llm_int8_skip_modules=skip)
    compute = torch.bfloat16 if torch.cuda.is_available() else torch.float32
    return BitsAndBytesConfig(
        load_in_4bit=True,
        bnb_4bit_quant_type="nf4",
        bnb_4bit_use_double_quant=True,
        bnb_4bit_compute_dtype=compute,
        llm_int8_skip_modules=skip,
    )


def _architecture(path: Path) -> dict:
    model_type = json.loads((path / "config.json").read_text()).get("model_type", "")
    return ARCHITECTURES.get(model_type, ARCHITECTURES["default"])


def load_base(config: FineTuneConfig, labels: LabelSet, multi_label: bool = False):
    """(model, tokenizer, architecture) with a fresh classification head for the label set; multi_label:
    one sigmoid per label, trained with binary cross-entropy (transformers' multi_label_classification)."""
    import torch
    from transformers import AutoModelForSequenceClassification, AutoTokenizer

    path = resolve_base(config.base)
    arch = _architecture(path)
    tokenizer = AutoTokenizer.from_pretrained(path)
    if tokenizer.pad_token_id is None:
        tokenizer.pad_token = tokenizer.eos_token
    kwargs = {}
    quantization = _quantization(config.quantize, arch["skip"])
    if quantization is not None:
        kwargs["quantization_config"] = quantization
    if multi_label:
        kwargs["problem_type"] = "multi_label_classification"
    elif torch.cuda.is_available():
        kwargs["dtype"] = torch.bfloat16
    with quiet_dependencies():  # transformers' "Loading weights" bar
        model = AutoModelForSequenceClassification.from_pretrained(
            path,
            num_labels=len(labels),
            id2label=dict(enumerate(labels.names)),
            label2id={n: i for i, n in enumerate(labels.names)},
            **kwargs,
        )
    model.config.pad_token_id = tokenizer.pad_token_id  # decoder heads find each row's last real token by it
    return model, tokenizer, arch


def keep_4bit_weights_trainable(model) -> None:
    """On CPUs with AVX512-BF16, bitsandbytes repacks Linear4bit weights in the first no-grad forward,
    and a training step after that fails ("a view of a leaf Variable ... in-place operation"). Training
    evaluates between epochs, so the repacking is turned off for the model's whole training life."""
    for module in model.modules():
        if hasattr(module, "support_avx512bf16_for_cpu"):
            module.support_avx512bf16_for_cpu = False


def prepare_for_training(model, config: FineTuneConfig):
    """A quantised base made ready for adapters (norms in float32, input gradients), before LoRA is added."""
    if config.quantize == "none":
        return model
    from peft import prepare_model_for_kbit_training

    model = prepare_model_for_kbit_training(model, use_gradient_checkpointing=False)
    keep_4bit_weights_trainable(model)
    return model


def with_lora(model, config: FineTuneConfig, arch: dict):
    from peft import LoraConfig, get_peft_model

    model = prepare_for_training(model, config)
    lora = LoraConfig(
        task_type="SEQ_CLS",
        r=config.lora_r,
        lora_alpha=config.lora_alpha,
        lora_dropout=config.lora_dropout,
        target_modules=config.target_modules or arch["targets"],
        modules_to_save=arch["head"],
    )
    return get_peft_model(model, lora)


def _dataset(tokenizer, texts, label_ids, max_length):
    from datasets import Dataset

    data = Dataset.from_dict({"text": list(texts), "label": list(label_ids)})
    return data.map(
        lambda b: tokenizer(b["text"], truncation=True, max_length=max_length), batched=True, remove_columns=["text"]
    )


def _metrics(eval_pred) -> dict:
    from sklearn.metrics import accuracy_score, f1_score

    logits, gold = eval_pred
    pred = np.asarray(logits).argmax(-1)
    return {"accuracy": accuracy_score(gold, pred), "macro_f1": f1_score(gold, pred, average="macro")}


def _multi_label_metrics(eval_pred) -> dict:
    from sklearn.metrics import accuracy_score, f1_score

    logits, gold = eval_pred
    pred = (np.asarray(logits) > 0).astype(int)  # sigmoid(logit) >= 0.5
    gold = np.asarray(gold).astype(int)
    return {
        "accuracy": accuracy_score(gold, pred),
        "micro_f1": f1_score(gold, pred, average="micro", zero_division=0),
        "macro_f1": f1_score(gold, pred, average="macro", zero_division=0),
    }


def _targets(rows: Sequence[dict], labels: LabelSet, multi_label: bool, what: str) -> list:
    """Each row's class index, or with multi_label its 0/1 vector (from `labels`, a list or `;`-joined
    names, or else `label`)."""
    if not multi_label:
        return [labels.index(labels.check(r["label"], f"{what} {i}")) for i, r in enumerate(rows)]
    from promptclf.core.multilabel import check_label_sets, indicator

    sets = check_label_sets([r["labels"] if "labels" in r else r["label"] for r in rows], labels, what)
    return indicator(sets, labels).tolist()


def _split_dev(texts, label_ids, fraction, seed):
    order = np.random.default_rng(seed).permutation(len(texts))
    n_dev = max(1, int(len(texts) * fraction))
    dev, train = order[:n_dev], order[n_dev:]
    pick = lambda idx, xs: [xs[i] for i in idx]  # noqa: E731
    return pick(train, texts), pick(train, label_ids), pick(dev, texts), pick(dev, label_ids)


@dataclass
class Schedule:
    batch_size: int
    epochs: float
    steps: int  # optimiser steps planned
    eval_steps: int | None  # None: evaluate (and save) each epoch; 0: no evaluation
    warmup_steps: int = 0


def plan_schedule(n_train: int, config: FineTuneConfig, evaluate: bool = True) -> Schedule:
    """The configured epochs x batches when that reaches `min_steps`. Otherwise (few rows: 32 rows in one
    batch of 32 gave 3 steps in 3 epochs, a head barely trained): smaller batches (not below 8) until the
    configured epochs reach `min_steps`, then more epochs if still short; 10% warmup; and evaluation every
    ~1/5 of the steps rather than every tiny epoch (early stopping patience counts evaluations)."""
    batch = config.batch_size
    steps = math.ceil(math.ceil(n_train / batch) * config.epochs)
    if not config.min_steps or steps >= config.min_steps:
        return Schedule(batch, config.epochs, steps, None if evaluate else 0)
    batch = max(8, min(batch, int(n_train * config.epochs // config.min_steps)))
    per_epoch = math.ceil(n_train / batch)
    epochs = max(config.epochs, math.ceil(config.min_steps / per_epoch))
    steps = math.ceil(per_epoch * epochs)
    return Schedule(batch, epochs, steps, math.ceil(steps / 5) if evaluate else 0, warmup_steps=math.ceil(steps / 10))


def finetune(
    train_rows: Sequence[dict],
    labels,
    *,
    out: str | Path,
    dev_rows: Sequence[dict] | None = None,
    progress: bool = True,
    init_from: str | Path | None = None,
    method: str = "lora",
    multi_label: bool = False,
    **options,
) -> FineTunedMethod:
    """Train a LoRA classifier on [{"text", "label"}] rows and save it to `out`; returns the loaded method.

    method="setfit": SetFit on a sentence-transformers encoder instead (options are SetFitConfig's: base,
    iterations, max_pairs, batch_size, body_learning_rate, head_c, max_length, seed); it needs no dev rows.

    Options are FineTuneConfig's (base, quantize, lora_r, lora_alpha, lora_dropout, target_modules, epochs,
    learning_rate, batch_size, max_length, early_stopping_patience, seed, dev_fraction, min_steps, min_dev_rows).
    Without dev rows, a seeded `dev_fraction` of the training rows is held out for evaluation and early stopping
    when that is at least `min_dev_rows` rows; with fewer rows all train and the last model is kept. On small
    data the schedule is raised to `min_steps` optimiser steps (see `plan_schedule`).
    `init_from`: continue training a saved model (same label set; its base and quantisation are kept).
    `multi_label`: rows carry `labels` (a list, or names joined by `;`); a sigmoid per label trained with
    binary cross-entropy, its threshold chosen for micro-F1 on the dev rows (0.5 without any).
    """
    import torch
    from transformers import DataCollatorWithPadding, EarlyStoppingCallback, Trainer, TrainingArguments, set_seed

    if method == "setfit":
        from promptclf.methods.setfit import train_setfit

        dev = {"dev_rows": dev_rows} if multi_label else {}  # single-label SetFit trains as it did, without them
        return train_setfit(train_rows, labels, out=out, progress=progress, multi_label=multi_label, **dev, **options)
    if method != "lora":
        raise ConfigError(f"method={method!r}: choose lora or setfit")
    config = FineTuneConfig(**options)
    labels = LabelSet.of(labels)
    if not train_rows:
        raise ConfigError("finetune needs training rows: got none")
    texts = [r["text"] for r in train_rows]
    label_ids = _targets(train_rows, labels, multi_label, "training row")
    if dev_rows:
        dev_texts = [r["text"] for r in dev_rows]
        dev_ids = _targets(dev_rows, labels, multi_label, "dev row")
    elif int(len(texts) * config.dev_fraction) >= config.min_dev_rows:
        texts, label_ids, dev_texts, dev_ids = _split_dev(texts, label_ids, config.dev_fraction, config.seed)
    else:
        dev_texts, dev_ids = [], []
    schedule = plan_schedule(len(texts), config, evaluate=bool(dev_texts))
    set_seed(config.seed)
    if init_from:
        previous = FineTunedMethod.load(init_from, labels, trainable=True)
        if previous.multi_label != multi_label:
            raise ConfigError(
                f"init_from {str(init_from)!r}: its head is {'multi' if previous.multi_label else 'single'}"
                f"-label, not {'multi' if multi_label else 'single'}-label"
            )
        model, tokenizer = previous.model, previous.tokenizer
        config.base, config.quantize = previous.config.base, previous.config.quantize
        model.train()
    else:
        model, tokenizer, arch = load_base(config, labels, multi_label)
        model = with_lora(model, config, arch)
    out = Path(out)
    if schedule.eval_steps is None:
        every = dict(eval_strategy="epoch", save_strategy="epoch")
    elif schedule.eval_steps == 0:  # no dev rows: train on all, keep the last model
        every = dict(eval_strategy="no", save_strategy="no")
    else:
        every = dict(
            eval_strategy="steps", save_strategy="steps", eval_steps=schedule.eval_steps, save_steps=schedule.eval_steps
        )
    args = TrainingArguments(
        output_dir=str(out / "checkpoints"),
        num_train_epochs=schedule.epochs,
        learning_rate=config.learning_rate,
        per_device_train_batch_size=schedule.batch_size,
        per_device_eval_batch_size=64,
        **every,
        save_total_limit=1,
        load_best_model_at_end=bool(dev_texts),
        # Multi-label: the dev BCE loss; micro-F1 at 0.5 stays 0 until some probability reaches 0.5, so it would
        # keep the first checkpoint (the threshold is chosen on the dev rows afterwards).
        metric_for_best_model="loss" if multi_label else "accuracy",
        warmup_steps=schedule.warmup_steps,
        seed=config.seed,
        data_seed=config.seed,
        report_to=[],
        logging_strategy="epoch",
        disable_tqdm=not progress,
        use_cpu=not torch.cuda.is_available(),
        bf16=torch.cuda.is_available(),
        dataloader_num_workers=0,
    )
    trainer = Trainer(
        model=model,
        args=args,
        train_dataset=_dataset(tokenizer, texts, label_ids, config.max_length),
        eval_dataset=_dataset(tokenizer, dev_texts, dev_ids, config.max_length) if dev_texts else None,
        data_collator=DataCollatorWithPadding(tokenizer),
        compute_metrics=_multi_label_metrics if multi_label else _metrics,
        callbacks=[EarlyStoppingCallback(config.early_stopping_patience)] if dev_texts else [],
    )
    started = time.perf_counter()
    trainer.train()
    train_s = time.perf_counter() - started
    dev_metrics = trainer.evaluate() if dev_texts else {}
    method = FineTunedMethod(trainer.model, tokenizer, labels, config, path=out, multi_label=multi_label)
    if multi_label and dev_texts:
        from promptclf.core.multilabel import choose_threshold

        method.threshold = choose_threshold(method.probabilities(dev_texts), np.asarray(dev_ids))
    method.save(
        out,
        {
            "train_seconds": train_s,
            "train_rows": len(texts),
            "dev_rows": len(dev_texts),
            "steps": trainer.state.global_step,
            "schedule": asdict(schedule),
            "dev": {k: v for k, v in dev_metrics.items() if isinstance(v, (int, float))},
        },
    )
    return method


def read_meta(path: Path, labels=None) -> dict:
    """A saved model's promptclf.json, checked against the label set the caller expects."""
    if not (path / META).exists():
        raise ConfigError(f"{str(path)!r} is not a promptclf fine-tuned model directory (no {META})")
    meta = json.loads((path / META).read_text())
    saved = LabelSet.from_json(meta["labels"])
    if labels is not None and LabelSet.of(labels).names != saved.names:
        raise ConfigError(
            f"fine-tuned model {str(path)!r} was trained on labels {saved.names}, not {LabelSet.of(labels).names}"
        )
    return meta


def load_finetuned(path: str | Path, labels=None):
    """The method saved in a `finetuned:<dir>` directory: a LoRA classifier or a SetFit model."""
    meta = read_meta(Path(path), labels)
    if meta.get("method") == "setfit":
        from promptclf.methods.setfit import SetFitMethod

        return SetFitMethod.load(path, meta)
    return FineTunedMethod.load(path, labels)


class FineTunedMethod:
    """A labelling method backed by a fine-tuned (LoRA) sequence classifier."""

    cacheable = False  # local and cheap: caching would only add disk writes

    def __init__(
        self,
        model,
        tokenizer,
        labels: LabelSet,
        config: FineTuneConfig,
        path: Path | None = None,
        batch_size: int = 64,
        multi_label: bool = False,
        threshold: float = 0.5,
    ):
        self.model, self.tokenizer, self.labels, self.config = model, tokenizer, labels, config
        self.path, self.batch_size = path, batch_size
        self.multi_label, self.threshold = multi_label, threshold
        self.model.eval()

    @property
    def identity(self) -> str:
        return method_identity(None, f"finetuned:{self.path}")

    def save(self, out: Path, metrics: dict) -> None:
        import peft
        import transformers

        out.mkdir(parents=True, exist_ok=True)
        with quiet_dependencies():  # transformers' "Writing model shards" bar
            self.model.save_pretrained(out)  # the adapter, and the head through modules_to_save
            self.tokenizer.save_pretrained(out)
        meta = {
            "format": 1,
            "labels": self.labels.to_json(),
            "config": asdict(self.config),
            "metrics": metrics,
            "versions": {"transformers": transformers.__version__, "peft": peft.__version__},
        }
        if self.multi_label:
            meta.update(multi_label=True, threshold=self.threshold)
        write_atomically(out / META, json.dumps(meta, indent=2))  # last, and whole: it marks a saved model
        import shutil

        shutil.rmtree(out / "checkpoints", ignore_errors=True)

    @classmethod
    def load(cls, path: str | Path, labels=None, trainable: bool = False) -> FineTunedMethod:
        from peft import PeftModel

        path = Path(path)
        meta = read_meta(path, labels)
        saved = LabelSet.from_json(meta["labels"])
        config = FineTuneConfig(**meta["config"])
        multi_label = bool(meta.get("multi_label"))
        model, tokenizer, _ = load_base(config, saved, multi_label)
        if trainable:
            model = prepare_for_training(model, config)
        with quiet_dependencies():
            model = PeftModel.from_pretrained(model, path, is_trainable=trainable)
        keep_4bit_weights_trainable(model)
        return cls(
            model, tokenizer, saved, config, path=path, multi_label=multi_label, threshold=meta.get("threshold", 0.5)
        )

    @property
    def metrics(self) -> dict:
        return json.loads((self.path / META).read_text())["metrics"] if self.path else {}

    def probabilities(self, texts: Sequence[str]) -> np.ndarray:
        import torch

        out = []
        with torch.inference_mode():
            for start in range(0, len(texts), self.batch_size):
                batch = self.tokenizer(
                    list(texts[start : start + self.batch_size]),
                    padding=True,
                    truncation=True,
                    max_length=self.config.max_length,
                    return_tensors="pt",
                )
                batch = {k: v.to(self.model.device) for k, v in batch.items()}
                logits = self.model(**batch).logits.float()
                out.append((torch.sigmoid(logits) if self.multi_label else torch.softmax(logits, -1)).cpu().numpy())
        return np.concatenate(out) if out else np.zeros((0, len(self.labels)))

    def predict(self, texts: Sequence[str], usage: Usage) -> Iterator[tuple[int, Outcome]]:
        if self.multi_label:
            from promptclf.core.multilabel import from_label_probabilities

            return from_label_probabilities(self.labels, self.probabilities, texts, usage, self.threshold, "lora")
        return from_probabilities(self.labels, self.probabilities, texts, usage, "lora")


def _finetune_options(args) -> dict:
    if args.method == "setfit":
        given = dict(base=args.base, batch_size=args.batch_size, max_length=args.max_length)
        return dict(method="setfit", seed=args.seed, **{k: v for k, v in given.items() if v is not None})
    return dict(
        base=args.base or "minilm",
        quantize=args.quantize,
        epochs=args.epochs,
        learning_rate=args.learning_rate,
        lora_r=args.lora_r,
        lora_alpha=args.lora_alpha,
        lora_dropout=args.lora_dropout,
        batch_size=args.batch_size or 32,
        max_length=args.max_length or 128,
        seed=args.seed,
        min_steps=args.min_steps,
    )


def cmd_finetune(args) -> int:
    from promptclf.core.data import rows_from_file

    rows = rows_from_file(args.train, args.text_column, args.label_column)
    dev = rows_from_file(args.dev, args.text_column, args.label_column) if args.dev else None
    labels = args.labels or sorted({r["label"] for r in rows})
    method = finetune(rows, labels, out=args.out, dev_rows=dev, **_finetune_options(args))
    if args.method == "setfit":
        print(
            f"saved to {args.out}: SetFit trained {method.metrics['steps']} steps on {len(rows)} rows "
            f"in {method.metrics['train_seconds']:.0f}s"
        )
        return 0
    dev_metrics = method.metrics["dev"]
    dev = (
        f"dev accuracy {dev_metrics['eval_accuracy']:.4f}, macro-F1 {dev_metrics['eval_macro_f1']:.4f}"
        if dev_metrics
        else f"no dev rows (too few to hold out: trained on all {method.metrics['train_rows']})"
    )
    print(
        f"saved to {args.out}: {dev}, {method.metrics['steps']} steps, "
        f"trained in {method.metrics['train_seconds']:.0f}s"
    )
    return 0


def _add_training_options(p) -> None:
    p.add_argument("--out", required=True, help="directory for the fine-tuned model")
    p.add_argument("--text-column", default="text")
    p.add_argument("--label-column", default="label")
    p.add_argument("--labels", help="comma-separated label set (default: the labels in the training file)")
    p.add_argument(
        "--method",
        default="lora",
        choices=["lora", "setfit"],
        help="lora (quantised LoRA, default) or setfit (few labelled rows)",
    )
    p.add_argument("--base", help="minilm (default), gemma-270m (lora), or a local model directory")
    p.add_argument("--quantize", default="4bit", choices=["4bit", "8bit", "none"])
    p.add_argument("--epochs", type=float, default=3)
    p.add_argument("--learning-rate", type=float, default=2e-3)
    p.add_argument("--lora-r", type=int, default=8)
    p.add_argument("--lora-alpha", type=int, default=16)
    p.add_argument("--lora-dropout", type=float, default=0.1)
    p.add_argument("--batch-size", type=int, help="default 32 (lora), 16 (setfit)")
    p.add_argument(
        "--min-steps",
        type=int,
        default=40,
        help="lora: on small data, smaller batches and more epochs up to this many optimiser steps (0: off)",
    )
    p.add_argument("--max-length", type=int, help="default 128 (lora), 64 (setfit) tokens")
    p.add_argument("--seed", type=int, default=0)


def register_cli(sub) -> None:
    p = sub.add_parser("finetune", help="train a (quantized) LoRA classifier on a labelled file")
    p.add_argument("--train", required=True)
    p.add_argument("--dev", help="labelled dev file (default: a seeded 10%% of --train)")
    _add_training_options(p)
    p.set_defaults(func=cmd_finetune)
