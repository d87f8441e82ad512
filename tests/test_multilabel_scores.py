"""Multi-label from per-label scores (promptclf.core.multilabel.Thresholded): label scoring (completions: against
the fake server) and embed (the real packaged MiniLM) give each item the labels at or above a
threshold chosen on the examples. Real data: the GoEmotions Ekman slice in tests/data."""

import pandas as pd
import pytest

from promptclf import Classifier, ConfigError
from promptclf.cli import main
from promptclf.core.labels import LabelError, LabelSet
from promptclf.core.methods import Failure, Prediction
from promptclf.core.multilabel import DEFAULT_THRESHOLD, Thresholded
from promptclf.core.usage import Usage
from promptclf.task.examples import ExampleError

from .conftest import EKMAN


def in_order(names) -> list[str]:
    return sorted(names, key=EKMAN.index)


# --- the wrapper on its own -----------------------------------------------------------------------------------


class FixedScores:
    """A method answering set scores per text (and a Failure or a score-less answer where told)."""

    cacheable = True
    identity = "fixed"

    def __init__(self, scores: dict):
        self.labels, self.scores = LabelSet.of(["a", "b", "c"]), scores

    def predict(self, texts, usage):
        usage.add(requests=len(texts))
        for i, t in enumerate(texts):
            given = self.scores[t]
            if given == "fail":
                yield i, Failure("down")
            else:
                yield i, Prediction("a", scores=given or None)


SCORES = {
    "ab": {"a": 0.45, "b": 0.40, "c": 0.15},
    "c": {"a": 0.2, "b": 0.2, "c": 0.6},
    "flat": {"a": 0.34, "b": 0.33, "c": 0.33},
    "down": "fail",
    "bare": {},
}


def test_labels_at_or_above_the_threshold_in_label_set_order_and_the_top_one_kept():
    method = Thresholded(FixedScores(SCORES), threshold=0.4)
    out = dict(method.predict(["ab", "c", "flat", "down", "bare"], Usage()))
    assert out[0].labels == ("a", "b") and out[0].label == "a;b" and out[0].scores == SCORES["ab"]
    assert out[1].labels == ("c",) and out[2].labels == ("a",)  # nothing reaches 0.4: the top label is kept
    assert out[0].confidence == pytest.approx(0.4)  # its least sure decision: b at 0.40
    assert out[3] == Failure("down") and "no per-label scores" in out[4].reason
    bare = dict(Thresholded(FixedScores(SCORES), threshold=0.4, keep_top=False).predict(["flat"], Usage()))
    assert bare[0].labels == () and bare[0].label == ""


def test_the_threshold_is_chosen_on_the_examples_and_its_cost_reported_once():
    gold = [{"text": "ab", "labels": ["b", "a"]}, {"text": "c", "labels": "c"}, {"text": "flat", "label": "a"}]
    method = Thresholded(FixedScores(SCORES), gold)
    assert method.threshold == pytest.approx(0.4)  # 0.45 would drop b; 0.5 too
    assert Thresholded(FixedScores(SCORES)).threshold == DEFAULT_THRESHOLD
    usage = Usage()
    list(method.predict(["c"], usage))
    assert usage.requests == 3 + 1  # the three examples scored to choose it, then the item
    list(method.predict(["c"], usage))
    assert usage.requests == 5
    assert method.identity != Thresholded(FixedScores(SCORES)).identity
    with pytest.raises(Exception, match="example labels of item 0"):
        Thresholded(FixedScores(SCORES), [{"text": "ab", "labels": ["a", "zzz"]}])


class CountedScores(FixedScores):
    """FixedScores that counts the texts it scores."""

    def __init__(self, scores: dict):
        super().__init__(scores)
        self.scored = 0

    def predict(self, texts, usage):
        self.scored += len(texts)
        yield from super().predict(texts, usage)


def test_the_exact_threshold_is_in_the_identity():
    """Rounded to two decimals, 0.331 and 0.334 shared cached answers that differ wherever a score lies between."""
    identity = lambda threshold: Thresholded(FixedScores(SCORES), threshold=threshold).identity  # noqa: E731
    assert identity(0.331) != identity(0.334)
    assert identity(0.5) == Thresholded(FixedScores(SCORES)).identity  # the default is 0.5: the same answers


def test_reading_the_identity_scores_nothing():
    """The identity is a cache key, read before anything is labelled: it must not score the examples. It names
    what determines the threshold (the examples), and the threshold is chosen when the first item is labelled."""
    gold = [{"text": "ab", "labels": ["b", "a"]}, {"text": "c", "labels": "c"}, {"text": "flat", "label": "a"}]
    scorer = CountedScores(SCORES)
    method = Thresholded(scorer, gold)
    identity = method.identity
    assert scorer.scored == 0
    assert identity != Thresholded(CountedScores(SCORES), gold[:2]).identity  # other examples, another threshold
    assert identity == Thresholded(CountedScores(SCORES), gold).identity
    list(method.predict(["c"], Usage()))
    assert scorer.scored == 3 + 1 and method.identity == identity


# --- embed: the packaged MiniLM on GoEmotions ------------------------------------------------------------------


@pytest.fixture(scope="module")
def embed_pair(emotions):
    default = Classifier(EKMAN, "embed", multi_label=True, cache=False, unlabeled=[])
    tuned = Classifier(EKMAN, "embed", multi_label=True, cache=False, unlabeled=[], examples=emotions["train"])
    return default, tuned


def test_embed_labels_sets_at_a_threshold_chosen_on_the_examples(embed_pair, emotions):
    default, tuned = embed_pair
    assert isinstance(tuned.method, Thresholded) and default.method.threshold == DEFAULT_THRESHOLD
    assert tuned.method.threshold != DEFAULT_THRESHOLD
    texts, gold = [r["text"] for r in emotions["train"]], [r["labels"] for r in emotions["train"]]
    assert tuned.score(texts, gold)["micro_f1"] > default.score(texts, gold)["micro_f1"]
    predictions = tuned.predict([r["text"] for r in emotions["test"]])
    assert any(len(p.labels) > 1 for p in predictions)
    for p in predictions:
        top = max(p.scores, key=p.scores.get)
        assert list(p.labels) == [n for n in EKMAN if p.scores[n] >= tuned.method.threshold or n == top]
        assert p.label == ";".join(p.labels)


def test_embed_does_not_learn_from_the_rows_that_choose_its_threshold(embed_pair, emotions):
    default, tuned = embed_pair
    assert tuned.method.method.examples == [] and tuned.method.method.identity == default.method.method.identity
    single = Classifier(EKMAN, "embed", cache=False, unlabeled=[])
    identities = {single.method.identity, default.method.identity, tuned.method.identity}
    assert len(identities) == 3


def test_cli_classify_with_embed_writes_label_sets(tmp_path, emotions):
    src, out = tmp_path / "in.csv", tmp_path / "out.csv"
    pd.DataFrame({"text": [r["text"] for r in emotions["test"][:5]]}).to_csv(src, index=False)
    code = main(
        [
            "classify",
            "--input",
            str(src),
            "--output",
            str(out),
            "--labels",
            ",".join(EKMAN),
            "--multi-label",
            "--model",
            "embed",
            "--no-cache",
        ]
    )
    assert code == 0
    for value in pd.read_csv(out, keep_default_na=False)["predicted_label"]:
        assert value and value.split(";") == in_order(value.split(";"))


# --- label scoring on a completions endpoint (the fake server favours the oracle's labels) ---------------------


@pytest.fixture
def emotion_scorer(server_factory, emotions):
    gold = {" ".join(r["text"].split()): ";".join(r["labels"]) for rows in emotions.values() for r in rows}
    server = server_factory(oracle=lambda text: gold.get(" ".join(text.split()), "neutral"))
    return f"completions:m@{server.base_url}"


def test_completions_label_sets_from_logprobs_at_a_chosen_threshold(emotion_scorer, emotions, tmp_path):
    # calibrate="none": the fake server scores the content-free prompt by the oracle's default answer (neutral),
    # which calibration would divide out
    options = dict(multi_label=True, cache=tmp_path, examples=emotions["train"][:30], calibrate="none")
    clf = Classifier(EKMAN, emotion_scorer, **options)
    assert isinstance(clf.method, Thresholded) and clf.method.method.examples == []
    rows = emotions["test"][20:40]
    assert any(len(r["labels"]) > 1 for r in rows)
    assert clf.classify([r["text"] for r in rows]) == [in_order(r["labels"]) for r in rows]
    assert clf.method.threshold != DEFAULT_THRESHOLD  # two right labels share the probability: 0.5 misses them
    again = Classifier(EKMAN, emotion_scorer, **options)
    assert again.classify([r["text"] for r in rows]) == [in_order(r["labels"]) for r in rows]
    assert again.report.cache_hits == 20 and 0 < again.report.requests < clf.report.requests  # the examples only


# --- what the examples may be ----------------------------------------------------------------------------------


def test_label_set_examples_are_refused_where_they_cannot_be_used(emotions):
    rows = emotions["train"][:4]
    with pytest.raises(ExampleError, match="example 1 must be a dict with 'text' and 'label'"):
        Classifier(EKMAN, "embed", cache=False, examples=[{"text": "a", "label": "joy"}, rows[0]])
    with pytest.raises(LabelError, match=r"'hunger' \(example 0\) is not in the label set"):
        Classifier(EKMAN, "embed", multi_label=True, cache=False, examples=[{"text": "a", "labels": "joy;hunger"}])
    with pytest.raises(ConfigError, match="chat model's demonstrations take one 'label'"):
        Classifier(EKMAN, "openai-compatible:m@http://127.0.0.1:9/v1", multi_label=True, cache=False, examples=rows)


def test_a_joined_or_listed_label_is_a_label_set_example(emotion_scorer):
    """Under multi_label a row's `label` may hold a set too, as one column of a file does: names joined by ';'."""
    given = [
        {"text": "a", "label": "joy;anger"},
        {"text": "b", "label": ["fear", "joy"]},
        {"text": "c", "label": "joy"},
    ]
    clf = Classifier(EKMAN, emotion_scorer, multi_label=True, cache=False, examples=given)
    assert clf.method.gold_rows == [("a", ["anger", "joy"]), ("b", ["fear", "joy"]), ("c", ["joy"])]


@pytest.mark.parametrize("suffix", [".csv", ".jsonl", ".parquet"])
def test_cli_multi_label_examples_from_a_joined_or_listed_label_column(emotion_scorer, emotions, tmp_path, suffix):
    """--examples under --multi-label: a CSV column of names joined by ';', a JSONL or Parquet column of lists.
    The sets reach the threshold's choice as sets: the server puts its probability on all of an item's labels, so
    only a threshold chosen on the multi-label rows finds them (0.5 gives one label each)."""
    rows = emotions["train"][:30]
    column = [";".join(r["labels"]) if suffix == ".csv" else r["labels"] for r in rows]
    frame = pd.DataFrame({"text": [r["text"] for r in rows], "emotions": column})
    examples = tmp_path / f"examples{suffix}"
    {
        ".csv": lambda: frame.to_csv(examples, index=False),
        ".jsonl": lambda: frame.to_json(examples, orient="records", lines=True),
        ".parquet": lambda: frame.to_parquet(examples),
    }[suffix]()
    test = [r for r in emotions["test"][20:40]]
    src, out = tmp_path / "in.csv", tmp_path / "out.csv"
    pd.DataFrame({"text": [r["text"] for r in test]}).to_csv(src, index=False)
    code = main(
        [
            "classify",
            "--input",
            str(src),
            "--output",
            str(out),
            "--labels",
            ",".join(EKMAN),
            "--multi-label",
            "--model",
            emotion_scorer,
            "--calibrate",
            "none",
            "--no-cache",
            "--examples",
            str(examples),
            "--examples-label-column",
            "emotions",
        ]
    )
    assert code == 0
    written = pd.read_csv(out, keep_default_na=False)["predicted_label"]
    assert [v.split(";") for v in written] == [in_order(r["labels"]) for r in test]


@pytest.mark.slow  # loads the embedded Gemma (about a minute on 2 cores)
def test_the_embedded_model_labels_sets_at_a_threshold_chosen_on_the_examples(emotions):
    clf = Classifier(EKMAN, "local", multi_label=True, cache=False, examples=emotions["train"][:16])
    assert isinstance(clf.method, Thresholded) and clf.method.method.examples == []
    assert clf.method.method.identity == Classifier(EKMAN, "local", cache=False).method.identity  # zero-shot
    predictions = clf.predict([r["text"] for r in emotions["test"][:8]])
    assert 0.05 <= clf.method.threshold <= 0.95 and clf.report.compute_s > 0
    for p in predictions:
        top = max(p.scores, key=p.scores.get)
        assert list(p.labels) == [n for n in EKMAN if p.scores[n] >= clf.method.threshold or n == top]
