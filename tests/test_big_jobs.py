"""Big jobs: streaming in bounded windows, every row in the output (failures as rows), the circuit breaker, and
cache faults that degrade the run instead of ending it."""

from __future__ import annotations

import logging
import sqlite3

import pytest

from promptclf import Classifier
from promptclf.cache.store import SQLITE_FILE, SQLiteCache

from .conftest import scripted_classifier

LABELS = ["World", "Sports", "Business", "Sci/Tech"]


def test_stream_takes_a_generator_and_yields_in_order_a_window_at_a_time(scripted_model, cache_dir, sample_rows):
    clf, model = scripted_classifier(scripted_model, cache_dir, window=7)
    rows = sample_rows[:23]
    taken = []

    def texts():
        for row in rows:
            taken.append(row)
            yield row["text"]

    stream = clf.stream(texts())
    first = next(stream)
    assert len(taken) == 7  # one window read, not the whole input
    rest = list(stream)
    assert [p.label for p in [first, *rest]] == [r["label"] for r in rows]
    assert model.batch_sizes == [5, 2] * 3 + [2]  # each window's rows in batches of 5
    assert clf.report.items == 23


def test_duplicates_are_asked_once_in_a_window_and_from_the_cache_across_windows(scripted_model, cache_dir,
                                                                                   sample_rows):
    clf, model = scripted_classifier(scripted_model, cache_dir, window=4)
    a, b, c = (r["text"] for r in sample_rows[:3])
    predictions = list(clf.stream([a, b, a, a, a, c, b, b]))
    assert [p.label for p in predictions] == [sample_rows[i]["label"] for i in (0, 1, 0, 0, 0, 2, 1, 1)]
    assert sum(model.batch_sizes) == 3 and clf.report.cache_hits == 2


def test_bad_items_in_a_stream_become_error_rows(scripted_model, cache_dir, sample_rows):
    clf, _ = scripted_classifier(scripted_model, cache_dir)
    predictions = list(clf.stream([sample_rows[0]["text"], "  ", 7]))
    assert predictions[0].label == sample_rows[0]["label"]
    assert predictions[1].label is None and predictions[1].error.startswith("input: empty or whitespace-only")
    assert predictions[2].error.startswith("input: int (7), not a string")
    assert clf.report.failed == 2


def test_predict_keep_returns_every_row_with_its_error(scripted_model, cache_dir, sample_rows):
    clf, _ = scripted_classifier(scripted_model, cache_dir, faults=["offlabel"] * 3, batch_size=1)
    predictions = clf.predict([sample_rows[0]["text"], sample_rows[1]["text"]], errors="keep")
    assert predictions[0].label is None and predictions[0].source == "failed"
    assert predictions[0].error.startswith("no answer after 3 asks: answer")
    assert predictions[1].label == sample_rows[1]["label"] and predictions[1].error is None
    with pytest.raises(ValueError, match="errors='drop'"):
        clf.predict([sample_rows[0]["text"]], errors="drop")


def test_a_method_that_drops_an_item_is_a_bug_not_a_silent_gap(cache_dir):
    from promptclf.core.labels import LabelSet
    from promptclf.core.methods import Prediction

    class Forgetful:
        labels, identity, cacheable = LabelSet.of(LABELS), "forgetful", False

        def predict(self, texts, usage):
            yield from ((i, Prediction("World")) for i in range(len(texts) - 1))

    with pytest.raises(RuntimeError, match="Forgetful gave no outcome for 1 of 2 items"):
        Classifier(LABELS, method=Forgetful(), cache=False).predict(["a", "b"])


# --- cache faults --------------------------------------------------------------------------------------------

def test_a_corrupt_cache_file_is_moved_aside_and_the_run_goes_on(scripted_model, tmp_path, sample_rows, caplog):
    directory = tmp_path / "answers"
    directory.mkdir()
    (directory / SQLITE_FILE).write_bytes(b"this is not an SQLite database" * 100)
    with caplog.at_level(logging.WARNING, logger="promptclf"):
        clf, _ = scripted_classifier(scripted_model, directory)
        assert clf.classify([sample_rows[0]["text"]]) == [sample_rows[0]["label"]]
    aside = [p.name for p in directory.iterdir() if ".corrupt-" in p.name]
    assert len(aside) == 1 and (directory / aside[0]).read_bytes().startswith(b"this is not")
    assert "damaged" in caplog.text and len(SQLiteCache(directory)) == 1  # the new file has the answer


def test_a_cache_that_cannot_be_created_is_a_warning_and_no_cache(scripted_model, tmp_path, sample_rows, caplog,
                                                                    monkeypatch):
    from pathlib import Path

    real_mkdir = Path.mkdir

    def refuse(self, *args, **kwargs):  # the tests run as root, whom a read-only directory does not stop
        if self.name == "answers":
            raise PermissionError(13, "Permission denied", str(self))
        return real_mkdir(self, *args, **kwargs)

    monkeypatch.setattr(Path, "mkdir", refuse)
    with caplog.at_level(logging.WARNING, logger="promptclf"):
        clf, _ = scripted_classifier(scripted_model, tmp_path / "ro" / "answers")
        assert clf.cache is None
        assert clf.classify([sample_rows[0]["text"]]) == [sample_rows[0]["label"]]
    assert "cannot be opened (PermissionError" in caplog.text


@pytest.mark.parametrize("message", ["database or disk is full", "attempt to write a readonly database",
                                     "database is locked"])
def test_a_cache_that_fails_mid_run_warns_once_and_every_answer_reaches_the_output(
        scripted_model, cache_dir, sample_rows, caplog, monkeypatch, message):
    def fail(self, mapping):
        raise sqlite3.OperationalError(message)

    monkeypatch.setattr(SQLiteCache, "set_many", fail)
    clf, model = scripted_classifier(scripted_model, cache_dir, window=5)
    rows = sample_rows[:20]
    with caplog.at_level(logging.WARNING, logger="promptclf"):
        assert clf.classify([r["text"] for r in rows]) == [r["label"] for r in rows]
    assert caplog.text.count("going on without it") == 1 and message in caplog.text
    assert sum(model.batch_sizes) == 20
