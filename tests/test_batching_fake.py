"""Batching, re-asking, caching and input handling, on a fake chat model built on LangChain's
GenericFakeChatModel (tests/conftest.py: ScriptedChatModel). No network, no real model."""

import logging
from collections.abc import Sequence

import pytest

from promptclf import InputError, LabellingError, classify
from promptclf.core.labels import LabelError, LabelSet
from promptclf.core.usage import Usage
from promptclf.task.prompts import defuse

from .conftest import scripted_classifier

LABELS = ["World", "Sports", "Business", "Sci/Tech"]


make = scripted_classifier


def test_batches_are_answered_in_input_order(scripted_model, cache_dir, sample_rows):
    clf, model = make(scripted_model, cache_dir)
    rows = sample_rows[:23]
    preds = clf.predict([r["text"] for r in rows])
    assert [p.label for p in preds] == [r["label"] for r in rows]
    assert model.batch_sizes == [5, 5, 5, 5, 3]
    assert clf.report.requests == 5 and clf.report.prompt_tokens > 0
    assert {p.source for p in preds} == {"api"}


def test_missing_answer_is_reasked_not_shifted(scripted_model, cache_dir, sample_rows):
    clf, model = make(scripted_model, cache_dir, faults=["drop"])
    rows = sample_rows[:5]
    assert clf.classify([r["text"] for r in rows]) == [r["label"] for r in rows]
    assert model.batch_sizes == [5, 1]  # the one dropped item, asked alone
    assert clf.report.reasks == 1


def test_unparseable_batch_is_asked_again_then_in_halves(scripted_model, cache_dir, sample_rows):
    clf, model = make(scripted_model, cache_dir, faults=["garbage", "garbage"])
    rows = sample_rows[:4]
    assert clf.classify([r["text"] for r in rows]) == [r["label"] for r in rows]
    assert model.batch_sizes == [4, 4, 2, 2]  # the whole batch once more, then halves: 3 asks at most


def test_an_item_is_asked_three_times_at_most_with_max_reasks_2(scripted_model, cache_dir, sample_rows):
    clf, model = make(scripted_model, cache_dir, faults=["garbage"] * 3, max_reasks=2)
    rows = sample_rows[:4]
    predictions = clf.predict([r["text"] for r in rows], errors="keep")
    assert model.batch_sizes == [4, 4, 2, 2]
    assert [p.label for p in predictions[2:]] == [r["label"] for r in rows[2:]]
    assert [p.error for p in predictions[:2]] == [
        "no answer after 3 asks: response is not valid JSON of the batch schema"
    ] * 2


def test_a_server_answering_garbage_costs_at_most_about_twice_the_requests(scripted_model, cache_dir, sample_rows):
    """Before: halving down to single items and re-asking those, 39 requests for 10 items."""
    clf, model = make(scripted_model, cache_dir, faults=["garbage"] * 1000, batch_size=10, breaker_after=0)
    predictions = clf.predict([r["text"] for r in sample_rows[:100]], errors="keep")
    assert all(p.label is None and p.error.startswith("no answer after") for p in predictions)
    assert len(model.batch_sizes) <= 2 * 10 + 16  # 10 first requests, re-asks at most as many plus 16
    assert clf.report.failed == 100 and clf.report.failed_requests == len(model.batch_sizes)


def test_the_breaker_stops_a_run_whose_requests_all_fail_and_keeps_every_row(scripted_model, cache_dir, sample_rows):
    clf, model = make(scripted_model, cache_dir, faults=["garbage"] * 1000, batch_size=1, breaker_after=5)
    texts = [r["text"] for r in sample_rows[:50]]
    predictions = clf.predict(texts, errors="keep")
    assert len(predictions) == 50 and len(model.batch_sizes) == 5
    assert clf.stopped.startswith("5 requests in a row failed (last: response is not valid JSON")
    assert predictions[0].error.startswith("no answer after")
    assert all(p.error.startswith("not asked: run stopped (5 requests in a row failed") for p in predictions[5:])
    with pytest.raises(LabellingError, match="50 of 50 items could not be labelled"):
        make(scripted_model, cache_dir, faults=["garbage"] * 1000, batch_size=1, breaker_after=5)[0].predict(texts)


def test_aliases_are_repaired_and_off_label_answers_reasked(scripted_model, cache_dir, sample_rows):
    clf, model = make(
        scripted_model, cache_dir, faults=["alias", "offlabel"], aliases={"Sci/Tech": ["science/technology"]}
    )
    rows = sample_rows[:10]
    assert clf.classify([r["text"] for r in rows]) == [r["label"] for r in rows]
    assert clf.report.repaired > 0 and clf.report.reasks == 1


def test_an_item_that_is_never_answered_is_reported_by_position(scripted_model, cache_dir, sample_rows):
    clf, _ = make(scripted_model, cache_dir, faults=["offlabel"] * 3, batch_size=1, max_reasks=2)  # 1 ask + 2
    texts = [sample_rows[0]["text"], sample_rows[1]["text"]]
    with pytest.raises(LabellingError, match=r"1 of 2 items could not be labelled: item 0 .*Weather") as err:
        clf.predict(texts)
    assert list(err.value.failures) == [0]
    assert err.value.predictions[1].label == sample_rows[1]["label"]


def test_rerun_is_served_from_cache_with_zero_calls(scripted_model, cache_dir, sample_rows):
    texts = [r["text"] for r in sample_rows[:12]]
    clf, model = make(scripted_model, cache_dir)
    first = clf.classify(texts)
    again, model2 = make(scripted_model, cache_dir)
    preds = again.predict(texts)
    assert [p.label for p in preds] == first
    assert model2.calls == 0 and again.report.cache_hits == 12
    assert {p.source for p in preds} == {"cache"}


def test_interrupted_run_resumes_without_paying_again(scripted_model, cache_dir, sample_rows):
    texts = [r["text"] for r in sample_rows[:15]]
    clf, model = make(scripted_model, cache_dir, faults=[None, None, "raise"])
    with pytest.raises(KeyboardInterrupt):
        clf.classify(texts)
    assert model.calls == 3
    resumed, model2 = make(scripted_model, cache_dir)
    assert resumed.classify(texts) == [r["label"] for r in sample_rows[:15]]
    assert model2.calls == 1 and resumed.report.cache_hits == 10


def test_duplicate_texts_are_answered_once(scripted_model, cache_dir, sample_rows):
    clf, model = make(scripted_model, cache_dir)
    text = sample_rows[0]["text"]
    assert clf.classify([text, text, text]) == [sample_rows[0]["label"]] * 3
    assert model.batch_sizes == [1]


def test_bad_input_is_named(scripted_model, cache_dir):
    clf, _ = make(scripted_model, cache_dir)
    with pytest.raises(InputError, match="item 1 is empty"):
        clf.classify(["fine", "   "])
    with pytest.raises(InputError, match="item 2 is NoneType"):
        clf.classify(["a", "b", None])
    with pytest.raises(InputError, match="not one string"):
        clf.classify("a single string")
    assert classify([], labels=LABELS) == []


def test_skip_empty_returns_none_for_those_items(scripted_model, cache_dir, sample_rows):
    clf, _ = make(scripted_model, cache_dir, skip_empty=True)
    assert clf.classify(["", sample_rows[0]["text"]]) == [None, sample_rows[0]["label"]]


def test_long_items_are_truncated_with_a_warning_or_refused(scripted_model, cache_dir, caplog):
    clf, model = make(scripted_model, cache_dir, max_item_tokens=10)
    with caplog.at_level(logging.WARNING, logger="promptclf"):
        clf.classify(["word " * 100])
    assert "item 0 is longer than 10 tokens" in caplog.text
    strict, _ = make(scripted_model, cache_dir, max_item_tokens=10, truncate="error")
    with pytest.raises(InputError, match="item 0 is longer"):
        strict.classify(["word " * 100])


def test_examples_with_a_label_outside_the_set_are_refused(scripted_model, cache_dir):
    with pytest.raises(LabelError, match=r"'Weather' \(example 1\) is not in the label set"):
        make(scripted_model, cache_dir, examples=[{"text": "a", "label": "World"}, {"text": "b", "label": "Weather"}])


def test_per_class_examples_are_sampled_with_the_seed(scripted_model, cache_dir, sample_rows):
    pool = sample_rows[:80]
    a, _ = make(scripted_model, cache_dir, examples=pool, example_selection="per-class", k=2, seed=1)
    b, _ = make(scripted_model, cache_dir, examples=pool, example_selection="per-class", k=2, seed=1)
    c, _ = make(scripted_model, cache_dir, examples=pool, example_selection="per-class", k=2, seed=2)
    shown = a.method.prompt.variables["examples"]
    assert len(shown) == 8 and sorted(e["label"] for e in shown).count("Sports") == 2
    assert a.method.identity == b.method.identity != c.method.identity


def test_classifier_composes_as_a_langchain_runnable(scripted_model, cache_dir, sample_rows):
    from langchain_core.runnables import RunnableLambda

    clf, _ = make(scripted_model, cache_dir)
    chain = RunnableLambda(lambda rows: [r["text"] for r in rows]) | clf.as_runnable()
    assert chain.invoke(sample_rows[:3]) == [r["label"] for r in sample_rows[:3]]


def test_similar_examples_reach_a_chat_models_request(scripted_model, cache_dir, sample_rows):
    pool, items = sample_rows[:60], [r["text"] for r in sample_rows[60:64]]
    clf, model = make(scripted_model, cache_dir, examples=pool, example_selection="similar", k=2)
    clf.classify(items)
    chosen = clf.method.example_selector.select(items)
    (prompt,) = model.prompts
    assert chosen and prompt.count("<example>") == len(chosen)
    assert all(defuse(e["text"]) in prompt for e in chosen)


def test_negative_examples_and_label_descriptions_reach_the_request(scripted_model, cache_dir, sample_rows):
    negative = [{"text": "Stocks rally after the match", "label": "Sports"}]
    clf, model = make(
        scripted_model,
        cache_dir,
        negative_examples=negative,
        descriptions={"Sci/Tech": "science, technology and the internet"},
    )
    assert clf.classify([sample_rows[0]["text"]]) == [sample_rows[0]["label"]]
    (prompt,) = model.prompts
    assert "- Sci/Tech: science, technology and the internet" in prompt
    assert "Stocks rally after the match\n</example>\nNot: Sports" in prompt


class CountedTexts(Sequence):
    """A list that counts how many items are read from it."""

    def __init__(self, texts):
        self.texts, self.reads = list(texts), 0

    def __len__(self):
        return len(self.texts)

    def __getitem__(self, i):
        self.reads += len(self.texts[i]) if isinstance(i, slice) else 1
        return self.texts[i]


def test_chunks_are_built_in_one_pass_over_the_items(scripted_model):
    from promptclf.methods.chat import ChatLabeler
    from promptclf.task.prompts import ChatPrompt

    labels = LabelSet.of(LABELS)
    labeler = ChatLabeler(
        scripted_model(), labels, ChatPrompt.build(labels), model_id="fake", batch_size=2, concurrency=1
    )
    texts = CountedTexts(f"item {n}" for n in range(300))
    assert len(list(labeler.predict(texts, Usage()))) == 300
    assert texts.reads <= 2 * len(texts), texts.reads  # was once per chunk: 150 x 300
