"""Review in Label Studio: the rows a run did not accept go out as Label Studio tasks with the model's answer
pre-filled, and what reviewers label comes back as gold rows (text, label) for `--validation` or `--examples`.
`promptclf review export` and `promptclf review import` on the command line.

Export writes Label Studio's JSON import format (a list of tasks: `data` with the text, `predictions` with the
model's label as a `choices` result and its confidence as the score) and, beside it, the labelling config those
tasks need (a Text and a Choices tag; `choice="multiple"` for multi-label tasks). Import reads Label Studio's
JSON export (Export -> JSON: tasks with their `annotations`): cancelled (skipped) annotations and empty ones are
left out, and where a task has several annotations the latest (by `updated_at`) gives its label, or, with
conflicts="skip", a task whose annotators disagree gives none."""

from __future__ import annotations

import json
import sys
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from xml.sax.saxutils import quoteattr

import pandas as pd

from promptclf.core.errors import ColumnError, ConfigError, InputError
from promptclf.core.labels import LabelSet

TEXT_KEY = "text"  # the task's data key, $text in the config
CONTROL = "label"  # the Choices tag's name: from_name of every result
ROW_KEY = "row"  # the row of the input file each task came from (1 is the first data row)
DEFAULT_MODEL_VERSION = "promptclf"
TRUE = {"true", "1", "yes"}
FALSE = {"false", "0", "no", ""}


# --- export ---------------------------------------------------------------------------------------------------


def label_config(labels, multi_label: bool = False) -> str:
    """The labelling config the exported tasks fit: the text, and one choice per label."""
    choices = "\n".join(f"    <Choice value={quoteattr(name)}/>" for name in LabelSet.of(labels).names)
    how = "multiple" if multi_label else "single"
    return (
        f'<View>\n  <Text name={quoteattr(TEXT_KEY)} value="${TEXT_KEY}"/>\n'
        f'  <Choices name={quoteattr(CONTROL)} toName={quoteattr(TEXT_KEY)} choice="{how}">\n{choices}\n'
        "  </Choices>\n</View>\n"
    )


def accepted_flags(frame: pd.DataFrame, where: str = "the input") -> list[bool]:
    """The `accepted` column as booleans (True/False, or as text: true/false, 1/0, yes/no; empty is False)."""
    flags = []
    for row, value in enumerate(frame["accepted"], start=1):
        if _missing(value):
            flags.append(False)
        elif not isinstance(value, str) and value in (0, 1):  # True, False, numpy's booleans, 1, 0
            flags.append(bool(value))
        elif str(value).strip().lower() in TRUE | FALSE:
            flags.append(str(value).strip().lower() in TRUE)
        else:
            raise InputError(f"{where}, row {row}: `accepted` is {value!r}, not True or False")
    return flags


def confidences(frame: pd.DataFrame, where: str = "the input") -> list[float | None]:
    """The `confidence` column as numbers (None where empty)."""
    out = []
    for row, value in enumerate(frame["confidence"], start=1):
        if _missing(value) or (isinstance(value, str) and not value.strip()):
            out.append(None)
            continue
        try:
            out.append(float(value))
        except (TypeError, ValueError):
            raise InputError(f"{where}, row {row}: `confidence` is {value!r}, not a number") from None
    return out


def _missing(value) -> bool:
    """None, NaN or pandas' NA: a cell with nothing in it."""
    return value is None or (not isinstance(value, (str, list)) and bool(pd.isna(value)))


def to_review(frame: pd.DataFrame, below: float | None = None, where: str = "the input") -> tuple[list[bool], str]:
    """Which rows go to review, and the rule said in words: with `below`, the rows whose confidence is below it
    (or missing); else, where the file has an `accepted` column, the rows not accepted; else every row."""
    if below is not None:
        if not 0.0 <= below <= 1.0:
            raise ConfigError(f"--below {below}: a confidence between 0 and 1")
        return [c is None or c < below for c in confidences(frame, where)], f"confidence below {below}"
    if "accepted" in frame.columns:
        return [not flag for flag in accepted_flags(frame, where)], "not accepted"
    return [True] * len(frame), "every row (the file has no `accepted` column and no --below was given)"


def task_of(
    text: str, row: int, answer, confidence: float | None, model_version: str, multi_label: bool, labels: LabelSet
) -> dict:
    """One Label Studio task: the text, its row, and the model's answer (where there is one) as a prediction."""
    task = {"data": {TEXT_KEY: text, ROW_KEY: row}}
    chosen = _answer_labels(answer, multi_label, labels, row)
    if chosen:
        prediction = {
            "model_version": model_version,
            "result": [
                {
                    "from_name": CONTROL,
                    "to_name": TEXT_KEY,
                    "type": "choices",
                    "value": {"choices": chosen},
                }
            ],
        }
        if confidence is not None:
            prediction["score"] = confidence
        task["predictions"] = [prediction]
    return task


def _answer_labels(answer, multi_label: bool, labels: LabelSet, row: int) -> list[str]:
    from promptclf.core.multilabel import split_labels

    if _missing(answer) or not str(answer).strip():
        return []
    names = split_labels(answer) if multi_label else [str(answer)]
    return [labels.check(name, f"predicted_label of row {row}") for name in names]


@dataclass
class Exported:
    tasks: int  # rows written as tasks
    rows: int  # rows in the input
    rule: str  # which rows went to review, in words
    with_prediction: int  # tasks with the model's answer pre-filled
    config: Path | None = None


def review_tasks(
    frame: pd.DataFrame,
    labels,
    *,
    text_column: str = "text",
    below: float | None = None,
    multi_label: bool = False,
    model_version: str | None = None,
    where: str = "the input",
) -> tuple[list[dict], str]:
    """The Label Studio tasks for the rows of a `classify` output that go to review (to_review), and the rule
    that chose them. `frame` has the text column, predicted_label and confidence (and, where present, source,
    error, accepted); a task's model_version is `model_version`, else the row's source."""
    from promptclf.core.data import text_of

    labels = LabelSet.of(labels)
    for column in ("predicted_label", "confidence"):
        if column not in frame.columns:
            raise ColumnError(
                f"{where} has no column {column!r}: give the output of promptclf classify (its columns are "
                f"{[str(c) for c in frame.columns]})"
            )
    try:
        texts = text_of(frame, text_column)
    except ColumnError:
        raise ColumnError(
            f"{where} has no column {text_column!r}: its columns are {[str(c) for c in frame.columns]} "
            "(choose with --text-column)"
        ) from None
    chosen, rule = to_review(frame, below, where)
    scores = confidences(frame, where)
    sources = frame["source"].tolist() if "source" in frame.columns else [None] * len(frame)
    errors = frame["error"].tolist() if "error" in frame.columns else [None] * len(frame)
    tasks = []
    for i, take in enumerate(chosen):
        if not take:
            continue
        failed = isinstance(errors[i], str) and errors[i].strip()
        answer = None if failed else frame["predicted_label"].iloc[i]
        version = model_version or (sources[i] if isinstance(sources[i], str) and sources[i] else DEFAULT_MODEL_VERSION)
        tasks.append(task_of(texts[i], i + 1, answer, scores[i], version, multi_label, labels))
    return tasks, rule


def export_review(
    input_path: str | Path,
    output: str | Path,
    labels,
    *,
    text_column: str = "text",
    below: float | None = None,
    multi_label: bool = False,
    model_version: str | None = None,
) -> Exported:
    """Write the rows of a `classify` output that go to review as Label Studio tasks (JSON, `output`) and the
    labelling config beside it (`<output stem>.config.xml`). See review_tasks."""
    from promptclf.core.data import read_table
    from promptclf.core.files import write_atomically

    output = Path(output)
    if output.suffix.lower() != ".json":
        raise ConfigError(f"--output {output}: Label Studio imports tasks from a .json file")
    frame = read_table(input_path)
    tasks, rule = review_tasks(
        frame,
        labels,
        text_column=text_column,
        below=below,
        multi_label=multi_label,
        model_version=model_version,
        where=f"input file {str(input_path)!r}",
    )
    output.parent.mkdir(parents=True, exist_ok=True)
    write_atomically(output, json.dumps(tasks, indent=2, ensure_ascii=False) + "\n")
    config = config_path(output)
    write_atomically(config, label_config(labels, multi_label))
    return Exported(len(tasks), len(frame), rule, sum("predictions" in t for t in tasks), config)


def config_path(tasks_file: Path) -> Path:
    return tasks_file.with_name(f"{tasks_file.stem}.config.xml")


# --- import ---------------------------------------------------------------------------------------------------


@dataclass
class Gold:
    """Gold rows read from a Label Studio export, and what was left out."""

    rows: list[dict]  # text, label (a multi-label task's names joined by ";"), task (Label Studio's id), row
    tasks: int = 0
    unannotated: list = field(default_factory=list)  # task ids with no annotation left (none, cancelled, empty)
    cancelled: int = 0  # annotations skipped (cancelled) in Label Studio
    several: int = 0  # tasks with several annotations
    disagreed: list = field(default_factory=list)  # task ids whose annotations give different labels

    def summary(self, conflicts: str = "latest") -> str:
        parts = [f"{len(self.rows)} gold rows from {self.tasks} tasks"]
        if self.unannotated:
            parts.append(f"{len(self.unannotated)} tasks without an annotation left out")
        if self.cancelled:
            parts.append(f"{self.cancelled} skipped annotations ignored")
        if self.several:
            shown = ", ".join(map(str, self.disagreed[:5])) + (", ..." if len(self.disagreed) > 5 else "")
            how = "the latest annotation taken" if conflicts == "latest" else "those that disagree left out"
            disagree = f", {len(self.disagreed)} disagreeing (tasks {shown})" if self.disagreed else ""
            parts.append(f"{self.several} tasks with several annotations{disagree}: {how}")
        return "; ".join(parts)


def read_export(path: str | Path) -> list[dict]:
    """The tasks of a Label Studio JSON export, checked to be one (a list of tasks with `data`)."""
    path = Path(path)
    if not path.is_file():
        from promptclf.core.errors import MissingFileError

        raise MissingFileError(f"export file {str(path)!r} does not exist")
    try:
        tasks = json.loads(path.read_text(encoding="utf-8"))
    except (UnicodeDecodeError, ValueError) as exc:
        raise InputError(f"export file {str(path)!r} is not JSON ({exc})") from None
    if not isinstance(tasks, list) or any(not isinstance(t, dict) or "data" not in t for t in tasks):
        raise InputError(
            f"export file {str(path)!r} is not Label Studio's JSON export (a list of tasks, each with `data` and "
            "`annotations`): export the project as JSON, not JSON-MIN or CSV"
        )
    return tasks


def gold_from_tasks(
    tasks: Sequence[dict],
    labels=None,
    *,
    multi_label: bool = False,
    conflicts: str = "latest",
    text_key: str = TEXT_KEY,
    control: str | None = None,
    where: str = "the export",
) -> Gold:
    """Gold rows from Label Studio's exported tasks: each task's latest non-cancelled, non-empty annotation
    (conflicts="latest"), or none where its annotations disagree (conflicts="skip"). `labels`, where given,
    checks each label (aliases resolved); `control` names the Choices tag where the config has several."""
    if conflicts not in ("latest", "skip"):
        raise ConfigError(f"conflicts={conflicts!r}: latest or skip")
    labels = LabelSet.of(labels) if labels is not None else None
    gold = Gold(rows=[], tasks=len(tasks))
    for task in tasks:
        task_id = task.get("id")
        annotations = task.get("annotations") or []
        gold.cancelled += sum(bool(a.get("was_cancelled")) for a in annotations)
        answers = [
            (when(a), chosen)
            for a in annotations
            if not a.get("was_cancelled")
            for chosen in [choices_of(a, control, where, task_id)]
            if chosen
        ]
        if not answers:
            gold.unannotated.append(task_id)
            continue
        answers.sort(key=lambda pair: pair[0])
        if len(answers) > 1:
            gold.several += 1
            if len({tuple(sorted(c)) for _, c in answers}) > 1:
                gold.disagreed.append(task_id)
                if conflicts == "skip":
                    continue
        chosen = answers[-1][1]
        if len(chosen) > 1 and not multi_label:
            raise InputError(
                f"{where}, task {task_id}: the annotation chose {chosen}; a single-label task takes one label "
                "(multi-label: pass --multi-label)"
            )
        if labels is not None:
            chosen = [labels.check(name, f"{where}, task {task_id}") for name in chosen]
        data = task["data"]
        if text_key not in data:
            raise InputError(f"{where}, task {task_id}: its data has no {text_key!r} (it has {sorted(data)})")
        gold.rows.append(
            {"text": str(data[text_key]), "label": ";".join(chosen), "task": task_id, "row": data.get(ROW_KEY)}
        )
    return gold


def when(annotation: dict) -> tuple:
    """The order annotations were made in: updated_at (ISO 8601, so text order is time order), then the id."""
    stamp = annotation.get("updated_at") or annotation.get("created_at") or ""
    return (str(stamp), annotation.get("id") or 0)


def choices_of(annotation: dict, control: str | None, where: str, task_id) -> list[str]:
    """The labels an annotation chose: its `choices` results (of the `control` tag, where named)."""
    results = [r for r in annotation.get("result") or [] if r.get("type") == "choices"]
    if control is not None:
        results = [r for r in results if r.get("from_name") == control]
    controls = {r.get("from_name") for r in results}
    if len(controls) > 1:
        raise InputError(
            f"{where}, task {task_id}: choices from several tags {sorted(controls)}: name the one with --control"
        )
    return [str(name) for r in results for name in (r.get("value") or {}).get("choices") or []]


def import_review(
    path: str | Path,
    output: str | Path,
    labels=None,
    *,
    multi_label: bool = False,
    conflicts: str = "latest",
    text_key: str = TEXT_KEY,
    control: str | None = None,
) -> Gold:
    """Read a Label Studio JSON export and write its gold rows (text, label) to `output` (.csv, .jsonl, .parquet),
    a file `--validation` and `--examples` read."""
    from promptclf.core.data import TableWriter

    writer = TableWriter(output)  # refuses an output it cannot write, before reading
    gold = gold_from_tasks(
        read_export(path),
        labels,
        multi_label=multi_label,
        conflicts=conflicts,
        text_key=text_key,
        control=control,
        where=f"export file {str(path)!r}",
    )
    with writer:
        writer.write(pd.DataFrame({"text": [r["text"] for r in gold.rows], "label": [r["label"] for r in gold.rows]}))
    return gold


# --- the command line -----------------------------------------------------------------------------------------


def _label_set(args, required: bool):
    """--labels or --task (a task file names the labels and says whether it is multi-label)."""
    from promptclf.task.definition import Task

    if args.labels and args.task:
        raise ConfigError("--labels and --task both given: the task file names the labels; give one of them")
    if args.task:
        task = Task.load(args.task)
        return task.label_set(), task.multi_label or args.multi_label
    if required and not args.labels:
        raise ConfigError("--labels or --task is required: the labelling config lists every label")
    return (LabelSet.of(args.labels) if args.labels else None), args.multi_label


def cmd_review_export(args) -> int:
    labels, multi_label = _label_set(args, required=True)
    if str(args.output) != "-" and Path(args.output).resolve() == Path(args.input).resolve():
        raise ConfigError(f"--output {args.output} is the input file: name another file")
    done = export_review(
        args.input,
        args.output,
        labels,
        text_column=args.text_column,
        below=args.below,
        multi_label=multi_label,
        model_version=args.model_version,
    )
    print(
        f"wrote {done.tasks} of {done.rows} rows ({done.rule}) as Label Studio tasks to {args.output}, "
        f"{done.with_prediction} with the model's answer pre-filled; labelling config: {done.config}",
        file=sys.stderr,
    )
    return 0


def cmd_review_import(args) -> int:
    labels, multi_label = _label_set(args, required=False)
    gold = import_review(
        args.export,
        args.output,
        labels,
        multi_label=multi_label,
        conflicts=args.conflicts,
        text_key=args.text_key,
        control=args.control,
    )
    print(f"wrote {len(gold.rows)} rows to {args.output}: {gold.summary(args.conflicts)}", file=sys.stderr)
    return 0


def _add_label_options(p) -> None:
    p.add_argument("--labels", help="comma-separated label names")
    p.add_argument("--task", help="a task file (.yaml, .yml, .json) naming the labels, instead of --labels")
    p.add_argument("--multi-label", action="store_true", help="each text takes every label that applies")


def register_cli(sub) -> None:
    p = sub.add_parser("review", help="review in Label Studio: export the rows to check, import the labels back")
    verbs = p.add_subparsers(dest="review_command", required=True)

    export = verbs.add_parser(
        "export",
        help="the rows of a classify output to review, as Label Studio tasks with the model's answer pre-filled",
        description="Writes Label Studio's JSON import format and, beside it, <output stem>.config.xml: the "
        "labelling config to paste into the project (Settings -> Labeling Interface -> Code). Which rows: with "
        "--below, those whose confidence is below it; else, where the file has an `accepted` column, the rows "
        "not accepted; else every row. Rows that could not be labelled go without a pre-filled answer.",
    )
    export.add_argument("--input", required=True, help="the output of promptclf classify (.csv, .jsonl, .parquet)")
    export.add_argument("--output", required=True, help="the tasks file to write (.json)")
    export.add_argument("--text-column", default="text", help="the text column (default: text)")
    export.add_argument(
        "--below",
        type=float,
        help="review the rows whose confidence is below this (0-1), whether or not the file has an `accepted` "
        "column (default: the rows not accepted, or every row where there is no `accepted` column)",
    )
    export.add_argument("--model-version", help="the predictions' model_version (default: each row's source)")
    _add_label_options(export)
    export.set_defaults(func=cmd_review_export)

    back = verbs.add_parser(
        "import",
        help="Label Studio's JSON export back as gold labels (text,label) for --validation or --examples",
        description="Reads Label Studio's JSON export (Export -> JSON). Cancelled (skipped) and empty annotations "
        "are ignored; a task with several annotations takes the latest (by updated_at), or none with --conflicts "
        "skip where they disagree; tasks without an annotation are left out. Counts go to stderr.",
    )
    back.add_argument("export", help="the JSON file Label Studio exported")
    back.add_argument("--output", required=True, help="the gold file to write (.csv, .jsonl, .parquet)")
    back.add_argument(
        "--conflicts",
        default="latest",
        choices=["latest", "skip"],
        help="where several annotators disagree: the latest annotation (default), or leave the task out",
    )
    back.add_argument("--text-key", default=TEXT_KEY, help="the tasks' data key with the text (default: text)")
    back.add_argument("--control", help="the Choices tag to read where the config has several (default: the only one)")
    _add_label_options(back)
    back.set_defaults(func=cmd_review_import)
