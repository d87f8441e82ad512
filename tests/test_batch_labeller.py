"""The framework-neutral batch labeller: a pandas or Arrow batch in, the batch plus predicted_label,
confidence, source and a per-row error out. On the scripted fake chat model (tests/conftest.py)."""

import pandas as pd
import pyarrow as pa
import pytest

from promptclf.workflows.batch_labeller import OUTPUT_COLUMNS, BatchLabeller

from .conftest import scripted_classifier

LABELS = ["World", "Sports", "Business", "Sci/Tech"]


def make(scripted_model, cache_dir, faults=(), **kw):
    clf, model = scripted_classifier(scripted_model, cache_dir, faults, **{"batch_size": 4, **kw})
    return BatchLabeller(clf, text_column="text"), model


def test_bad_rows_get_an_error_and_the_rest_are_labelled(scripted_model, cache_dir, sample_rows):
    labeller, model = make(scripted_model, cache_dir)
    texts = [r["text"] for r in sample_rows[:6]]
    frame = pd.DataFrame(
        {"id": [10, 11, 12, 13, 14, 15, 16], "text": texts[:3] + ["   ", None] + texts[3:5]}, index=range(100, 107)
    )
    out = labeller(frame)
    assert list(out.columns) == ["id", "text", *OUTPUT_COLUMNS]
    assert list(out.index) == list(range(100, 107)) and list(out["id"]) == list(frame["id"])
    gold = [r["label"] for r in sample_rows[:5]]
    assert list(out["predicted_label"].iloc[[0, 1, 2, 5, 6]]) == gold
    assert list(out["source"].iloc[[0, 1, 2, 5, 6]]) == ["api"] * 5
    assert out["error"].iloc[[0, 1, 2, 5, 6]].isna().all()
    for row in (3, 4):  # whitespace, and a missing value (read as empty, as the CLI reads it)
        assert out["error"].iloc[row].startswith("bad input: empty or whitespace-only")
        assert pd.isna(out["predicted_label"].iloc[row]) and pd.isna(out["source"].iloc[row])
    assert out["confidence"].dtype == "float64"
    assert sum(model.batch_sizes) == 5  # the bad rows were never sent


def test_a_value_that_is_not_a_string_is_named(scripted_model, cache_dir, sample_rows):
    labeller, _ = make(scripted_model, cache_dir)
    results = labeller.label([sample_rows[0]["text"], 42])
    assert results[0].predicted_label == sample_rows[0]["label"] and results[0].error is None
    assert results[1].error == "bad input: int (42), not a string" and results[1].predicted_label is None


def test_an_item_never_answered_is_an_error_on_its_row_only(scripted_model, cache_dir, sample_rows):
    labeller, _ = make(
        scripted_model, cache_dir, faults=["offlabel"] * 3, batch_size=1, max_reasks=2
    )  # 1 ask + 2 re-asks
    rows = sample_rows[:3]
    out = labeller(pd.DataFrame({"text": [r["text"] for r in rows]}))
    assert out["error"].iloc[0].startswith("not labelled:") and "Weather" in out["error"].iloc[0]
    assert pd.isna(out["predicted_label"].iloc[0])
    assert list(out["predicted_label"].iloc[1:]) == [r["label"] for r in rows[1:]]
    assert labeller.usage.failed == 1


def test_skip_empty_rows_are_marked_skipped(scripted_model, cache_dir, sample_rows):
    labeller, _ = make(scripted_model, cache_dir, skip_empty=True)
    out = labeller(pd.DataFrame({"text": ["", sample_rows[0]["text"]]}))
    assert list(out["source"]) == ["skipped", "api"] and out["error"].isna().all()


def test_arrow_batches_come_back_as_arrow_with_the_same_answers(scripted_model, cache_dir, sample_rows):
    labeller, model = make(scripted_model, cache_dir)
    rows = sample_rows[:5]
    table = pa.table({"text": [r["text"] for r in rows] + [""], "n": list(range(6))})
    out = labeller(table)
    assert isinstance(out, pa.Table) and out.column_names == ["text", "n", *OUTPUT_COLUMNS]
    assert out.column("predicted_label").to_pylist() == [r["label"] for r in rows] + [None]
    assert out.column("error").to_pylist()[5].startswith("bad input: empty")
    again = labeller(table)
    assert again.column("source").to_pylist() == ["cache"] * 5 + [None]
    assert model.calls == 2  # 5 items at 4 per request, once; the second batch came from the cache


def test_usage_adds_up_over_batches(scripted_model, cache_dir, sample_rows):
    labeller, model = make(scripted_model, cache_dir)
    for chunk in (sample_rows[:4], sample_rows[4:8]):
        labeller(pd.DataFrame({"text": [r["text"] for r in chunk]}))
    assert labeller.usage.items == 8 and labeller.usage.requests == model.calls == 2
    assert labeller.usage.prompt_tokens > 0


def test_a_missing_text_column_is_named(scripted_model, cache_dir):
    labeller, _ = make(scripted_model, cache_dir)
    with pytest.raises(KeyError, match="body"):
        BatchLabeller(labeller.classifier, text_column="body")(pd.DataFrame({"text": ["a"]}))
    with pytest.raises(KeyError, match="body"):
        BatchLabeller(labeller.classifier, text_column="body")(pa.table({"text": ["a"]}))


def test_usage_equals_the_servers_count_when_a_batch_has_nothing_to_label(server_factory, cache_dir, sample_rows):
    from promptclf import Classifier

    server = server_factory()
    prices = {"openai-compatible:gpt-test": (1.0, 2.0)}
    clf = Classifier(
        LABELS,
        f"openai-compatible:gpt-test@{server.base_url}",
        cache=cache_dir,
        batch_size=4,
        skip_empty=True,
        prices=prices,
    )
    labeller = BatchLabeller(clf)
    labeller(pd.DataFrame({"text": [r["text"] for r in sample_rows[:6]]}))
    labeller(pd.DataFrame({"text": ["", "  "]}))  # nothing to label: skipped rows
    labeller.label([42])  # nothing to label: a bad row
    usage = labeller.usage
    assert server.log.chat_requests == 2 and server.log.prompt_tokens > 0
    assert (usage.requests, usage.prompt_tokens, usage.completion_tokens) == (
        server.log.chat_requests,
        server.log.prompt_tokens,
        server.log.completion_tokens,
    )
    assert usage.cost_usd == pytest.approx((server.log.prompt_tokens + 2 * server.log.completion_tokens) / 1e6)
    assert usage.items == 9 and labeller.rows_with_error == 1
