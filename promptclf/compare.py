"""One accuracy / cost / latency table for every labelling method on the same seeded split."""

from __future__ import annotations

import json
import platform
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, Sequence

import numpy as np

from .classifier import Classifier
from .labels import LabelSet
from .metrics import classification_metrics

METHODS = ("offline", "offline-zero-shot", "embed", "setfit", "zero-shot", "few-shot", "optimized", "lora-4bit",
           "lora", "emb-lr", "tfidf-lr")


@dataclass
class Context:
    """Everything the method factories share: the split, the label set, the model and run options."""

    labels: LabelSet
    train: list[dict]
    dev: list[dict]
    model: str
    out: Path
    seed: int = 0
    cache: bool | str = False
    prompt: str | None = None
    classifier_options: dict = field(default_factory=dict)
    finetune_options: dict = field(default_factory=dict)
    setfit_options: dict = field(default_factory=dict)


def _llm(ctx: Context, **extra) -> Classifier:
    options = {"model": ctx.model, **ctx.classifier_options, **extra}
    return Classifier(ctx.labels, cache=ctx.cache, progress=False, seed=ctx.seed, **options)


def _optimized(ctx: Context) -> Classifier:
    if not ctx.prompt:
        raise ValueError("method 'optimized' needs an optimised prompt artifact: pass prompt= (promptclf optimize)")
    return _llm(ctx, prompt=ctx.prompt)


def _lora(quantize: str):
    def build(ctx: Context) -> Classifier:
        from .finetune import finetune

        options = {"seed": ctx.seed, **ctx.finetune_options, "quantize": quantize}
        method = finetune(ctx.train, ctx.labels, out=ctx.out / f"lora-{quantize}", dev_rows=ctx.dev,
                          progress=False, **options)
        return Classifier(ctx.labels, method=method, cache=False, progress=False)

    return build


def _setfit(ctx: Context) -> Classifier:
    from .finetune import finetune

    method = finetune(ctx.train, ctx.labels, out=ctx.out / "setfit", method="setfit", progress=False,
                      **{"seed": ctx.seed, **ctx.setfit_options})
    return Classifier(ctx.labels, method=method, cache=False, progress=False)


def _offline(with_examples: bool):
    def build(ctx: Context) -> Classifier:
        from .offline import OfflineClassifier, OfflineConfig

        method = OfflineClassifier(ctx.labels, ctx.train if with_examples else (), OfflineConfig(seed=ctx.seed)).fit()
        return Classifier(ctx.labels, method=method, cache=False, progress=False)

    return build


def _sklearn(cls):
    def build(ctx: Context) -> Classifier:
        method = cls(ctx.labels, seed=ctx.seed).fit([r["text"] for r in ctx.train], [r["label"] for r in ctx.train])
        return Classifier(ctx.labels, method=method, cache=False, progress=False)

    return build


def _factories() -> dict[str, Callable[[Context], Classifier]]:
    from .baselines import EmbeddingLR, TfidfLR

    return {
        "offline": _offline(True),
        "offline-zero-shot": _offline(False),
        "embed": lambda ctx: _llm(ctx, model="embed"),
        "setfit": _setfit,
        "zero-shot": lambda ctx: _llm(ctx),
        "few-shot": lambda ctx: _llm(ctx, examples=ctx.train),
        "optimized": _optimized,
        "lora-4bit": _lora("4bit"),
        "lora": _lora("none"),
        "emb-lr": _sklearn(EmbeddingLR),
        "tfidf-lr": _sklearn(TfidfLR),
    }


class PeakMemory:
    """Peak resident memory of this process while the block runs (sampled every 50 ms)."""

    def __enter__(self):
        import psutil

        self._process, self.peak_mb, self._stop = psutil.Process(), 0.0, threading.Event()
        self._thread = threading.Thread(target=self._sample, daemon=True)
        self._thread.start()
        return self

    def _sample(self):
        while True:
            self.peak_mb = max(self.peak_mb, self._process.memory_info().rss / 2**20)
            if self._stop.wait(0.05):
                return

    def __exit__(self, *exc):
        self._stop.set()
        self._thread.join()
        return False


def _run_method(name: str, build, ctx: Context, test: list[dict], chunk: int) -> dict:
    texts, gold = [r["text"] for r in test], [r["label"] for r in test]
    with PeakMemory() as memory:
        started = time.perf_counter()
        clf = build(ctx)
        train_s = time.perf_counter() - started
        predicted, latencies, usage = [], [], []
        started = time.perf_counter()
        for start in range(0, len(texts), chunk):
            batch_started = time.perf_counter()
            predicted += clf.classify(texts[start : start + chunk])
            latencies += [time.perf_counter() - batch_started] * len(texts[start : start + chunk])
            usage.append(clf.report.as_dict())
        infer_s = time.perf_counter() - started
    return _row(name, clf, gold, predicted, latencies, usage, train_s, infer_s, memory.peak_mb)


def _row(name, clf, gold, predicted, latencies, usage, train_s, infer_s, peak_mb) -> dict:
    n = len(gold)
    total = {k: sum(u[k] or 0 for u in usage) for k in ("requests", "prompt_tokens", "completion_tokens",
                                                         "compute_s", "cache_hits")}
    costs = [u["cost_usd"] for u in usage]
    metrics = classification_metrics(gold, predicted, clf.labels.names)
    return {
        "method": name, "model": clf.spec.id if clf.spec.provider != "custom" else clf.spec.name,
        "n_test": n, "accuracy": metrics["accuracy"], "macro_f1": metrics["macro_f1"],
        "per_class_f1": metrics["per_class_f1"], "calls": total["requests"], "cache_hits": total["cache_hits"],
        "prompt_tokens_per_item": total["prompt_tokens"] / n, "completion_tokens_per_item": total["completion_tokens"] / n,
        "cost_per_1k_items": None if any(c is None for c in costs) else 1000 * sum(costs) / n,
        "compute_s_per_1k_items": 1000 * infer_s / n, "train_s": train_s, "items_per_s": n / infer_s,
        "latency_p50_s": float(np.percentile(latencies, 50)), "latency_p95_s": float(np.percentile(latencies, 95)),
        "peak_rss_mb": peak_mb, "size_on_disk_mb": _disk_mb(getattr(clf.method, "path", None)),
    }


def _disk_mb(path) -> float | None:
    """Size of a saved model directory (adapter, head, tokenizer, metadata); None for methods kept in memory."""
    if not path or not Path(path).is_dir():
        return None
    return sum(f.stat().st_size for f in Path(path).rglob("*") if f.is_file()) / 2**20


def _machine() -> str:
    import os

    import torch
    import transformers

    return (f"{platform.processor() or platform.machine()}, {os.cpu_count()} cores, Python {platform.python_version()}, "
            f"torch {torch.__version__}, transformers {transformers.__version__}")


def compare(rows: Sequence[dict], labels, *, methods: Sequence[str] = ("zero-shot", "few-shot", "emb-lr", "tfidf-lr"),
            split: Sequence[int] = (4000, 600, 3000), seed: int = 0, model: str = "local",
            out: str | Path = "reports/compare", data_name: str = "", chunk: int = 50, **options) -> list[dict]:
    """Train/dev/test split rows with the seed, run each method, write report.json, report.md, report.png.

    `options`: prompt (artifact for "optimized"), cache, classifier_options, finetune_options (LoRA),
    setfit_options (SetFitConfig's).
    """
    from .data import split as split_rows

    unknown = [m for m in methods if m not in METHODS]
    if unknown:
        raise ValueError(f"unknown method(s) {unknown}: choose from {list(METHODS)}")
    labels = LabelSet.of(labels)
    train, dev, test = split_rows(list(rows), split, seed=seed)
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    ctx = Context(labels, train, dev, model, out, seed, **options)
    factories = _factories()
    results = []
    for name in methods:
        results.append(_run_method(name, factories[name], ctx, test, chunk))
        _write(out, results, dict(data=data_name, split=list(split), seed=seed, model=model))
    return results


def _write(out: Path, results: list[dict], setup: dict) -> None:
    (out / "report.json").write_text(json.dumps(results, indent=2))
    (out / "report.md").write_text(markdown(results, setup))
    plot(results, out / "report.png")


def _fmt(value, spec: str) -> str:
    return "—" if value is None else format(value, spec)


def markdown(results: list[dict], setup: dict) -> str:
    split = setup["split"]
    lines = [
        "# promptclf comparison", "",
        f"Data: {setup['data']}. Split: {split[0]} train / {split[1]} dev / {split[2]} test rows after a "
        f"seed-{setup['seed']} shuffle (train rows 0–{split[0] - 1}, test the last {split[2]}). "
        f"LLM model: `{setup['model']}`. Machine: {_machine()}.", "",
        "| method | model | accuracy | macro-F1 | calls | prompt tok/item | compl. tok/item | $ / 1k items "
        "| compute s / 1k items | train s | items/s | p50 s | p95 s | peak MB | disk MB |",
        "|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    for r in results:
        lines.append(
            f"| {r['method']} | {r['model']} | {r['accuracy']:.3f} | {r['macro_f1']:.3f} | {r['calls']} | "
            f"{r['prompt_tokens_per_item']:.0f} | {r['completion_tokens_per_item']:.0f} | "
            f"{_fmt(r['cost_per_1k_items'], '.4f')} | {r['compute_s_per_1k_items']:.1f} | {r['train_s']:.1f} | "
            f"{r['items_per_s']:.1f} | {r['latency_p50_s']:.3f} | {r['latency_p95_s']:.3f} | {r['peak_rss_mb']:.0f} | "
            f"{_fmt(r['size_on_disk_mb'], '.1f')} |")
    labels = list(results[0]["per_class_f1"]) if results else []
    lines += ["", "Per-class F1:", "", "| method | " + " | ".join(labels) + " |", "|---" * (len(labels) + 1) + "|"]
    for r in results:
        lines.append(f"| {r['method']} | " + " | ".join(f"{r['per_class_f1'][l]:.3f}" for l in labels) + " |")
    lines += ["", "Local methods cost no dollars: their price is the compute time shown. Peak MB is the "
              "process's resident memory while the method trained and ran (it never goes down)."]
    return "\n".join(lines) + "\n"


def plot(results: list[dict], path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, (left, right) = plt.subplots(1, 2, figsize=(11, 4.5))
    for r in results:
        cost = r["cost_per_1k_items"] or 0.0
        left.scatter(cost, r["accuracy"], s=60)
        left.annotate(r["method"], (cost, r["accuracy"]), textcoords="offset points", xytext=(5, 5))
        right.scatter(r["latency_p50_s"], r["accuracy"], s=60)
        right.annotate(r["method"], (r["latency_p50_s"], r["accuracy"]), textcoords="offset points", xytext=(5, 5))
    left.set(xscale="symlog", xlabel="$ per 1,000 items (local methods: 0)", ylabel="accuracy",
             title="accuracy against cost")
    right.set(xscale="log", xlabel="p50 latency per request (s)", ylabel="accuracy", title="accuracy against latency")
    for ax in (left, right):
        ax.grid(alpha=0.3)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def cmd_compare(args) -> int:
    from .data import read_table, text_of

    frame = read_table(args.data)
    if args.label_column not in frame.columns:
        raise KeyError(f"column {args.label_column!r} not in {args.data}; it has {list(frame.columns)}")
    texts = [t.replace("\\", " ") for t in text_of(frame, args.text_column)]
    gold = frame[args.label_column].astype(str).tolist()
    label_map = dict(pair.split("=", 1) for pair in args.label_names.split(",")) if args.label_names else {}
    rows = [{"text": t, "label": label_map.get(g, g)} for t, g in zip(texts, gold)]
    labels = args.labels or sorted({r["label"] for r in rows})
    sizes = [int(x) for x in args.split.split("/")]
    results = compare(rows, labels, methods=args.methods.split(","), split=sizes, seed=args.seed, model=args.model,
                      out=args.out, data_name=f"{args.data} ({args.text_column})", prompt=args.prompt,
                      cache=not args.no_cache)
    print(markdown(results, dict(data=args.data, split=sizes, seed=args.seed, model=args.model)))
    print(f"wrote {args.out}/report.md, report.json, report.png")
    return 0


def register_cli(sub) -> None:
    p = sub.add_parser("compare", help="accuracy / cost / latency of every method on one seeded split")
    p.add_argument("--data", required=True)
    p.add_argument("--text-column", default="text", help="a column, or several joined: title,description")
    p.add_argument("--label-column", default="label")
    p.add_argument("--label-names", help="map raw labels to names, e.g. 1=World,2=Sports,3=Business,4=Sci/Tech")
    p.add_argument("--labels", help="comma-separated label set (default: the labels in the data)")
    p.add_argument("--split", default="4000/600/3000", help="train/dev/test sizes")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--methods", default="zero-shot,few-shot,emb-lr,tfidf-lr", help=",".join(METHODS))
    p.add_argument("--model", default="local")
    p.add_argument("--prompt", help="optimised prompt artifact for the 'optimized' method")
    p.add_argument("--no-cache", action="store_true", help="measure real calls even where answers are cached")
    p.add_argument("--out", default="reports/compare")
    p.set_defaults(func=cmd_compare)
