"""Multi-label tasks (promptclf/multilabel.py): label sets from chat models (the fake server answers arrays),
re-asks and repairs, the cache, metrics, the methods that refuse, and the CLI. Real data: a slice of
GoEmotions (Ekman's 7 labels; tests/data/goemotions_ekman_sample.csv, from ../shared/data/goemotions)."""

import json
from pathlib import Path

import pandas as pd
import pytest

from promptclf import Classifier, ConfigError, LabellingError, Task, classify
from promptclf.cli import main
from promptclf.core.labels import LabelSet
from promptclf.core.metrics import multilabel_metrics
from promptclf.core.multilabel import check_label_sets, choose_threshold, split_labels
from promptclf.core.usage import Usage
from promptclf.task.schemas import read_batch

from .conftest import EKMAN
from .fake_openai_server import noisy_oracle


@pytest.fixture
def emotion_server(server_factory, emotions):
    gold = {" ".join(r["text"].split()): ";".join(r["labels"]) for rows in emotions.values() for r in rows}

    def make(**config):
        config.setdefault("oracle", lambda text: gold.get(" ".join(text.split()), "neutral"))
        return server_factory(**config)

    return make


def noisy_sets(emotions, error_rate: float, seed: int):
    """A simulated model of known error: the gold set, or for a seeded share of items one other label (which may
    be in the gold set: half right)."""
    gold = {" ".join(r["text"].split()): ";".join(r["labels"]) for rows in emotions.values() for r in rows}
    return noisy_oracle(lambda text: gold.get(" ".join(text.split()), "neutral"), EKMAN, error_rate, seed)


def metrics_of(answer, rows) -> dict:
    """The multi-label metrics of a simulated model's answers on rows: what a run against it must report."""
    return multilabel_metrics([r["labels"] for r in rows], [split_labels(answer(r["text"])) for r in rows], EKMAN)


def chat(server) -> str:
    return f"openai-compatible:gpt-test@{server.base_url}"


def task() -> Task:
    return Task.of(EKMAN, multi_label=True)


# --- chat models ----------------------------------------------------------------------------------------------


def test_a_multi_label_task_gets_each_items_label_set_from_a_chat_model(emotion_server, emotions):
    rows = emotions["test"][25:50]
    assert any(len(r["labels"]) > 1 for r in rows)
    clf = Classifier(task(), chat(emotion_server()), cache=False, batch_size=6)
    assert clf.classify([r["text"] for r in rows]) == [sorted(r["labels"], key=EKMAN.index) for r in rows]
    predictions = clf.predict([rows[0]["text"]])
    assert predictions[0].labels == tuple(sorted(rows[0]["labels"], key=EKMAN.index))
    assert predictions[0].label == ";".join(predictions[0].labels)


@pytest.mark.parametrize("structured", ["json_schema", "function_calling", "parser"])
def test_every_structured_mode_asks_for_an_array_of_labels_from_the_set(emotion_server, emotions, structured):
    server = emotion_server()
    rows = emotions["test"][:5]
    clf = Classifier(task(), chat(server), cache=False, structured=structured)
    assert clf.classify([r["text"] for r in rows]) == [sorted(r["labels"], key=EKMAN.index) for r in rows]
    body = json.dumps(server.log.bodies[-1]) if server.log.bodies else ""
    if structured == "json_schema":
        assert '"labels"' in body and '"type": "array"' in body and '"surprise"' in body


def test_faulty_answers_are_reasked_and_never_shifted(emotion_server, emotions):
    rows = emotions["test"][:30]
    server = emotion_server(
        fault_rate=0.3, faults=("short", "duplicate", "offlabel", "malformed", "zero_based", "shifted"), seed=3
    )
    clf = Classifier(task(), chat(server), cache=False, batch_size=5, concurrency=1, max_attempts=2)
    assert clf.classify([r["text"] for r in rows]) == [sorted(r["labels"], key=EKMAN.index) for r in rows]
    assert clf.report.reasks > 0 and sum(server.log.faults.values()) > 0


def test_a_label_off_the_set_fails_the_item_when_it_is_never_repaired(emotion_server, emotions):
    text = emotions["test"][0]["text"]
    server = emotion_server(oracle=lambda t: ["joy", "Weather"])
    with pytest.raises(LabellingError, match="item 0 .*'Weather' is not in the label set"):
        Classifier(task(), chat(server), cache=False, batch_size=1).predict([text])


def test_aliases_are_repaired_and_an_empty_set_is_an_answer(emotion_server, emotions):
    texts = [r["text"] for r in emotions["test"][:4]]
    aliased = Task.of(EKMAN, aliases={"joy": ["happiness"]}, multi_label=True)
    server = emotion_server(oracle=lambda t: ["happiness", "joy", "anger"] if t == texts[0] else [])
    clf = Classifier(aliased, chat(server), cache=False)
    assert clf.classify(texts) == [["anger", "joy"], [], [], []]
    assert clf.report.repaired == 1


def test_label_sets_are_cached_and_kept_apart_from_single_label_answers(emotion_server, emotions, tmp_path):
    texts = [r["text"] for r in emotions["test"][:6]]
    server = emotion_server()
    first = Classifier(task(), chat(server), cache=tmp_path)
    labelled = first.classify(texts)
    again = Classifier(task(), chat(server), cache=tmp_path)
    assert again.classify(texts) == labelled and again.report.cache_hits == 6 and again.report.requests == 0
    single = Classifier(EKMAN, chat(server), cache=tmp_path)
    assert single.method.identity != first.method.identity
    assert "|multi-label" not in single.method.identity and single.options["multi_label"] is False


def test_the_keyword_form_and_the_task_file_are_the_same_multi_label_classifier(emotion_server, tmp_path):
    server = emotion_server()
    path = task().save(tmp_path / "task.yaml")
    assert "multi_label: true" in path.read_text()
    by_task = Classifier(path, chat(server), cache=False)
    by_keyword = Classifier(EKMAN, chat(server), cache=False, multi_label=True)
    assert by_task.multi_label and by_task.method.identity == by_keyword.method.identity


def test_classify_returns_a_list_of_labels_per_text(emotion_server, emotions):
    rows = emotions["test"][:3]
    out = classify([r["text"] for r in rows], labels=task(), model=chat(emotion_server()), cache=False)
    assert out == [sorted(r["labels"], key=EKMAN.index) for r in rows]


# --- what cannot take it --------------------------------------------------------------------------------------


def test_a_cascade_refuses_a_multi_label_task(emotion_server):
    with pytest.raises(ConfigError, match="cascade.*multi-label"):
        Classifier(task(), chat(emotion_server()), cache=False, cascade_from="offline", cascade_below=0.5)


def test_a_label_name_with_the_separator_is_refused_for_a_multi_label_task(tmp_path):
    """Label sets are written and read joined by ';': a name holding one would come back as two labels."""
    from promptclf.methods.baselines import TfidfLR
    from promptclf.workflows.compare import compare

    labels = ["joy", "anger;rage", "fear"]
    with pytest.raises(ConfigError, match="'anger;rage'.*';'"):
        Classifier(labels, "openai-compatible:m@http://127.0.0.1:9/v1", multi_label=True, cache=False)
    with pytest.raises(ConfigError, match="'anger;rage'"):
        Classifier(Task.of(labels, multi_label=True), "embed", cache=False)
    rows = [{"text": f"text {i}", "labels": [labels[i % 3]]} for i in range(12)]
    with pytest.raises(ConfigError, match="'anger;rage'"):
        compare(rows, labels, methods=["tfidf-lr"], split=(6, 0, 6), out=tmp_path, multi_label=True)
    with pytest.raises(ConfigError, match="'anger;rage'"):
        TfidfLR(labels).fit([r["text"] for r in rows], [r["labels"] for r in rows])
    single = Classifier(labels, "openai-compatible:m@http://127.0.0.1:9/v1", cache=False)  # one label: no joining
    assert single.labels.names == labels


# --- reading answers and gold labels -------------------------------------------------------------------------


def test_read_batch_reads_label_sets_by_id():
    labels = LabelSet.of(["a", "b", "c"], aliases={"c": ["see"]})
    payload = {
        "answers": [
            {"index": 7, "labels": ["see", "a", "a"]},
            {"index": 9, "labels": []},
            {"index": 8, "labels": ["zzz"]},
        ]
    }
    result = read_batch(payload, labels, [7, 8, 9], multi_label=True)
    assert result.labels == {7: ("a", "c"), 9: ()} and "'zzz'" in result.failed[8] and result.repaired == 1
    single = read_batch({"answers": [{"index": 7, "label": "a"}]}, labels, [7], multi_label=True)
    assert single.failed == {7: "response is not valid JSON of the batch schema"}


def test_gold_label_sets_are_checked_and_named_by_item():
    labels = LabelSet.of(EKMAN)
    assert split_labels("joy; neutral") == ["joy", "neutral"] and split_labels("") == []
    assert check_label_sets(["neutral;joy", ["fear"], ""], labels) == [["joy", "neutral"], ["fear"], []]
    with pytest.raises(Exception, match="gold labels of item 1"):
        check_label_sets(["joy", "joy;hunger"], labels)


def test_multi_label_metrics_by_hand():
    gold = [["a"], ["a", "b"], ["b"], []]
    predicted = [["a"], ["a"], ["a", "b"], None]
    m = multilabel_metrics(gold, predicted, ["a", "b"])
    # decisions (a, b): (1,0)=(1,0); (1,1) vs (1,0); (0,1) vs (1,1); (0,0)=(0,0): 2 wrong of 8
    assert m["hamming_loss"] == pytest.approx(2 / 8)
    assert m["subset_accuracy"] == m["accuracy"] == pytest.approx(2 / 4)
    # a: tp 2, fp 1, fn 0 -> F1 0.8; b: tp 1, fp 0, fn 1 -> F1 2/3; micro: tp 3, fp 1, fn 1 -> 0.75
    assert m["per_class_f1"] == pytest.approx({"a": 0.8, "b": 2 / 3})
    assert m["macro_f1"] == pytest.approx((0.8 + 2 / 3) / 2) and m["micro_f1"] == pytest.approx(0.75)


def test_the_threshold_is_chosen_for_micro_f1_on_the_rows():
    import numpy as np

    probs = np.array([[0.3, 0.1], [0.35, 0.2], [0.1, 0.32]])
    gold = np.array([[1, 0], [1, 0], [0, 1]])
    assert 0.2 <= choose_threshold(probs, gold) <= 0.3  # 0.5 would give none of them
    assert choose_threshold(np.array([[0.9, 0.1]]), np.array([[1, 0]])) == 0.5  # ties go to 0.5


def test_score_reports_the_multi_label_metrics(emotion_server, emotions):
    rows = emotions["test"][:12]
    clf = Classifier(task(), chat(emotion_server()), cache=False)
    metrics = clf.score([r["text"] for r in rows], [";".join(r["labels"]) for r in rows])
    assert metrics["micro_f1"] == metrics["subset_accuracy"] == 1.0  # the server answers the gold sets
    present = {name for r in rows for name in r["labels"]}  # a label no item has, nor is given, scores F1 0
    assert metrics["macro_f1"] == pytest.approx(len(present) / len(EKMAN)) and len(present) < len(EKMAN)
    assert metrics["hamming_loss"] == 0.0 and metrics["n"] == 12
    answer = noisy_sets(emotions, 0.4, seed=11)  # wrong on about 40% of items: the scores are its own
    noisy = Classifier(task(), chat(emotion_server(oracle=answer)), cache=False)
    measured = noisy.score([r["text"] for r in rows], [";".join(r["labels"]) for r in rows])
    expected = metrics_of(answer, rows)
    for name in ("micro_f1", "macro_f1", "subset_accuracy", "hamming_loss"):
        assert measured[name] == pytest.approx(expected[name]), name
    assert 0 < measured["subset_accuracy"] < 1


# --- the command line ----------------------------------------------------------------------------------------


def test_cli_classify_writes_label_sets_joined_by_semicolons(emotion_server, emotions, tmp_path):
    rows = emotions["test"][:8]
    src, out = tmp_path / "in.csv", tmp_path / "out.csv"
    pd.DataFrame({"text": [r["text"] for r in rows]}).to_csv(src, index=False)
    path = task().save(tmp_path / "task.yaml")
    code = main(
        [
            "classify",
            "--input",
            str(src),
            "--output",
            str(out),
            "--task",
            str(path),
            "--model",
            chat(emotion_server()),
            "--no-cache",
        ]
    )
    assert code == 0
    written = pd.read_csv(out, keep_default_na=False)["predicted_label"].tolist()
    assert written == [";".join(sorted(r["labels"], key=EKMAN.index)) for r in rows]


def test_cli_evaluate_reads_semicolon_gold_and_prints_multi_label_metrics(emotion_server, emotions, tmp_path, capsys):
    rows = emotions["test"][:10]
    data = tmp_path / "gold.csv"
    pd.DataFrame({"text": [r["text"] for r in rows], "labels": [";".join(r["labels"]) for r in rows]}).to_csv(
        data, index=False
    )
    answer = noisy_sets(emotions, 0.4, seed=12)  # a model wrong on about 40% of items: its own scores are printed
    code = main(
        [
            "evaluate",
            "--data",
            str(data),
            "--label-column",
            "labels",
            "--labels",
            ",".join(EKMAN),
            "--multi-label",
            "--model",
            chat(emotion_server(oracle=answer)),
            "--no-cache",
            "--json",
            str(tmp_path / "m.json"),
        ]
    )
    assert code == 0
    out = capsys.readouterr().out
    expected = metrics_of(answer, rows)
    assert 0 < expected["subset_accuracy"] < 1
    assert f"micro-F1 {expected['micro_f1']:.4f}" in out and f"subset accuracy {expected['subset_accuracy']:.4f}" in out
    assert f"Hamming loss {expected['hamming_loss']:.4f}" in out
    assert json.loads((tmp_path / "m.json").read_text())["hamming_loss"] == pytest.approx(expected["hamming_loss"])


# --- models trained for it: LoRA (a sigmoid per label, BCE) and SetFit (one-vs-rest) --------------------------


def assert_beats_text_free_answers(metrics: dict, emotions: dict) -> None:
    """A model that learned something from the texts is not matched on both micro- and macro-F1 by an answer that
    ignores them: every label for every item (on the sample's 60 test rows: micro-F1 0.264, macro-F1 0.239), or
    the train rows' most frequent label for every item (joy: 0.419, 0.086)."""
    gold = [r["labels"] for r in emotions["test"]]
    counts = pd.Series([name for r in emotions["train"] for name in r["labels"]]).value_counts()
    for answer in (EKMAN, [counts.index[0]]):
        ignoring = multilabel_metrics(gold, [answer] * len(gold), EKMAN)
        assert metrics["micro_f1"] > ignoring["micro_f1"] or metrics["macro_f1"] > ignoring["macro_f1"], (
            answer,
            metrics,
            ignoring,
        )


def _check_trained(path, emotions, method_name):
    from promptclf.methods.finetune import read_meta

    meta = read_meta(Path(path))
    assert meta["multi_label"] is True and 0.05 <= meta["threshold"] <= 0.95
    clf = Classifier(task(), f"finetuned:{path}", cache=False)
    texts = [r["text"] for r in emotions["test"]]
    predictions = clf.predict(texts)
    for p in predictions:  # every label whose one-vs-rest probability reaches the threshold, nothing else
        assert set(p.scores) == set(EKMAN)
        assert list(p.labels) == [n for n in EKMAN if p.scores[n] >= meta["threshold"]]
    assert any(abs(sum(p.scores.values()) - 1) > 0.05 for p in predictions)  # not a softmax
    metrics = clf.score(texts, [r["labels"] for r in emotions["test"]])
    assert_beats_text_free_answers(metrics, emotions)
    with pytest.raises(ConfigError, match="is multi-label, the task is single-label"):
        Classifier(EKMAN, f"finetuned:{path}", cache=False)
    return metrics


@pytest.fixture(scope="module")
def setfit_dir(emotions, tmp_path_factory):
    from promptclf.methods.finetune import finetune

    train, out = emotions["train"], tmp_path_factory.mktemp("setfit") / "model"
    method = finetune(
        train[:80],
        EKMAN,
        out=out,
        method="setfit",
        multi_label=True,
        dev_rows=train[80:],
        progress=False,
        min_pairs=32,
        max_pairs=64,
    )
    assert type(method.model.model_head).__name__ == "OneVsRestClassifier"
    return out


def test_setfit_trains_one_vs_rest_and_chooses_its_threshold_on_dev_rows(emotions, setfit_dir):
    _check_trained(setfit_dir, emotions, "setfit")


def test_a_multi_label_fallback_labels_what_the_chat_model_could_not(emotion_server, emotions, setfit_dir):
    server = emotion_server(fault_rate=1.0, faults=("500",))
    texts = [r["text"] for r in emotions["test"][:6]]
    clf = Classifier(task(), chat(server), cache=False, max_attempts=1, fallback=str(setfit_dir))
    predictions = clf.predict(texts)
    expected = Classifier(task(), f"finetuned:{setfit_dir}", cache=False).predict(texts)
    assert [p.source for p in predictions] == ["fallback"] * 6
    assert [p.labels for p in predictions] == [p.labels for p in expected]


@pytest.mark.slow  # ~70 s on 2 cores
def test_lora_trains_a_multi_label_head_with_bce(emotions, tmp_path):
    from promptclf.methods.finetune import finetune

    train = emotions["train"]
    method = finetune(
        train[:80],
        EKMAN,
        out=tmp_path / "lora",
        dev_rows=train[80:],
        multi_label=True,
        progress=False,
        quantize="none",
        epochs=1,
        min_steps=6,
        max_length=48,
    )
    assert method.model.config.problem_type == "multi_label_classification"
    _check_trained(tmp_path / "lora", emotions, "lora")


def test_a_single_label_model_refuses_a_multi_label_task(tmp_path, sample_rows):
    from promptclf.methods.finetune import finetune

    rows = [{"text": r["text"], "label": r["label"]} for r in sample_rows[:16]]
    finetune(
        rows,
        sorted({r["label"] for r in rows}),
        out=tmp_path / "single",
        method="setfit",
        progress=False,
        min_pairs=16,
        max_pairs=16,
    )
    with pytest.raises(ConfigError, match="is single-label, the task is multi-label"):
        Classifier(
            Task.of(sorted({r["label"] for r in rows}), multi_label=True),
            f"finetuned:{tmp_path / 'single'}",
            cache=False,
        )


# --- compare ------------------------------------------------------------------------------------------------


def test_compare_scores_multi_label_rows_with_their_metrics(emotion_server, emotions, tmp_path):
    from promptclf.core.data import split
    from promptclf.workflows.compare import compare, markdown

    rows = emotions["train"][:20] + emotions["test"][:20]
    # a model wrong on about half the items without examples and on a tenth with them
    untaught, taught = noisy_sets(emotions, 0.5, seed=13), noisy_sets(emotions, 0.1, seed=14)
    server = emotion_server(oracle=untaught, taught_oracle=taught)
    results = compare(
        rows,
        EKMAN,
        methods=["zero-shot", "few-shot"],
        split=(10, 0, 20),
        model=chat(server),
        out=tmp_path,
        multi_label=True,
    )
    test = split(rows, (10, 0, 20), seed=0)[2]
    for r, answer in zip(results, (untaught, taught)):  # each row scores its model's own answers
        expected = metrics_of(answer, test)
        assert r["calls"] > 0 and r["hamming_loss"] == pytest.approx(expected["hamming_loss"])
        assert (r["micro_f1"], r["subset_accuracy"]) == pytest.approx(
            (expected["micro_f1"], expected["subset_accuracy"])
        )
    assert results[1]["micro_f1"] > results[0]["micro_f1"]  # few-shot ranks above zero-shot
    table = markdown(results, dict(data="goemotions", split=[10, 0, 20], seed=0, model="fake"))
    assert "| micro-F1 | macro-F1 | subset acc. | Hamming loss |" in table
    assert "| zero-shot | " in table and f"| {results[1]['micro_f1']:.3f} | " in table


@pytest.mark.parametrize(
    "methods, message",
    [
        (["optimized"], "compare's optimized cannot label multi-label tasks"),
        (["cascade"], "cascade row .* multi-label"),
    ],
)
def test_compare_refuses_rows_that_cannot_take_label_sets(emotions, tmp_path, methods, message):
    from promptclf.workflows.compare import compare

    with pytest.raises(ConfigError, match=message):
        compare(emotions["train"][:20], EKMAN, methods=methods, split=(10, 0, 10), out=tmp_path, multi_label=True)


def test_compare_runs_the_local_rows_on_label_sets(emotions, tmp_path):
    from promptclf.core.data import split
    from promptclf.methods.baselines import EmbeddingLR
    from promptclf.workflows.compare import compare

    train = emotions["train"]
    probs = EmbeddingLR(EKMAN).fit([r["text"] for r in train], [r["labels"] for r in train])
    scores = [p.scores for _, p in probs.predict([r["text"] for r in emotions["test"][:10]], Usage())]
    assert any(abs(sum(s.values()) - 1.0) > 0.05 for s in scores)  # one-vs-rest: a probability per label
    rows = train + emotions["test"]
    results = compare(
        rows, EKMAN, methods=["emb-lr", "tfidf-lr", "embed"], split=(80, 32, 60), out=tmp_path, multi_label=True
    )
    assert [r["method"] for r in results] == ["emb-lr", "tfidf-lr", "embed"]
    train, _, test = split(rows, (80, 32, 60), seed=0)
    for r in results:
        assert_beats_text_free_answers(r, {"train": train, "test": test})


def test_cli_compare_reads_semicolon_gold(emotion_server, emotions, tmp_path, capsys):
    rows = emotions["test"][:24]
    data = tmp_path / "g.csv"
    pd.DataFrame({"text": [r["text"] for r in rows], "labels": [";".join(r["labels"]) for r in rows]}).to_csv(
        data, index=False
    )
    from promptclf.core.data import split

    answer = noisy_sets(emotions, 0.3, seed=15)  # a model wrong on about 30% of items
    code = main(
        [
            "compare",
            "--data",
            str(data),
            "--label-column",
            "labels",
            "--multi-label",
            "--labels",
            ",".join(EKMAN),
            "--methods",
            "zero-shot",
            "--split",
            "4/0/20",
            "--model",
            chat(emotion_server(oracle=answer)),
            "--no-cache",
            "--out",
            str(tmp_path / "report"),
        ]
    )
    assert code == 0 and "Hamming loss" in capsys.readouterr().out
    expected = metrics_of(answer, split(rows, (4, 0, 20), seed=0)[2])
    assert 0 < expected["subset_accuracy"] < 1
    assert json.loads((tmp_path / "report" / "report.json").read_text())[0]["micro_f1"] == pytest.approx(
        expected["micro_f1"]
    )


def test_the_batch_api_collects_label_sets_like_the_interactive_path(emotion_server, emotions, tmp_path):
    from promptclf.workflows.batch_api import BatchJob

    server = emotion_server()
    rows = emotions["test"][20:50]
    texts = [r["text"] for r in rows]
    clf = Classifier(task(), chat(server), cache=str(tmp_path / "cache"))
    job = BatchJob.submit(clf, texts, tmp_path / "m.json")
    predictions = job.collect(clf)
    assert [list(p.labels) for p in predictions] == [sorted(r["labels"], key=EKMAN.index) for r in rows]
    assert {p.source for p in predictions} == {"batch"} and server.log.chat_requests == 0


def test_the_scikit_learn_estimator_refuses_label_sets():
    from promptclf.sklearn import PromptClassifier

    with pytest.raises(TypeError, match="one class per row.*multi_label=True"):
        PromptClassifier(model="offline", multi_label=True)
