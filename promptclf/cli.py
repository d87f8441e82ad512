"""The `promptclf` command: classify, evaluate and quickstart on files (CSV, JSONL, Parquet)."""

from __future__ import annotations

import argparse
import json
import logging
import os
import sys
import traceback
from pathlib import Path

from promptclf.core.errors import ColumnError, ConfigError


def _add_model_options(p: argparse.ArgumentParser) -> None:
    """The options classify and evaluate share, in groups (each one line of help, its default shown)."""
    task = p.add_argument_group("task")
    task.add_argument("--labels", help="comma-separated label names (evaluate: default the gold labels seen)")
    task.add_argument(
        "--task",
        help="a task file (.yaml, .yml or .json: labels with descriptions, aliases and "
        "examples, instructions, template), instead of --labels",
    )
    task.add_argument(
        "--multi-label",
        action="store_true",
        help="each item gets every label that applies (a task "
        "file says it with multi_label: true); written, and read as gold, joined by ';'",
    )
    task.add_argument(
        "--allow-empty", action="store_true", help="with --multi-label: an item may get no label (else its best one)"
    )
    task.add_argument("--instructions", default="", help="extra instructions for the prompt")
    task.add_argument("--prompt", help="a Jinja template file, or an optimised prompt artifact (.json)")
    task.add_argument(
        "--skip-empty", action="store_true", help="leave empty texts unlabelled instead of refusing the file"
    )

    model = p.add_argument_group("model")
    model.add_argument(
        "--model",
        help="offline, embed, local, together:<m>, openai:<m>, openai-compatible:<m>@<url>, "
        "completions:<m>@<url>, finetuned:<dir> (default: the model a --prompt artifact was optimised for, "
        "else offline)",
    )
    model.add_argument("--fallback", help="a fine-tuned model directory that labels what the model could not")
    model.add_argument(
        "--fallback-below", type=float, help="also route answers below this confidence (0-1) to the fallback"
    )
    model.add_argument(
        "--cascade-from",
        help="a local model (finetuned:<dir>, embed, offline, local) that answers "
        "first; only items it is less sure of than --cascade-below go to --model",
    )
    model.add_argument("--cascade-below", type=float, help="the cascade's confidence threshold (0-1)")
    model.add_argument(
        "--time-budget",
        type=float,
        help="offline: seconds of training on 2 CPU cores SetFit is cut to fit (default 100; estimated before training)",
    )
    model.add_argument(
        "--structured",
        default="auto",
        choices=["auto", "json_schema", "function_calling", "json_mode", "parser"],
        help="how chat models return answers (default auto: json_schema for OpenAI, then fallbacks)",
    )
    model.add_argument(
        "--no-logprobs",
        action="store_true",
        help="chat models: ask for no token logprobs (no "
        "confidence; llama-cpp-python's server answers far faster without them)",
    )

    examples = p.add_argument_group("examples")
    examples.add_argument("--examples", help="labelled examples file (CSV, JSONL, Parquet) with text and label columns")
    examples.add_argument("--examples-text-column", default="text", help="its text column (default: text)")
    examples.add_argument("--examples-label-column", default="label", help="its label column (default: label)")
    examples.add_argument(
        "--example-selection",
        default="auto",
        choices=["auto", "all", "per-class", "similar"],
        help="which examples a prompt shows (default: auto)",
    )
    examples.add_argument(
        "-k",
        type=int,
        help="examples per class (per-class) or per item (similar); default 4, or 1 nearest for local models",
    )

    trust = p.add_argument_group("trust: a validation sample, calibration, auto-accept")
    trust.add_argument(
        "--validation",
        help="labelled rows drawn from the data (CSV, JSONL, Parquet; text and label columns), never trained on: "
        "estimated accuracy with its interval, calibrated confidence, a reliability diagram beside the output",
    )
    trust.add_argument(
        "--target-accuracy",
        type=float,
        help="with --validation: auto-accept the labels above the lowest confidence that keeps the accepted "
        "labels' accuracy at least this (0-1), written in an `accepted` column",
    )
    trust.add_argument(
        "--risk", type=float, default=0.1, help="the chance the --target-accuracy guarantee fails (default 0.1)"
    )

    limits = p.add_argument_group("batching and limits")
    limits.add_argument("--batch-size", type=int, default=10, help="items per request, chat models (default 10)")
    limits.add_argument("--concurrency", type=int, default=4, help="requests in flight (default 4)")
    limits.add_argument(
        "--max-attempts", type=int, default=6, help="attempts per request on transient errors (default 6)"
    )
    limits.add_argument("--timeout", type=float, default=60.0, help="seconds per request (default 60)")
    limits.add_argument(
        "--window", type=int, help="rows held in memory at once (default: 2000, or 16 batches per request slot)"
    )
    limits.add_argument(
        "--stop-after-failures",
        type=int,
        default=20,
        help="stop asking after this many failed requests in a row, or most of the last 100 (default 20; 0: never)",
    )
    limits.add_argument(
        "--progress",
        action="store_true",
        help="show progress on stderr even when it is not a terminal (default: only on a terminal)",
    )
    limits.add_argument("--quiet", "--no-progress", dest="no_progress", action="store_true", help="no progress display")

    cache = p.add_argument_group("cache").add_mutually_exclusive_group()
    cache.add_argument(
        "--cache",
        help="answer cache: sqlite://<directory> (default: $PROMPTCLF_HOME/answers), "
        "redis://[:password@]host:port/db (shared by several machines), or none",
    )
    cache.add_argument("--cache-dir", help="answer cache directory (the same as --cache sqlite://<directory>)")
    cache.add_argument("--no-cache", action="store_true", help="no answer cache")

    local = p.add_argument_group("local and completions models (label scoring)")
    local.add_argument(
        "--calibrate",
        default="auto",
        choices=["auto", "none", "content-free"],
        help="calibrate label scores (default: auto)",
    )
    local.add_argument(
        "--demo-words", type=int, default=12, help="cut each demonstration to this many words (default 12)"
    )
    local.add_argument("--item-words", type=int, help="cut each item to this many words (faster, for long texts)")
    local.add_argument(
        "--quantize",
        default="auto",
        choices=["auto", "int8", "none"],
        help="local model weights (default auto: int8 with nearest demonstrations, else float32)",
    )
    local.add_argument("--threads", type=int, help="torch CPU threads (default: torch's choice)")


def _classifier(args, labels, texts=None):
    """The Classifier the flags describe; `texts`, the input, are what `embed` and `offline` self-train on."""
    from promptclf.classifier import Classifier

    return Classifier(labels, args.model, unlabeled=texts, **_classifier_options(args))


def _labels_or_task(args, required: bool = True):
    """--labels or --task (one of them; with required=False, possibly neither)."""
    labels, task = args.labels, getattr(args, "task", None)
    if labels and task:
        raise ConfigError("--labels and --task both given: the task file names the labels; give one of them")
    if required and not (labels or task):
        raise ConfigError(
            "--labels or --task is required: a comma-separated list such as "
            "World,Sports,Business,Sci/Tech, or a task file (.yaml/.json)"
        )
    return task or labels


def _classifier_options(args) -> dict:
    """Classifier's keyword arguments from the model options (the Ray engine sends them to every actor)."""
    from promptclf.core.data import read_table, text_of
    from promptclf.core.multilabel import cell_labels

    examples = None
    if args.examples:
        frame = read_table(args.examples)
        if args.examples_label_column not in frame.columns:
            raise ColumnError(
                f"examples file {args.examples!r} has no column {args.examples_label_column!r}: its "
                f"columns are {[str(c) for c in frame.columns]} (choose with --examples-label-column)"
            )
        texts = text_of(frame, args.examples_text_column)
        examples = [
            {"text": t, "label": cell_labels(cell)} for t, cell in zip(texts, frame[args.examples_label_column])
        ]
    cache = False if args.no_cache else (args.cache or args.cache_dir or True)
    return dict(
        examples=examples,
        example_selection=args.example_selection,
        k=args.k,
        prompt=args.prompt,
        instructions=args.instructions,
        batch_size=args.batch_size,
        structured=args.structured,
        logprobs=not getattr(args, "no_logprobs", False),
        concurrency=args.concurrency,
        max_attempts=args.max_attempts,
        timeout=args.timeout,
        cache=cache,
        fallback=args.fallback,
        fallback_below=args.fallback_below,
        skip_empty=args.skip_empty,
        progress=_progress(args),
        window=getattr(args, "window", None),
        breaker_after=getattr(args, "stop_after_failures", 20),
        calibrate=args.calibrate,
        demo_words=args.demo_words,
        item_words=args.item_words,
        quantize=None if args.quantize == "none" else args.quantize,
        threads=args.threads,
        cascade_from=getattr(args, "cascade_from", None),
        cascade_below=getattr(args, "cascade_below", None),
        **_trust_options(args),
        time_budget=getattr(args, "time_budget", None),
        **({"multi_label": True} if getattr(args, "multi_label", False) else {}),
        **({"allow_empty": True} if getattr(args, "allow_empty", False) else {}),
    )


def _trust_options(args) -> dict:
    """--validation, --target-accuracy, --risk, where given (the file is read and checked by the Classifier)."""
    if getattr(args, "validation", None) is None:
        if getattr(args, "target_accuracy", None) is not None:
            raise ConfigError("--target-accuracy needs --validation: the threshold is chosen on labelled rows")
        return {}
    return dict(validation=args.validation, target_accuracy=args.target_accuracy, risk=args.risk)


def _progress(args) -> bool | None:
    """--quiet: none; --progress: always; neither: on a terminal only."""
    if getattr(args, "no_progress", False):
        return False
    return True if getattr(args, "progress", False) else None


def cmd_classify(args) -> int:
    """Check everything (output format, input file, columns, labels, model) before any model loads or request is
    sent; then label the file a window at a time, writing as it goes."""
    from promptclf.core.data import TableWriter, check_input
    from promptclf.methods.label_similarity import SAMPLE

    labels = _labels_or_task(args)
    if getattr(args, "validation", None) and (args.engine == "ray" or args.batch_api):
        raise ConfigError("--validation is taken by the local engine without --batch-api only")
    if args.engine == "ray":
        return _classify_with_ray(args)
    if args.batch_api:
        return _classify_with_batch_api(args)
    if str(args.output) != "-" and Path(args.output).resolve() == Path(args.input).resolve():
        raise ConfigError(f"--output {args.output} is the input file: name another file")
    writer = TableWriter(args.output)  # refuses an output it cannot write, before any work
    summary = check_input(args.input, args.text_column, skip_empty=args.skip_empty, sample_size=SAMPLE)
    clf = _classifier(args, labels, summary.sample)
    with writer:
        failed = _label_file(clf, args, summary.rows, writer)
    where = "stdout" if writer.to_stdout else writer.path
    print(f"wrote {writer.rows} rows to {where}", file=sys.stderr)
    print(clf.report.summary(), file=sys.stderr)
    _write_diagram(clf, None if writer.to_stdout else writer.path)
    return _say_failures(clf, failed, summary.rows)


def _label_file(clf, args, rows: int, writer) -> list[int]:
    """Stream the input through the classifier; each input chunk is written once all its rows are answered.
    Returns the (1-based) numbers of the rows that could not be labelled."""
    from collections import deque

    from promptclf.core.data import read_chunks, text_of

    frames: deque = deque()

    def texts():
        for frame in read_chunks(args.input):
            if len(frame):
                frames.append(frame)
                yield from text_of(frame, args.text_column)

    failed, pending, labelled = [], [], 0
    for row, prediction in enumerate(clf.stream(texts(), total=rows), start=1):
        labelled += prediction is not None and prediction.error is None
        pending.append(prediction)
        if prediction is not None and prediction.error is not None:
            failed.append(row)
        if len(pending) == len(frames[0]):
            writer.write(with_predictions(frames.popleft(), pending, accepted=clf.target_accuracy is not None))
            pending = []
    stopped_by = clf.pipeline.state.error
    if isinstance(stopped_by, ConfigError) and not labelled:  # refused from the first request: nothing to keep
        raise stopped_by
    return failed


def _write_diagram(clf, output: Path | None) -> None:
    """The validation rows' reliability diagram beside the output (<output>.reliability.png; the working
    directory's reliability.png for stdout)."""
    if clf.assessment is None or clf.assessment.ece_before is None:
        return
    path = Path("reliability.png") if output is None else output.with_name(output.name + ".reliability.png")
    print(f"wrote the reliability diagram to {clf.write_reliability_diagram(path)}", file=sys.stderr)


def with_predictions(frame, predictions, accepted: bool = False):
    """The input rows with predicted_label, confidence, source and error (empty where labelled); with
    `accepted`, whether each label is auto-accepted (a target accuracy was set)."""
    import pandas as pd

    frame = frame.reset_index(drop=True).copy()
    frame["predicted_label"] = pd.array([p.label if p else None for p in predictions], dtype="string")
    frame["confidence"] = pd.array([p.confidence if p else None for p in predictions], dtype="Float64")
    frame["source"] = pd.array([p.source if p else "skipped" for p in predictions], dtype="string")
    frame["error"] = pd.array([p.error if p else None for p in predictions], dtype="string")
    if accepted:
        frame["accepted"] = pd.array([bool(p and p.accepted) for p in predictions], dtype="boolean")
    return frame


def _say_failures(clf, failed: list[int], rows: int) -> int:
    if not failed:
        return 0
    shown = ", ".join(map(str, failed[:5])) + (", ..." if len(failed) > 5 else "")
    stopped = f"the run stopped asking: {clf.stopped}. " if clf.stopped else ""
    print(
        f"promptclf: error: {stopped}{len(failed)} of {rows} rows could not be labelled (rows {shown}; 1 is the "
        "first data row): see their `error` column. Every answer is cached: a rerun asks only those rows.",
        file=sys.stderr,
    )
    return 1


def _write_predictions(frame, predictions, output) -> None:
    from promptclf.core.data import write_table

    path = write_table(with_predictions(frame, predictions), output)
    print(f"wrote {len(frame)} rows to {path}", file=sys.stderr)


# --- batch APIs: classify --batch-api, batch status / collect / cancel (promptclf/workflows/batch_api.py) ------------

BATCH_ARGS = (
    "input",
    "text_column",
    "labels",
    "task",
    "model",
    "examples",
    "examples_text_column",
    "examples_label_column",
    "example_selection",
    "k",
    "prompt",
    "instructions",
    "batch_size",
    "structured",
    "concurrency",
    "max_attempts",
    "timeout",
    "cache",
    "cache_dir",
    "no_cache",
    "fallback",
    "fallback_below",
    "skip_empty",
    "no_progress",
    "calibrate",
    "demo_words",
    "item_words",
    "quantize",
    "threads",
    "no_logprobs",
    "multi_label",
)  # batch_manifest.CliOptions: never the output


def _classify_with_batch_api(args) -> int:
    """Submit (or resume: a manifest next to the output is picked up, so nothing is paid twice), then, unless
    --batch-api submit, wait and collect."""
    from promptclf.core.data import read_table, text_of
    from promptclf.workflows.batch_api import BatchJob

    if "@" in str(args.cache or ""):  # the manifest keeps the options; a cache password must not go there
        raise ConfigError("--batch-api keeps its options in a manifest: use a cache URL without a password")
    frame = read_table(args.input)
    texts = text_of(frame, args.text_column)
    clf = _classifier(args, _labels_or_task(args), texts)
    manifest = Path(f"{args.output}.batch.json")
    if manifest.exists():
        job = BatchJob.load(manifest, model=args.model)  # the model given here names its host
        try:
            job.check_texts(texts)
        except ConfigError as exc:
            raise ConfigError(f"{exc}: collect it, or delete it to submit anew") from None
        print(f"promptclf: resuming the batches in {manifest}", file=sys.stderr)
    else:
        job = BatchJob.submit(clf, texts, manifest, extra={name: getattr(args, name) for name in BATCH_ARGS})
        print(
            f"submitted {job.data['request_count']} requests in {len(job.data['batches'])} batches; manifest "
            f"{manifest} (resume with: promptclf batch collect {manifest})",
            file=sys.stderr,
        )
    if args.batch_api == "submit":
        return 0
    return _collect(job, clf, frame, texts, args.output, progress=not args.no_progress)


def _collect(job, clf, frame, texts, output, progress: bool) -> int:
    try:
        predictions = job.collect(clf, texts, progress=progress)
    except KeyboardInterrupt:
        print(f"promptclf: interrupted; the batches go on: promptclf batch collect {job.path}", file=sys.stderr)
        return 130
    _write_predictions(frame, predictions, output)
    print(job.report.summary(), file=sys.stderr)
    return 0


def _batch_job(args):
    from promptclf.workflows.batch_api import BatchJob

    return BatchJob.load(args.manifest, model=args.model)


def _beside(manifest: Path) -> Path:
    """The output a manifest was written for: <output>.batch.json names it, in the manifest's directory."""
    if not manifest.name.endswith(".batch.json") or manifest.name == ".batch.json":
        raise ConfigError(f"{manifest} is not named <output>.batch.json: say where to write with --output")
    return manifest.with_name(manifest.name.removesuffix(".batch.json"))


def cmd_batch_status(args) -> int:
    job = _batch_job(args)
    for batch in job.status():
        counts = f" {batch['counts']}" if batch["counts"] else ""
        print(f"{batch['id']}: {batch['status']} ({batch['requests']} requests){counts}")
    print(
        f"{'all finished: promptclf batch collect ' + str(job.path) if job.finished() else 'not finished yet'}",
        file=sys.stderr,
    )
    return 0


def cmd_batch_collect(args) -> int:
    from promptclf.core.data import read_table, text_of
    from promptclf.providers.registry import parse_model

    job = _batch_job(args)
    saved = job.extra
    if not saved:
        raise ConfigError(f"{job.path} was submitted from Python, not the CLI: collect it with BatchJob.collect")
    if parse_model(saved["model"]) != job.spec():  # before any request: the classifier's key goes to its host
        raise ConfigError(f"{job.path}: its options name another model than its batches' ({job.data['model_id']})")
    output = args.output or _beside(job.path)
    options = argparse.Namespace(**saved)
    if args.no_progress:
        options.no_progress = True
    frame = read_table(options.input)
    texts = text_of(frame, options.text_column)
    try:
        job.check_texts(texts)
    except ConfigError:
        raise ConfigError(
            f"{options.input} changed since the batch was submitted: its texts are not the batch's"
        ) from None
    clf = _classifier(options, _labels_or_task(options), texts)
    return _collect(job, clf, frame, texts, output, progress=not options.no_progress)


def cmd_batch_cancel(args) -> int:
    for batch in _batch_job(args).cancel():
        print(f"{batch['id']}: {batch['status']}")
    return 0


def _add_batch_commands(sub) -> None:
    p = sub.add_parser("batch", help="batches submitted with classify --batch-api: status, collect, cancel")
    verbs = p.add_subparsers(dest="batch_command", required=True)
    for name, func, text in (
        ("status", cmd_batch_status, "each batch's status, as the provider reports it"),
        (
            "collect",
            cmd_batch_collect,
            "wait, load the answers into the cache, re-ask what the batches did not answer, write the output",
        ),
        ("cancel", cmd_batch_cancel, "cancel the batches that have not finished"),
    ):
        verb = verbs.add_parser(name, help=text)
        verb.add_argument("manifest", help="the manifest classify --batch-api wrote (<output>.batch.json)")
        verb.add_argument(
            "--model",
            help="the model string the batches were sent to, to name its host yourself "
            "where the manifest's cannot be checked (edited, or submitted with another key)",
        )
        if name == "collect":
            verb.add_argument(
                "--output",
                help="where to write the labelled table (default: the <output> that "
                "<output>.batch.json names, beside the manifest)",
            )
            verb.add_argument("--no-progress", action="store_true")
        verb.set_defaults(func=func)


def _classify_with_ray(args) -> int:
    from promptclf.core.data import sample_of
    from promptclf.integrations.ray import label_parquet
    from promptclf.methods.label_similarity import SAMPLE

    options = _classifier_options(args)
    if Path(args.input).exists():  # the texts offline and embed self-train on, as the in-process path takes them
        options["unlabeled"] = sample_of(args.input, args.text_column, SAMPLE)
    progress = options.pop("progress") is not False
    usage, rows_with_error = label_parquet(
        args.input,
        args.output,
        _labels_or_task(args),
        args.model,
        text_column=args.text_column,
        actors=args.actors,
        progress=progress,
        **options,
    )
    print(f"wrote {usage.items} rows to {args.output}/ (Parquet parts)", file=sys.stderr)
    print(usage.summary(), file=sys.stderr)
    if rows_with_error:
        print(
            f"promptclf: error: {rows_with_error} rows could not be labelled: see their `error` column in "
            f"{args.output}/ (what was answered is cached)",
            file=sys.stderr,
        )
        return 1
    return 0


def cmd_evaluate(args) -> int:
    from promptclf.core.data import read_table, text_of

    frame = read_table(args.data)
    if args.label_column not in frame.columns:
        raise ColumnError(f"column {args.label_column!r} not in {args.data}; it has {list(frame.columns)}")
    gold = frame[args.label_column].astype(str).tolist()
    labels = _labels_or_task(args, required=False) or _saved_labels(args.model) or _gold_labels(gold, args)
    texts = text_of(frame, args.text_column)
    clf = _classifier(args, labels, texts)
    if clf.multi_label:  # gold labels joined by ';' ("" or a missing value: none)
        gold = frame[args.label_column].fillna("").astype(str).tolist()
    metrics = clf.score(texts, gold)
    metrics.update(model=clf.spec.id, report=clf.report.as_dict())
    if clf.multi_label:
        print(
            f"{clf.spec.id}: micro-F1 {metrics['micro_f1']:.4f}  macro-F1 {metrics['macro_f1']:.4f}  subset accuracy "
            f"{metrics['subset_accuracy']:.4f}  Hamming loss {metrics['hamming_loss']:.4f}  (n={metrics['n']})"
        )
    else:
        print(
            f"{clf.spec.id}: accuracy {metrics['accuracy']:.4f}  macro-F1 {metrics['macro_f1']:.4f}  (n={metrics['n']})"
        )
    print(clf.report.summary(), file=sys.stderr)
    if args.json:
        Path(args.json).parent.mkdir(parents=True, exist_ok=True)
        Path(args.json).write_text(json.dumps(metrics, indent=2))
    return 0


def _gold_labels(gold: list[str], args) -> list[str]:
    """The label set the gold column shows: with --multi-label, the names in its ';'-joined sets."""
    if not getattr(args, "multi_label", False):
        return sorted(set(gold))
    from promptclf.core.multilabel import split_labels

    return sorted({name for value in gold for name in split_labels(value)})


def _saved_labels(model: str) -> list[str] | None:
    """A fine-tuned model knows its label set; evaluate uses it when --labels is not given."""
    if not model or not model.startswith("finetuned:"):
        return None
    meta = Path(model.split(":", 1)[1]) / "promptclf.json"
    return [label["name"] for label in json.loads(meta.read_text())["labels"]] if meta.exists() else None


def cmd_quickstart(args) -> int:
    """Label a seeded slice of AG News with the embedded model (few-shot pool from another slice)."""
    import pandas as pd

    from promptclf.classifier import Classifier
    from promptclf.core.data import AG_NEWS_ALIASES, AG_NEWS_LABELS, load_ag_news, split, write_table
    from promptclf.core.metrics import classification_metrics

    rows = load_ag_news(args.data)
    from promptclf.core.labels import LabelSet
    from promptclf.task.examples import sample_per_class

    labels = LabelSet.of(list(AG_NEWS_LABELS.values()), aliases=AG_NEWS_ALIASES)
    pool, test = split(rows, [args.pool, args.n], seed=args.seed)
    examples = sample_per_class(pool, labels, args.per_class, args.seed) if args.per_class else pool
    print(
        f"AG News {args.data or 'test.csv'}: {args.n} items to label, {len(examples)} labelled examples "
        f"(seed {args.seed}), model {args.model}",
        file=sys.stderr,
    )
    texts = [r["text"] for r in test]
    clf = Classifier(
        labels, args.model, examples=examples, unlabeled=texts, progress=False if args.no_progress else None
    )
    predictions = clf.predict(texts)
    metrics = classification_metrics([r["label"] for r in test], [p.label for p in predictions], clf.labels.names)
    out = write_table(
        pd.DataFrame(
            {
                "text": [r["text"] for r in test],
                "label": [r["label"] for r in test],
                "predicted_label": [p.label for p in predictions],
                "confidence": [p.confidence for p in predictions],
                "source": [p.source for p in predictions],
            }
        ),
        args.output,
    )
    print(f"accuracy {metrics['accuracy']:.3f}  macro-F1 {metrics['macro_f1']:.3f}  on {args.n} AG News items")
    print(f"run report: {clf.report.summary()}")
    print(f"predictions written to {out}")
    return 0


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="promptclf", description=__doc__)
    parser.add_argument("-v", "--verbose", action="store_true", help="info messages, and dependencies' warnings")
    parser.add_argument(
        "--debug", action="store_true", help="the traceback of an unexpected error (also PROMPTCLF_DEBUG=1)"
    )
    sub = parser.add_subparsers(dest="command", required=True)

    p = sub.add_parser("classify", help="label a file's text column")
    p.add_argument(
        "--input",
        required=True,
        help="a CSV, JSONL or Parquet file (--engine ray: Parquet, a file or a directory of them)",
    )
    p.add_argument(
        "--output",
        required=True,
        help="a file (.csv, .jsonl, .parquet); --engine ray: a new directory of Parquet parts",
    )
    p.add_argument("--text-column", default="text", help="a column, or several joined: title,description")
    p.add_argument(
        "--engine",
        default="local",
        choices=["local", "ray"],
        help="local (default): this process; ray: Ray Data actors on a local cluster, or on the one "
        'RAY_ADDRESS names (pip install "promptclf[ray]")',
    )
    p.add_argument(
        "--actors",
        type=int,
        default=2,
        help="--engine ray: labelling actors, each with one model or one API client (default 2)",
    )
    p.add_argument(
        "--batch-api",
        nargs="?",
        const="wait",
        choices=["wait", "submit"],
        help="label through the provider's batch API at half price (openai:, together:, "
        "openai-compatible:): submit, write <output>.batch.json, then wait and collect; "
        "`--batch-api submit` stops after submitting (promptclf batch collect <manifest> resumes)",
    )
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

    _add_batch_commands(sub)
    for register in _extensions():
        register(sub)
    return parser


def _extensions():
    """Sub-commands that live with their modules (finetune, distill, optimize, compare, cache, review, audit)."""
    import importlib

    for name in (
        "methods.finetune",
        "workflows.distill",
        "workflows.optimize",
        "workflows.compare",
        "cache.transfer",
        "workflows.review",
        "workflows.audit",
    ):
        module = importlib.import_module(f"promptclf.{name}")
        if hasattr(module, "register_cli"):
            yield module.register_cli


EXIT_BUG = 70  # EX_SOFTWARE: an error promptclf did not expect is a bug, shown as one


def _usage_errors() -> tuple:
    """promptclf's own errors about what the user gave (configuration, input, labels, examples, a manifest):
    a one-line message and exit 2."""
    from promptclf.core.errors import InputError
    from promptclf.core.labels import LabelError
    from promptclf.task.examples import ExampleError

    return ConfigError, InputError, LabelError, ExampleError


def _run_errors() -> tuple:
    """promptclf's own errors about a run that could not finish (items not labelled, a cache or batch gone):
    a one-line message and exit 1."""
    from promptclf.cache.store import CacheError
    from promptclf.core.errors import LabellingError
    from promptclf.workflows.batch_api import BatchError

    return LabellingError, CacheError, BatchError


def main(argv=None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    debug = args.debug or os.environ.get("PROMPTCLF_DEBUG", "") not in ("", "0")
    logging.basicConfig(level=logging.INFO if args.verbose else logging.WARNING, format="%(message)s")
    if not (args.verbose or debug):
        from promptclf.core.quiet import silence_dependencies

        silence_dependencies()  # warnings and bars a user cannot act on; ours stay
    try:
        return args.func(args)
    except _usage_errors() as exc:
        print(f"promptclf: error: {exc}", file=sys.stderr)
        return 2
    except _run_errors() as exc:
        print(f"promptclf: error: {exc}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        print("promptclf: interrupted; answers so far are cached, rerun to resume", file=sys.stderr)
        return 130
    except Exception as exc:  # noqa: BLE001 - anything else is a bug: said as one, with its traceback on request
        if debug:
            traceback.print_exc()
        print(
            f"promptclf: internal error: {type(exc).__name__}: {str(exc)[:300]}\nThis is a bug in promptclf (or "
            f"a dependency): please report it with the traceback{'' if debug else ' (rerun with --debug)'}.",
            file=sys.stderr,
        )
        return EXIT_BUG


if __name__ == "__main__":
    sys.exit(main())
