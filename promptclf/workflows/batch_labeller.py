"""Label one table batch at a time (pandas or Arrow), for engines that hand out batches (Ray Data, Spark,
a loop over Parquet row groups). Each row gets a label or its own error: one bad row never fails a batch."""

from __future__ import annotations

import time
from collections.abc import Sequence
from dataclasses import dataclass

import pandas as pd

from promptclf.classifier import Classifier
from promptclf.core.data import text_of
from promptclf.core.errors import ColumnError, InputError, LabellingError
from promptclf.core.methods import Prediction
from promptclf.core.usage import Usage

OUTPUT_COLUMNS = ("predicted_label", "confidence", "source", "error")


@dataclass(frozen=True)
class RowResult:
    """One row's answer: a label, or why there is none (`error`). `source` is the Prediction's ("llm",
    "cache", "fallback"), "skipped" for an empty text under skip_empty, None for a row with an error."""

    predicted_label: str | None = None
    confidence: float | None = None
    source: str | None = None
    error: str | None = None


class BatchLabeller:
    """Answers a batch's rows with one Classifier: cached answers first, the method for the misses (the
    Classifier's own cache, concurrency and retries), then one RowResult per row in row order.

    >>> labeller = BatchLabeller(Classifier(labels, "openai:gpt-4o-mini"), text_column="text")
    >>> labelled = labeller(frame)        # frame plus predicted_label, confidence, source, error
    >>> labeller.usage.summary()          # calls, tokens, cost over every batch so far
    >>> labeller.rows_with_error          # rows so far with an error instead of a label
    """

    def __init__(self, classifier: Classifier, text_column: str = "text"):
        self.classifier = classifier
        self.text_column = text_column
        self.usage = Usage(model=classifier.spec.id, prices=classifier.prices)
        self.rows_with_error = 0

    @classmethod
    def build(
        cls, labels, model: str | None = None, *, text_column: str = "text", **classifier_options
    ) -> BatchLabeller:
        """Build the Classifier once (per process or actor) from the same arguments Classifier takes."""
        if classifier_options.get("progress") is None:  # the engine shows progress over all batches
            classifier_options["progress"] = False
        return cls(Classifier(labels, model, **classifier_options), text_column)

    def __call__(self, batch):
        """The batch with the four output columns appended; a pandas DataFrame or a pyarrow Table in, the
        same type out. A text column of several names ("title,description") is joined as the CLI joins it."""
        if isinstance(batch, pd.DataFrame):
            results = self.label(text_of(batch, self.text_column))
            out = batch.copy()
            for name, dtype in zip(OUTPUT_COLUMNS, ("string", "float64", "string", "string")):
                values = [getattr(r, name) for r in results]
                out[name] = pd.Series(
                    [float("nan") if v is None else v for v in values] if dtype == "float64" else values,
                    index=batch.index,
                    dtype=dtype,
                )
            return out
        import pyarrow as pa

        if isinstance(batch, pa.Table):
            names = [c.strip() for c in self.text_column.split(",")]
            missing = [c for c in names if c not in batch.column_names]
            if missing:
                raise ColumnError(f"column(s) {missing} not in the batch; it has {batch.column_names}")
            results = self.label(text_of(batch.select(names).to_pandas(), names))
            for name, kind in zip(OUTPUT_COLUMNS, (pa.string(), pa.float64(), pa.string(), pa.string())):
                batch = batch.append_column(name, pa.array([getattr(r, name) for r in results], type=kind))
            return batch
        raise TypeError(f"a batch is a pandas DataFrame or a pyarrow Table, not {type(batch).__name__}")

    def label(self, texts: Sequence) -> list[RowResult]:
        """One RowResult per text, in order. A text the Classifier refuses (not a string, empty, too long with
        truncate="error") or could not label gets an error naming the reason; the rest are labelled."""
        started = time.perf_counter()
        results: list[RowResult | None] = [None] * len(texts)
        to_label: dict[int, str] = {}  # row -> the text as the Classifier prepares it
        for row, text in enumerate(texts):
            try:
                prepared = self.classifier.prepare_item(row, text)
            except InputError as exc:
                results[row] = RowResult(error=f"bad input: {exc.reason}")
                continue
            if prepared is None:
                results[row] = RowResult(source="skipped")
            else:
                to_label[row] = prepared
        rows = list(to_label)
        predictions, failures = self._predict([to_label[row] for row in rows])
        for n, row in enumerate(rows):
            results[row] = (
                _row(predictions[n]) if n not in failures else RowResult(error=f"not labelled: {failures[n]}")
            )
        self.rows_with_error += sum(r.error is not None for r in results)
        self.usage.add(items=len(texts), wall_s=time.perf_counter() - started)
        return results

    def _predict(self, texts: list[str]) -> tuple[list[Prediction | None], dict[int, str]]:
        if not texts:  # no run: the classifier's report is still the previous batch's
            return [], {}
        try:
            return self.classifier.predict(texts), {}
        except LabellingError as exc:  # what was answered is in exc.predictions (and cached)
            return exc.predictions, exc.failures
        finally:  # what this run paid, also when it stopped early
            self.usage.absorb(self.classifier.report)


def _row(prediction: Prediction) -> RowResult:
    return RowResult(prediction.label, prediction.confidence, prediction.source)
