"""Distillation: an LLM labels an unlabelled pool (cached), the local model is fine-tuned on its labels, and
both are scored on gold rows where given. `promptclf distill` on the command line."""

from __future__ import annotations

import json
from collections.abc import Sequence
from pathlib import Path

import numpy as np

from promptclf.core.errors import ConfigError
from promptclf.core.usage import Usage
from promptclf.methods.finetune import _add_training_options, _finetune_options, finetune


def distill(
    pool_texts: Sequence[str],
    labels,
    *,
    model: str,
    out: str | Path,
    test_rows: Sequence[dict] = (),
    classifier_options: dict | None = None,
    **finetune_options,
) -> dict:
    """Label an unlabelled pool with an LLM (cached), fine-tune the local model on those labels, and report
    its agreement with the LLM and, given gold test rows, both models' accuracy on them."""
    from promptclf.classifier import Classifier
    from promptclf.core.metrics import classification_metrics

    teacher = Classifier(labels, model, **(classifier_options or {}))
    taught = [{"text": t, "label": label} for t, label in zip(pool_texts, teacher.classify(list(pool_texts)))]
    report = {"teacher": model, "pool": len(taught), "teacher_usage": teacher.report.as_dict()}
    student = finetune(taught, teacher.labels, out=out, **finetune_options)
    if test_rows:
        texts, gold = [r["text"] for r in test_rows], [teacher.labels.check(r["label"]) for r in test_rows]
        teacher_says = teacher.classify(texts)
        student_says = [p.label for _, p in sorted(student.predict(texts, Usage()))]
        names = teacher.labels.names
        report.update(
            agreement=float(np.mean([a == b for a, b in zip(teacher_says, student_says)])),
            teacher_accuracy=classification_metrics(gold, teacher_says, names)["accuracy"],
            student_accuracy=classification_metrics(gold, student_says, names)["accuracy"],
        )
    Path(out, "distill.json").write_text(json.dumps(report, indent=2))
    return report


def cmd_distill(args) -> int:
    from promptclf.core.data import rows_from_file

    if not args.labels:
        raise ConfigError("--labels is required for distill")
    texts = rows_from_file(args.pool, args.text_column)
    test = rows_from_file(args.test, args.text_column, args.label_column) if args.test else ()
    report = distill(texts, args.labels, model=args.model, out=args.out, test_rows=test, **_finetune_options(args))
    print(json.dumps({k: v for k, v in report.items() if k != "teacher_usage"}, indent=2))
    return 0


def register_cli(sub) -> None:
    p = sub.add_parser("distill", help="label a pool with an LLM, then fine-tune the local model on it")
    p.add_argument("--pool", required=True, help="unlabelled texts")
    p.add_argument("--test", help="gold-labelled test file for accuracy and agreement")
    p.add_argument("--model", required=True, help="the teacher model string")
    _add_training_options(p)
    p.set_defaults(func=cmd_distill)
