"""The `promptclf` command: classify, evaluate and quickstart on files (CSV, JSONL, Parquet)."""

from __future__ import annotations

import argparse
import json
import logging
import sys
from pathlib import Path

from .backends import ConfigError


def _add_model_options(p: argparse.ArgumentParser) -> None:
    p.add_argument("--model", default="offline", help="offline (default), embed, local, together:<m>, openai:<m>, "
                   "openai-compatible:<m>@<url>, completions:<m>@<url>, finetuned:<dir>")
    p.add_argument("--labels", help="comma-separated label names (default for evaluate: the gold labels seen)")
    p.add_argument("--examples", help="few-shot examples file with text and label columns")
    p.add_argument("--examples-text-column", default="text")
    p.add_argument("--examples-label-column", default="label")
    p.add_argument("--example-selection", default="auto", choices=["auto", "all", "per-class", "similar"])
    p.add_argument("-k", type=int, help="examples per class (per-class) or per item (similar); "
                   "default 4, or 1 nearest for local models")
    p.add_argument("--prompt", help="a Jinja template file, or an optimised prompt artifact (.json)")
    p.add_argument("--instructions", default="", help="extra instructions for the prompt")
    p.add_argument("--batch-size", type=int, default=10, help="items per request (chat models)")
    p.add_argument("--structured", default="auto",
                   choices=["auto", "json_schema", "function_calling", "json_mode", "parser"],
                   help="how chat models return answers (auto: json_schema for OpenAI, parser for other servers)")
    p.add_argument("--concurrency", type=int, default=4, help="requests in flight")
    p.add_argument("--max-attempts", type=int, default=6)
    p.add_argument("--timeout", type=float, default=60.0, help="seconds per request")
    p.add_argument("--cache-dir", help="answer cache directory (default: $PROMPTCLF_HOME/answers)")
    p.add_argument("--no-cache", action="store_true")
    p.add_argument("--fallback", help="a fine-tuned model directory that labels what the LLM could not")
    p.add_argument("--fallback-below", type=float, help="also route answers below this confidence to the fallback")
    p.add_argument("--cascade-from", help="a local model (finetuned:<dir>, embed, offline, local) that answers "
                   "first; only items it is less sure of than --cascade-below go to --model")
    p.add_argument("--cascade-below", type=float, help="the cascade's confidence threshold (0-1)")
    p.add_argument("--skip-empty", action="store_true", help="leave empty texts unlabelled instead of failing")
    p.add_argument("--no-progress", action="store_true")
    local = p.add_argument_group("local and completions models (label scoring)")
    local.add_argument("--calibrate", default="auto", choices=["auto", "none", "content-free"])
    local.add_argument("--demo-words", type=int, default=12, help="cut each demonstration to this many words")
    local.add_argument("--item-words", type=int, help="cut each item to this many words (faster, for long texts)")
    local.add_argument("--quantize", default="auto", choices=["auto", "int8", "none"],
                       help="local model weights (auto: int8 with nearest demonstrations, else float32)")
    local.add_argument("--threads", type=int, help="torch CPU threads (default: torch's choice)")


def _classifier(args, labels):
    from .classifier import Classifier
    from .data import read_table, text_of

    examples = None
    if args.examples:
        frame = read_table(args.examples)
        texts = text_of(frame, args.examples_text_column)
        examples = [{"text": t, "label": l} for t, l in zip(texts, frame[args.examples_label_column].astype(str))]
    cache = False if args.no_cache else (args.cache_dir or True)
    return Classifier(labels, args.model, examples=examples, example_selection=args.example_selection, k=args.k,
                      prompt=args.prompt, instructions=args.instructions, batch_size=args.batch_size,
                      structured=args.structured,
                      concurrency=args.concurrency, max_attempts=args.max_attempts, timeout=args.timeout,
                      cache=cache, fallback=args.fallback, fallback_below=args.fallback_below,
                      skip_empty=args.skip_empty, progress=False if args.no_progress else None,
                      calibrate=args.calibrate, demo_words=args.demo_words, item_words=args.item_words,
                      quantize=None if args.quantize == "none" else args.quantize, threads=args.threads,
                      cascade_from=args.cascade_from, cascade_below=args.cascade_below)


def cmd_classify(args) -> int:
    from .data import read_table, text_of, write_table

    if not args.labels:
        raise ConfigError("--labels is required: a comma-separated list such as World,Sports,Business,Sci/Tech")
    frame = read_table(args.input)
    texts = text_of(frame, args.text_column)
    clf = _classifier(args, args.labels)
    predictions = clf.predict(texts)
    frame = frame.copy()
    frame["predicted_label"] = [p.label if p else None for p in predictions]
    frame["confidence"] = [p.confidence if p else None for p in predictions]
    frame["source"] = [p.source if p else "skipped" for p in predictions]
    path = write_table(frame, args.output)
    print(f"wrote {len(frame)} rows to {path}", file=sys.stderr)
    print(clf.report.summary(), file=sys.stderr)
    return 0


def cmd_evaluate(args) -> int:
    from .data import read_table, text_of

    frame = read_table(args.data)
    if args.label_column not in frame.columns:
        raise KeyError(f"column {args.label_column!r} not in {args.data}; it has {list(frame.columns)}")
    gold = frame[args.label_column].astype(str).tolist()
    labels = args.labels or _saved_labels(args.model) or sorted(set(gold))
    texts = text_of(frame, args.text_column)
    clf = _classifier(args, labels)
    metrics = clf.score(texts, gold)
    metrics.update(model=clf.spec.id, report=clf.report.as_dict())
    print(f"{clf.spec.id}: accuracy {metrics['accuracy']:.4f}  macro-F1 {metrics['macro_f1']:.4f}  (n={metrics['n']})")
    print(clf.report.summary(), file=sys.stderr)
    if args.json:
        Path(args.json).parent.mkdir(parents=True, exist_ok=True)
        Path(args.json).write_text(json.dumps(metrics, indent=2))
    return 0


def _saved_labels(model: str) -> list[str] | None:
    """A fine-tuned model knows its label set; evaluate uses it when --labels is not given."""
    if not model.startswith("finetuned:"):
        return None
    meta = Path(model.split(":", 1)[1]) / "promptclf.json"
    return [label["name"] for label in json.loads(meta.read_text())["labels"]] if meta.exists() else None


def cmd_quickstart(args) -> int:
    """Label a seeded slice of AG News with the embedded model (few-shot pool from another slice)."""
    import pandas as pd

    from .classifier import Classifier
    from .data import AG_NEWS_ALIASES, AG_NEWS_LABELS, load_ag_news, split, write_table
    from .metrics import classification_metrics

    rows = load_ag_news(args.data)
    from .examples import sample_per_class
    from .labels import LabelSet

    labels = LabelSet.of(list(AG_NEWS_LABELS.values()), aliases=AG_NEWS_ALIASES)
    pool, test = split(rows, [args.pool, args.n], seed=args.seed)
    examples = sample_per_class(pool, labels, args.per_class, args.seed) if args.per_class else pool
    print(f"AG News {args.data or 'test.csv'}: {args.n} items to label, {len(examples)} labelled examples "
          f"(seed {args.seed}), model {args.model}", file=sys.stderr)
    clf = Classifier(labels, args.model, examples=examples, progress=False if args.no_progress else None)
    predictions = clf.predict([r["text"] for r in test])
    metrics = classification_metrics([r["label"] for r in test], [p.label for p in predictions], clf.labels.names)
    out = write_table(pd.DataFrame({"text": [r["text"] for r in test], "label": [r["label"] for r in test],
                                    "predicted_label": [p.label for p in predictions],
                                    "confidence": [p.confidence for p in predictions],
                                    "source": [p.source for p in predictions]}), args.output)
    print(f"accuracy {metrics['accuracy']:.3f}  macro-F1 {metrics['macro_f1']:.3f}  on {args.n} AG News items")
    print(f"run report: {clf.report.summary()}")
    print(f"predictions written to {out}")
    return 0


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="promptclf", description=__doc__)
    parser.add_argument("-v", "--verbose", action="store_true")
    sub = parser.add_subparsers(dest="command", required=True)

    p = sub.add_parser("classify", help="label a file's text column")
    p.add_argument("--input", required=True)
    p.add_argument("--output", required=True)
    p.add_argument("--text-column", default="text", help="a column, or several joined: title,description")
    _add_model_options(p)
    p.set_defaults(func=cmd_classify)

    p = sub.add_parser("evaluate", help="accuracy and macro-F1 of a model on a labelled file")
    p.add_argument("--data", required=True)
    p.add_argument("--text-column", default="text")
    p.add_argument("--label-column", default="label")
    p.add_argument("--json", help="also write the metrics as JSON here")
    _add_model_options(p)
    p.set_defaults(func=cmd_evaluate)

    p = sub.add_parser("quickstart", help="label a slice of AG News with the embedded model and score it")
    p.add_argument("--data", help="AG News test.csv (default: ../shared/data/ag_news/test.csv)")
    p.add_argument("--n", type=int, default=200)
    p.add_argument("--pool", type=int, default=4000, help="rows the examples are drawn from")
    p.add_argument("--per-class", type=int, default=8, help="labelled examples per class (0: the whole pool)")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--model", default="offline")
    p.add_argument("--output", default="reports/quickstart/predictions.csv")
    p.add_argument("--no-progress", action="store_true")
    p.set_defaults(func=cmd_quickstart)

    for register in _extensions():
        register(sub)
    return parser


def _extensions():
    """Sub-commands that live with their modules (finetune, optimize, compare), when present."""
    import importlib

    for name in ("finetune", "optimize", "compare"):
        try:
            module = importlib.import_module(f"promptclf.{name}")
        except ImportError:
            continue
        if hasattr(module, "register_cli"):
            yield module.register_cli


def main(argv=None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO if args.verbose else logging.WARNING, format="%(message)s")
    if not args.verbose:
        from transformers.utils import logging as hf_logging

        hf_logging.disable_progress_bar()  # weight-loading bars; our own progress bars stay
        hf_logging.set_verbosity_error()
    try:
        return args.func(args)
    except (ConfigError, ValueError, KeyError, FileNotFoundError) as exc:
        message = exc.args[0] if isinstance(exc, KeyError) and exc.args else exc
        print(f"promptclf: error: {message}", file=sys.stderr)
        return 2
    except RuntimeError as exc:  # LabellingError: names the items; what was answered is cached
        print(f"promptclf: error: {exc}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        print("promptclf: interrupted; answers so far are cached, rerun to resume", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
