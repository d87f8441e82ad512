"""One accuracy / cost / latency table for every labelling method on the same seeded split."""

from __future__ import annotations

import json
import platform
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np

from promptclf.classifier import Classifier
from promptclf.core.errors import ColumnError, ConfigError
from promptclf.core.labels import LabelSet
from promptclf.core.metrics import classification_metrics

METHODS = (
    "offline",
    "offline-zero-shot",
    "embed",
    "setfit",
    "zero-shot",
    "few-shot",
    "optimized",
    "lora-4bit",
    "lora",
    "emb-lr",
    "tfidf-lr",
    "cascade",
)
# The cascade row: which method answers first, which API method takes the rest, and the goal its threshold
# is chosen for on the dev rows (promptclf.cascade.Goal).
CASCADE_DEFAULTS = {"from": "emb-lr", "api": "zero-shot", "goal": "drop:0.01"}
CASCADE_LOCAL = ("offline", "offline-zero-shot", "embed", "setfit", "lora-4bit", "lora", "emb-lr", "tfidf-lr")
CASCADE_API = ("zero-shot", "few-shot", "optimized")
# The rows that label multi-label tasks (rows carry `labels`, a list); the others refuse one.
MULTI_LABEL_METHODS = (
    "offline",
    "offline-zero-shot",
    "embed",
    "zero-shot",
    "few-shot",
    "setfit",
    "lora-4bit",
    "lora",
    "emb-lr",
    "tfidf-lr",
)


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
    cascade: dict = field(default_factory=dict)
    unlabeled: list[str] = field(default_factory=list)  # the test texts: what classify() self-trains on
    multi_label: bool = False  # rows carry `labels` (a list); see MULTI_LABEL_METHODS


def _llm(ctx: Context, configured: bool = True, **extra) -> Classifier:
    """`configured`: with classifier_options, which configure the compared model (not a fixed baseline's)."""
    options = {"model": ctx.model, **(ctx.classifier_options if configured else {}), **_multi(ctx), **extra}
    return Classifier(ctx.labels, cache=ctx.cache, progress=False, seed=ctx.seed, **options)


def _multi(ctx: Context) -> dict:
    return {"multi_label": True} if ctx.multi_label else {}


def _examples(ctx: Context) -> list[dict]:
    """The train rows as few-shot examples; a multi-label row is shown once per label it has."""
    if not ctx.multi_label:
        return ctx.train
    return [{"text": r["text"], "label": label} for r in ctx.train for label in r["labels"]]


def _gold(ctx: Context, rows: list[dict]) -> list:
    return [r["labels"] for r in rows] if ctx.multi_label else [r["label"] for r in rows]


def _api_options(ctx: Context, name: str) -> dict:
    """The Classifier options of an API method row: zero-shot, few-shot (the train rows) or optimized."""
    if name == "optimized" and not ctx.prompt:
        raise ConfigError("method 'optimized' needs an optimised prompt artifact: pass prompt= (promptclf optimize)")
    return {"zero-shot": {}, "few-shot": {"examples": _examples(ctx)}, "optimized": {"prompt": ctx.prompt}}[name]


def _optimized(ctx: Context) -> Classifier:
    if not ctx.prompt:
        raise ConfigError("method 'optimized' needs an optimised prompt artifact: pass prompt= (promptclf optimize)")
    return _llm(ctx, prompt=ctx.prompt)


def _lora(quantize: str):
    def build(ctx: Context) -> Classifier:
        from promptclf.methods.finetune import finetune

        options = {"seed": ctx.seed, **ctx.finetune_options, "quantize": quantize}
        method = finetune(
            ctx.train,
            ctx.labels,
            out=ctx.out / f"lora-{quantize}",
            dev_rows=ctx.dev,
            progress=False,
            **_multi(ctx),
            **options,
        )
        return Classifier(ctx.labels, method=method, cache=False, progress=False, **_multi(ctx))

    return build


def _setfit(ctx: Context) -> Classifier:
    from promptclf.methods.finetune import finetune

    multi = {"multi_label": True, "dev_rows": ctx.dev} if ctx.multi_label else {}
    method = finetune(
        ctx.train,
        ctx.labels,
        out=ctx.out / "setfit",
        method="setfit",
        progress=False,
        **multi,
        **{"seed": ctx.seed, **ctx.setfit_options},
    )
    return Classifier(ctx.labels, method=method, cache=False, progress=False, **_multi(ctx))


def _offline(with_examples: bool):
    def build(ctx: Context) -> Classifier:
        from promptclf.methods.offline import OfflineClassifier, OfflineConfig

        if ctx.multi_label:  # trained on the train rows, a probability per label (methods/offline_multilabel.py)
            return Classifier(
                ctx.labels,
                "offline",
                examples=ctx.train if with_examples else None,
                multi_label=True,
                unlabeled=ctx.unlabeled,
                seed=ctx.seed,
                cache=False,
                progress=False,
            )
        method = OfflineClassifier(
            ctx.labels, ctx.train if with_examples else (), OfflineConfig(seed=ctx.seed), unlabeled=ctx.unlabeled
        ).fit()
        return Classifier(ctx.labels, method=method, cache=False, progress=False)

    return build


def _sklearn(cls):
    def build(ctx: Context) -> Classifier:
        method = cls(ctx.labels, seed=ctx.seed).fit([r["text"] for r in ctx.train], _gold(ctx, ctx.train))
        if ctx.multi_label:  # one-vs-rest probabilities; the threshold is chosen on the dev rows, not the train rows
            from promptclf.core.multilabel import Thresholded

            method = Thresholded(method, ctx.dev)
        return Classifier(ctx.labels, method=method, cache=False, progress=False, **_multi(ctx))

    return build


def _factories() -> dict[str, Callable[[Context], Classifier]]:
    from promptclf.methods.baselines import EmbeddingLR, TfidfLR

    return {
        "offline": _offline(True),
        "offline-zero-shot": _offline(False),
        "embed": lambda ctx: _llm(
            ctx,
            configured=False,
            model="embed",  # multi-label: train rows pick the threshold
            **({"examples": ctx.train} if ctx.multi_label else {}),
        ),
        "setfit": _setfit,
        "zero-shot": lambda ctx: _llm(ctx),
        "few-shot": lambda ctx: _llm(ctx, examples=_examples(ctx)),
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
    with PeakMemory() as memory:
        started = time.perf_counter()
        clf = build(ctx)
        train_s = time.perf_counter() - started
        labelled = _label(clf, test, chunk)
    return _row(name, clf, _gold(ctx, test), *labelled, train_s, memory.peak_mb)


def _label(clf: Classifier, test: list[dict], chunk: int) -> tuple[list, list, list, float]:
    """The test rows labelled in chunks: predicted labels, per-item latency, each chunk's report, seconds."""
    texts = [r["text"] for r in test]
    predicted, latencies, usage = [], [], []
    started = time.perf_counter()
    for start in range(0, len(texts), chunk):
        batch_started = time.perf_counter()
        predicted += clf.classify(texts[start : start + chunk])
        latencies += [time.perf_counter() - batch_started] * len(texts[start : start + chunk])
        usage.append(clf.report.as_dict())
    return predicted, latencies, usage, time.perf_counter() - started


def _cascade_options(ctx: Context) -> tuple[dict, object]:
    """The cascade row's settings and its Goal, checked before any row runs."""
    from promptclf.cascade import Goal

    options = {**CASCADE_DEFAULTS, **ctx.cascade}
    if options["from"] not in CASCADE_LOCAL or options["api"] not in CASCADE_API:
        raise ConfigError(
            f"cascade from {options['from']!r} to {options['api']!r}: the local stage is one of "
            f"{list(CASCADE_LOCAL)}, the API stage one of {list(CASCADE_API)}"
        )
    if not ctx.dev:
        raise ConfigError(
            "the cascade row chooses its threshold on the dev rows: give a split with some "
            "(train/dev/test, e.g. 4000/600/3000)"
        )
    return options, Goal.parse(options["goal"])


def _run_cascade(ctx: Context, test: list[dict], chunk: int) -> dict:
    """The cascade row: its threshold chosen on the dev rows for the goal, then the cascade run on the test
    rows (its calls are real). Both stages are also run on every dev and test row, for the frontier: the
    accuracy and cost at every threshold."""
    from promptclf.cascade import choose_threshold, frontier, measure

    options, goal = _cascade_options(ctx)
    factories = _factories()
    with PeakMemory() as memory:
        started = time.perf_counter()  # "train s": the local stage's training and both stages on the dev rows
        local = factories[options["from"]](ctx).method
        api_options = _api_options(ctx, options["api"])
        api = _llm(ctx, **api_options)
        dev = measure(local, api.method, ctx.dev, cache=api.cache, api_usage=api.report)
        dev_points = frontier(dev.confidence, dev.local_correct, dev.api_correct, dev.api_cost_per_item)
        chosen = choose_threshold(dev_points, goal)
        train_s = time.perf_counter() - started
        clf = _llm(ctx, **api_options, cascade_from=local, cascade_below=chosen.threshold)
        labelled = _label(clf, test, chunk)
    row = _row("cascade", clf, [r["label"] for r in test], *labelled, train_s, memory.peak_mb)
    record = measure(local, api.method, test, cache=api.cache, api_usage=api.report)
    test_points = frontier(record.confidence, record.local_correct, record.api_correct, record.api_cost_per_item)
    at_chosen = frontier(
        record.confidence,
        record.local_correct,
        record.api_correct,
        record.api_cost_per_item,
        thresholds=[chosen.threshold],
    )[0]
    escalated = sum(u["escalated"] for u in labelled[2])
    row.update(
        model=f"{options['from']} → {options['api']} ({api.spec.id})",
        stages=f"{options['from']} → {options['api']}",
        threshold=chosen.threshold,
        goal=str(goal),
        api_share=escalated / len(test),
        dev_point=asdict(chosen),
        test_point=asdict(at_chosen),
        frontier={"dev": [asdict(p) for p in dev_points], "test": [asdict(p) for p in test_points]},
    )
    return row


def _row(name, clf, gold, predicted, latencies, usage, infer_s, train_s, peak_mb) -> dict:
    n = len(gold)
    total = {
        k: sum(u[k] or 0 for u in usage)
        for k in ("requests", "prompt_tokens", "completion_tokens", "compute_s", "cache_hits")
    }
    costs = [u["cost_usd"] for u in usage]
    if clf.multi_label:
        from promptclf.core.metrics import multilabel_metrics

        metrics = multilabel_metrics(gold, predicted, clf.labels.names)
    else:
        metrics = classification_metrics(gold, predicted, clf.labels.names)
    multi = {k: metrics[k] for k in ("micro_f1", "subset_accuracy", "hamming_loss") if k in metrics}
    return {
        "method": name,
        "model": clf.spec.id if clf.spec.provider != "custom" else clf.spec.name,
        "n_test": n,
        "accuracy": metrics["accuracy"],
        "macro_f1": metrics["macro_f1"],
        "per_class_f1": metrics["per_class_f1"],
        "calls": total["requests"],
        "cache_hits": total["cache_hits"],
        "prompt_tokens_per_item": total["prompt_tokens"] / n,
        "completion_tokens_per_item": total["completion_tokens"] / n,
        "cost_per_1k_items": None if any(c is None for c in costs) else 1000 * sum(costs) / n,
        "compute_s_per_1k_items": 1000 * infer_s / n,
        "train_s": train_s,
        "items_per_s": n / infer_s,
        "latency_p50_s": float(np.percentile(latencies, 50)),
        "latency_p95_s": float(np.percentile(latencies, 95)),
        "peak_rss_mb": peak_mb,
        "size_on_disk_mb": _disk_mb(getattr(clf.method, "path", None)),
        **multi,
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

    return (
        f"{platform.processor() or platform.machine()}, {os.cpu_count()} cores, Python {platform.python_version()}, "
        f"torch {torch.__version__}, transformers {transformers.__version__}"
    )


def compare(
    rows: Sequence[dict],
    labels,
    *,
    methods: Sequence[str] = ("zero-shot", "few-shot", "emb-lr", "tfidf-lr"),
    split: Sequence[int] = (4000, 600, 3000),
    seed: int = 0,
    model: str = "local",
    out: str | Path = "reports/compare",
    data_name: str = "",
    chunk: int = 50,
    multi_label: bool = False,
    **options,
) -> list[dict]:
    """Train/dev/test split rows with the seed, run each method, write report.json, report.md, report.png.

    `options`: prompt (artifact for "optimized"), cache, classifier_options, finetune_options (LoRA),
    setfit_options (SetFitConfig's), cascade ({"from": local method, "api": API method, "goal": "drop:0.01"}).
    `multi_label`: rows carry `labels` (a list, or names joined by `;`); the methods in MULTI_LABEL_METHODS
    run, scored by micro/macro-F1, subset accuracy and Hamming loss.
    """
    from promptclf.core.data import split as split_rows

    unknown = [m for m in methods if m not in METHODS]
    if unknown:
        raise ConfigError(f"unknown method(s) {unknown}: choose from {list(METHODS)}")
    labels = LabelSet.of(labels)
    if multi_label:
        rows = _label_set_rows(rows, labels, methods)
    train, dev, test = split_rows(list(rows), split, seed=seed)
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    ctx = Context(
        labels, train, dev, model, out, seed, **options, unlabeled=[r["text"] for r in test], multi_label=multi_label
    )
    factories = _factories()
    if "cascade" in methods:
        _cascade_options(ctx)
    results = []
    for name in methods:
        results.append(
            _run_cascade(ctx, test, chunk)
            if name == "cascade"
            else _run_method(name, factories[name], ctx, test, chunk)
        )
        _write(out, results, dict(data=data_name, split=list(split), seed=seed, model=model))
    return results


def _label_set_rows(rows, labels: LabelSet, methods) -> list[dict]:
    from promptclf.core.errors import ConfigError
    from promptclf.core.multilabel import check_label_sets, unsupported

    refused = [m for m in methods if m not in MULTI_LABEL_METHODS]
    if "cascade" in refused:
        raise ConfigError("the cascade row routes single labels by confidence; it does not take multi-label tasks")
    if refused:
        raise unsupported(f"compare's {', '.join(refused)}")
    rows = list(rows)
    sets = check_label_sets([r["labels"] if "labels" in r else r["label"] for r in rows], labels, "labels")
    return [{"text": r["text"], "labels": found} for r, found in zip(rows, sets)]


def _write(out: Path, results: list[dict], setup: dict) -> None:
    (out / "report.json").write_text(json.dumps(results, indent=2))
    (out / "report.md").write_text(markdown(results, setup))
    plot(results, out / "report.png")
    cascade = next((r for r in results if "frontier" in r), None)
    if cascade is not None:
        write_frontier_csv(cascade["frontier"], out / "frontier.csv")
        plot_frontier(cascade, out / "frontier.png", others=[r for r in results if r is not cascade])


def _fmt(value, spec: str) -> str:
    return "—" if value is None else format(value, spec)


def markdown(results: list[dict], setup: dict) -> str:
    split = setup["split"]
    lines = [
        "# promptclf comparison",
        "",
        f"Data: {setup['data']}. Split: {split[0]} train / {split[1]} dev / {split[2]} test rows after a "
        f"seed-{setup['seed']} shuffle (train rows 0–{split[0] - 1}, test the last {split[2]}). "
        f"LLM model: `{setup['model']}`. Machine: {_machine()}.",
        "",
        "| method | model | accuracy | macro-F1 | calls | prompt tok/item | compl. tok/item | $ / 1k items "
        "| compute s / 1k items | train s | items/s | p50 s | p95 s | peak MB | disk MB |",
        "|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    if any("micro_f1" in r for r in results):  # multi-label: its scores in place of accuracy
        lines[4:6] = [
            "| method | model | micro-F1 | macro-F1 | subset acc. | Hamming loss | calls | prompt tok/item "
            "| compl. tok/item | $ / 1k items | compute s / 1k items | train s | items/s | p50 s | p95 s "
            "| peak MB | disk MB |",
            "|---" * 17 + "|",
        ]
    for r in results:
        scores = (
            f"{r['micro_f1']:.3f} | {r['macro_f1']:.3f} | {r['subset_accuracy']:.3f} | {r['hamming_loss']:.3f}"
            if "micro_f1" in r
            else f"{r['accuracy']:.3f} | {r['macro_f1']:.3f}"
        )
        lines.append(
            f"| {r['method']} | {r['model']} | {scores} | {r['calls']} | "
            f"{r['prompt_tokens_per_item']:.0f} | {r['completion_tokens_per_item']:.0f} | "
            f"{_fmt(r['cost_per_1k_items'], '.4f')} | {r['compute_s_per_1k_items']:.1f} | {r['train_s']:.1f} | "
            f"{r['items_per_s']:.1f} | {r['latency_p50_s']:.3f} | {r['latency_p95_s']:.3f} | {r['peak_rss_mb']:.0f} | "
            f"{_fmt(r['size_on_disk_mb'], '.1f')} |"
        )
    labels = list(results[0]["per_class_f1"]) if results else []
    lines += ["", "Per-class F1:", "", "| method | " + " | ".join(labels) + " |", "|---" * (len(labels) + 1) + "|"]
    for r in results:
        lines.append(f"| {r['method']} | " + " | ".join(f"{r['per_class_f1'][lab]:.3f}" for lab in labels) + " |")
    lines += [
        "",
        "Local methods cost no dollars: their price is the compute time shown. Peak MB is the "
        "process's resident memory while the method trained and ran (it never goes down).",
    ]
    for r in results:
        if "frontier" in r:
            lines += [""] + frontier_markdown(r)
    return "\n".join(lines) + "\n"


def frontier_markdown(row: dict) -> list[str]:
    """The cascade's accuracy / cost frontier on the test rows at a few thresholds, the chosen one marked."""
    from promptclf.cascade import FrontierPoint, thin

    points = [FrontierPoint(**p) for p in row["frontier"]["test"]]
    chosen = FrontierPoint(**row["test_point"])
    shown = sorted(set(thin(points)) | {chosen}, key=lambda p: (p.threshold, p.api_share))
    dev = row["dev_point"]
    lines = [
        f"## Cascade: {row['model']}",
        "",
        f"Threshold {row['threshold']:.4f}, chosen on the dev rows for goal `{row['goal']}` (dev: accuracy "
        f"{dev['accuracy']:.3f}, {dev['api_share']:.1%} of items to the API). On the test rows, both stages "
        "answered every item; the cascade at each threshold:",
        "",
        "| threshold | items to the API | API calls saved vs API only | accuracy | $ / 1k items |",
        "|---|---|---|---|---|",
    ]
    for p in shown:
        mark = " (chosen)" if p == chosen else ""
        threshold = "above all" if p.threshold > 1 else f"{p.threshold:.4f}"
        lines.append(
            f"| {threshold}{mark} | {p.api_items} ({p.api_share:.1%}) | {1 - p.api_share:.1%} | "
            f"{p.accuracy:.3f} | {_fmt(p.cost_per_1k_items, '.4f')} |"
        )
    lines += [
        "",
        "The first row is the local method alone (no item below its threshold), the last sends every "
        "item to the API. Calls saved "
        "counts items (the API is asked in batches, so requests fall in proportion). The full frontier is in "
        "frontier.csv, drawn in frontier.png.",
    ]
    return lines


def write_frontier_csv(frontier: dict, path: Path) -> None:
    import csv

    with open(path, "w", newline="") as f:
        writer = csv.writer(f)
        writer.writerow(["split", "threshold", "accuracy", "api_share", "api_items", "cost_per_1k_items"])
        for split_name, points in frontier.items():
            for p in points:
                writer.writerow(
                    [
                        split_name,
                        p["threshold"],
                        p["accuracy"],
                        p["api_share"],
                        p["api_items"],
                        "" if p["cost_per_1k_items"] is None else p["cost_per_1k_items"],
                    ]
                )


def plot_frontier(row: dict, path: Path, others: Sequence[dict] = ()) -> None:
    """Accuracy against $ per 1,000 items (left; the API share where the API has no price) and against the
    share of items sent to the API (right), across thresholds, for the dev and test rows."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    priced = all(p["cost_per_1k_items"] is not None for points in row["frontier"].values() for p in points)
    fig, (left, right) = plt.subplots(1, 2, figsize=(11, 4.5))
    for split_name, points in row["frontier"].items():
        accuracy = [p["accuracy"] for p in points]
        share = [100 * p["api_share"] for p in points]
        left.plot(
            [p["cost_per_1k_items"] for p in points] if priced else share,
            accuracy,
            label=split_name,
            drawstyle="steps-post",
            alpha=0.8,
        )
        right.plot(share, accuracy, label=split_name, drawstyle="steps-post", alpha=0.8)
    chosen = row["test_point"]
    left.scatter(
        chosen["cost_per_1k_items"] if priced else 100 * chosen["api_share"],
        chosen["accuracy"],
        color="black",
        zorder=3,
        label=f"chosen on dev, t={chosen['threshold']:.3f} (test)",
    )
    right.scatter(100 * chosen["api_share"], chosen["accuracy"], color="black", zorder=3)
    for other in others if priced else ():
        cost = other["cost_per_1k_items"]
        if cost is not None:
            left.scatter(cost, other["accuracy"], marker="x")
            left.annotate(other["method"], (cost, other["accuracy"]), textcoords="offset points", xytext=(5, -10))
    left.set(
        xlabel="$ per 1,000 items" if priced else "% of items sent to the API (no price known)",
        ylabel="accuracy",
        title=f"cascade {row['stages']}: accuracy against cost",
    )
    right.set(xlabel="% of items sent to the API", ylabel="accuracy", title="accuracy against API share")
    for ax in (left, right):
        ax.grid(alpha=0.3)
        ax.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


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
    left.set(
        xscale="symlog", xlabel="$ per 1,000 items (local methods: 0)", ylabel="accuracy", title="accuracy against cost"
    )
    right.set(xscale="log", xlabel="p50 latency per request (s)", ylabel="accuracy", title="accuracy against latency")
    for ax in (left, right):
        ax.grid(alpha=0.3)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def cmd_compare(args) -> int:
    from promptclf.core.data import read_table, text_of

    frame = read_table(args.data)
    if args.label_column not in frame.columns:
        raise ColumnError(f"column {args.label_column!r} not in {args.data}; it has {list(frame.columns)}")
    texts = [t.replace("\\", " ") for t in text_of(frame, args.text_column)]
    gold = frame[args.label_column].astype(str).tolist()
    label_map = dict(pair.split("=", 1) for pair in args.label_names.split(",")) if args.label_names else {}
    if args.multi_label:  # gold label sets joined by ';'
        from promptclf.core.multilabel import split_labels

        rows = [{"text": t, "labels": [label_map.get(n, n) for n in split_labels(g)]} for t, g in zip(texts, gold)]
    else:
        rows = [{"text": t, "label": label_map.get(g, g)} for t, g in zip(texts, gold)]
    labels = args.labels or sorted({n for r in rows for n in r.get("labels", [r.get("label")])})
    sizes = [int(x) for x in args.split.split("/")]
    results = compare(
        rows,
        labels,
        methods=args.methods.split(","),
        split=sizes,
        seed=args.seed,
        model=args.model,
        out=args.out,
        data_name=f"{args.data} ({args.text_column})",
        prompt=args.prompt,
        cache=not args.no_cache,
        **({"multi_label": True} if args.multi_label else {}),
        cascade={"from": args.cascade_from, "api": args.cascade_api, "goal": args.cascade_goal},
    )
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
    p.add_argument(
        "--multi-label",
        action="store_true",
        help="gold label sets joined by ';' in the label column; methods " + ",".join(MULTI_LABEL_METHODS),
    )
    p.add_argument(
        "--cascade-from",
        default=CASCADE_DEFAULTS["from"],
        help="the cascade's local method: " + ",".join(CASCADE_LOCAL),
    )
    p.add_argument(
        "--cascade-api", default=CASCADE_DEFAULTS["api"], help="the cascade's API method: " + ",".join(CASCADE_API)
    )
    p.add_argument(
        "--cascade-goal",
        default=CASCADE_DEFAULTS["goal"],
        help="what the threshold is chosen for on "
        "the dev rows: drop:0.01 (at most 1 point below the API alone), accuracy:0.9, share:0.4 "
        "(API share), cost:0.05 ($ per 1,000 items)",
    )
    p.add_argument("--out", default="reports/compare")
    p.set_defaults(func=cmd_compare)
