"""The cascade (promptclf.cascade): a local method first, the API only for the items it is unsure of. The API
is the fake OpenAI-compatible server answering with a set error rate; the local stage is TF-IDF + LR."""

import csv
import json

import numpy as np
import pytest

from promptclf.cascade import Cascade, FrontierPoint, Goal, NoThreshold, choose_threshold, frontier, measure
from promptclf.classifier import Classifier
from promptclf.cli import main
from promptclf.core.errors import ConfigError, LabellingError
from promptclf.core.methods import Prediction
from promptclf.core.usage import Usage
from promptclf.methods.baselines import TfidfLR
from promptclf.workflows.compare import compare

from .fake_openai_server import ITEM, noisy_oracle

LABELS = ["World", "Sports", "Business", "Sci/Tech"]
PRICES = {"openai-compatible:gpt-test": (0.15, 0.60)}


def _norm(text):
    return " ".join(text.split())


@pytest.fixture(scope="module")
def local(sample_rows):
    rows = sample_rows[:60]
    return TfidfLR(LABELS).fit([r["text"] for r in rows], [r["label"] for r in rows])


@pytest.fixture
def items(sample_rows):
    return [r["text"] for r in sample_rows[60:]]


@pytest.fixture
def api_oracle(oracle):
    return noisy_oracle(oracle, LABELS, error_rate=0.3, seed=1)


def _confidences(method, texts):
    return {texts[i]: p for i, p in method.predict(texts, Usage())}


def _seen(server) -> list[str]:
    """Item texts the server was asked about, in request order."""
    return [
        _norm(text)
        for body in server.log.bodies
        for m in body["messages"]
        for _, text in ITEM.findall(m["content"] or "")
    ]


def _classifier(server, local, below, **options):
    return Classifier(
        LABELS,
        f"openai-compatible:gpt-test@{server.base_url}",
        cascade_from=local,
        cascade_below=below,
        progress=False,
        max_wait=0.1,
        prices=PRICES,
        **options,
    )


# --- the frontier and the threshold: pure functions --------------------------------------------------------


def test_frontier_by_hand():
    points = frontier([0.9, 0.5, 0.7, np.nan], [1, 0, 1, 0], [1, 1, 0, 1], api_cost_per_item=0.002)
    assert [p.threshold for p in points][:4] == [0.0, 0.5, 0.7, 0.9] and points[-1].threshold > 1.0
    assert [p.api_items for p in points] == [1, 1, 2, 3, 4]  # the failed item (NaN) is always sent on
    assert [p.accuracy for p in points] == [0.75, 0.75, 1.0, 0.75, 0.75]
    assert points[2].cost_per_1k_items == pytest.approx(1000 * 0.002 * 2 / 4)


def test_frontier_matches_a_direct_count():
    rng = np.random.default_rng(3)
    conf = rng.choice([0.3, 0.55, 0.8, 0.95, np.nan], size=200)  # ties and failures
    local_ok, api_ok = rng.random(200) < conf, rng.random(200) < 0.9
    for p in frontier(conf, local_ok, api_ok):
        sent = ~(conf >= p.threshold)
        assert p.api_items == sent.sum()
        assert p.accuracy == pytest.approx(np.where(sent, api_ok, local_ok).mean())


def _points():
    # threshold, accuracy, share: more to the API is more accurate up to 0.8, then no better
    table = [
        (0.0, 0.80, 0.0),
        (0.6, 0.85, 0.2),
        (0.7, 0.88, 0.35),
        (0.8, 0.895, 0.5),
        (0.9, 0.90, 0.7),
        (1.1, 0.90, 1.0),
    ]
    return [FrontierPoint(t, a, s, int(100 * s), 0.1 * s) for t, a, s in table]


def test_choose_threshold_for_accuracy_or_budget():
    points = _points()
    assert choose_threshold(points, "accuracy:0.88").threshold == 0.7  # the cheapest reaching it
    assert choose_threshold(points, "drop:0.01").threshold == 0.8  # within a point of the API alone (0.90)
    assert choose_threshold(points, "drop:0").threshold == 0.9  # as accurate as the API, at 70% of its calls
    assert choose_threshold(points, "share:0.4").threshold == 0.7  # the most accurate within the budget
    assert choose_threshold(points, Goal("cost", 0.075)).threshold == 0.9


def test_choose_threshold_says_what_it_cannot_reach():
    with pytest.raises(NoThreshold, match=r"reaches accuracy 0.9500 .*the most accurate, 0.9000, scores 0.9000"):
        choose_threshold(_points(), "accuracy:0.95")
    unpriced = [FrontierPoint(0.5, 0.9, 0.5, 5, None)]
    with pytest.raises(ConfigError, match="register_price"):
        choose_threshold(unpriced, "cost:0.1")
    for bad in ("drop", "speed:3", "share:-1", "accuracy:high"):
        with pytest.raises(ConfigError, match="cascade goal"):
            Goal.parse(bad)


# --- the cascade against the fake server -----------------------------------------------------------------


def test_only_unsure_items_reach_the_api_and_every_answer_is_the_right_items(server_factory, api_oracle, local, items):
    server = server_factory(oracle=api_oracle, fault_rate=0.3, faults=("500", "short", "duplicate", "shifted"))
    local_answers = _confidences(local, items)
    below = float(np.median([p.confidence for p in local_answers.values()]))
    unsure = {_norm(t) for t, p in local_answers.items() if p.confidence < below}
    assert 10 < len(unsure) < 50

    clf = _classifier(server, local, below, cache=False, batch_size=7)
    predictions = clf.predict(items)

    assert set(_seen(server)) == unsure  # exactly the unsure items were sent (some re-asked after faults)
    for text, p in zip(items, predictions):
        if _norm(text) in unsure:
            assert (p.source, p.label) == ("api", api_oracle(text))  # the API's answer for this very item
        else:
            assert (p.source, p.label, p.confidence) == (
                "local",
                local_answers[text].label,
                local_answers[text].confidence,
            )
    report = clf.report
    assert (report.escalated, report.answered_locally) == (len(unsure), len(items) - len(unsure))
    assert report.requests == server.log.requests and report.cost_usd > 0
    assert f"cascade: {len(items) - len(unsure)} answered locally, {len(unsure)} sent to the API" in report.summary()


def test_api_answers_are_cached_per_stage_so_a_new_threshold_pays_only_for_new_items(
    server_factory, api_oracle, local, items, cache_dir
):
    server = server_factory(oracle=api_oracle)
    confidences = sorted(p.confidence for p in _confidences(local, items).values())
    low, high = confidences[15], confidences[40]

    first = _classifier(server, local, low, cache=cache_dir).predict(items)
    asked = server.log.items_seen
    again = _classifier(server, local, low, cache=cache_dir)
    assert [p.label for p in again.predict(items)] == [p.label for p in first]
    assert server.log.items_seen == asked and again.report.requests == 0
    assert {p.source for p in again.predict(items)} == {"local", "cache"} and again.report.cache_hits == 15

    raised = _classifier(server, local, high, cache=cache_dir)
    raised.predict(items)
    assert server.log.items_seen - asked == 40 - 15  # only the items the higher threshold newly sends on
    plain = Classifier(LABELS, f"openai-compatible:gpt-test@{server.base_url}", cache=cache_dir, progress=False)
    plain.predict(items)  # the API stage's entries are a plain classifier's of the same model
    assert plain.report.cache_hits == 40


def test_api_failures_are_values_the_local_answers_stay(server_factory, api_oracle, local, items):
    server = server_factory(oracle=api_oracle, fault_rate=1.0, faults=("malformed",))
    confidences = sorted(p.confidence for p in _confidences(local, items).values())
    clf = _classifier(server, local, confidences[3], cache=False, max_attempts=1)
    with pytest.raises(
        LabellingError,
        match=r"3 of 60 items could not be labelled: .*API stage: .*sent on because "
        r"the local stage answered '[^']+' at confidence 0\.\d{3} < ",
    ):
        clf.predict(items)
    try:
        clf.predict(items)
    except LabellingError as error:
        assert len(error.failures) == 3
        assert sum(p is not None and p.source == "local" for p in error.predictions) == 57
    with_fallback = _classifier(server, local, confidences[3], cache=False, max_attempts=1, fallback=local)
    assert sum(p.source == "fallback" for p in with_fallback.predict(items)) == 3


class _NoConfidence:
    cacheable, identity = False, "no-confidence"

    def __init__(self):
        from promptclf.core.labels import LabelSet

        self.labels = LabelSet.of(LABELS)

    def predict(self, texts, usage):
        for i, _ in enumerate(texts):
            yield i, Prediction("World")


def test_configuration_errors_come_before_any_call(server_factory, local, items):
    server = server_factory()
    with pytest.raises(ConfigError, match=r"local stage \(_NoConfidence\) answers without a confidence"):
        _classifier(server, _NoConfidence(), 0.5, cache=False).predict(items)
    with pytest.raises(ConfigError, match="needs both cascade_from"):
        Classifier(LABELS, f"openai-compatible:gpt-test@{server.base_url}", cascade_below=0.5)
    with pytest.raises(ConfigError, match="cascade threshold -0.1"):
        _classifier(server, local, -0.1)
    with pytest.raises(ConfigError, match="different label sets"):
        Cascade(TfidfLR(["a", "b"]), _classifier(server, local, 0.5).method.api, 0.5)
    assert server.log.requests == 0


def test_measure_records_both_stages_on_every_row(server_factory, api_oracle, local, sample_rows):
    server = server_factory(oracle=api_oracle)
    api = Classifier(LABELS, f"openai-compatible:gpt-test@{server.base_url}", cache=False, prices=PRICES)
    rows = sample_rows[60:]
    record = measure(local, api.method, rows, api_usage=api.report)
    assert server.log.items_seen == len(rows)
    assert list(record.api_correct) == [api_oracle(r["text"]) == r["label"] for r in rows]
    assert record.api_cost_per_item == pytest.approx(api.report.cost_usd / len(rows))
    points = frontier(record.confidence, record.local_correct, record.api_correct)
    assert points[0].accuracy == pytest.approx(record.local_correct.mean())  # threshold 0: the local method
    assert points[-1].accuracy == pytest.approx(record.api_correct.mean())  # above all: the API alone


def test_classify_cli_cascades_and_writes_the_stage(tmp_path, server_factory, api_oracle, capsys):
    server = server_factory(oracle=api_oracle)
    out = tmp_path / "out.csv"
    base = [
        "classify",
        "--input",
        "tests/data/agnews_sample.csv",
        "--text-column",
        "title,description",
        "--labels",
        ",".join(LABELS),
        "--output",
        str(out),
        "--no-cache",
        "--no-progress",
        "--model",
        f"openai-compatible:gpt-test@{server.base_url}",
        "--cascade-from",
        "embed",
    ]
    assert main(base + ["--cascade-below", "0.6"]) == 0
    rows = list(csv.DictReader(open(out)))
    sent = [r for r in rows if r["source"] == "api"]
    assert 0 < len(sent) < len(rows) and {r["source"] for r in rows} == {"local", "api"}
    assert all(float(r["confidence"]) >= 0.6 for r in rows if r["source"] == "local")
    assert server.log.items_seen == len(sent)
    assert f"{len(sent)} sent to the API" in capsys.readouterr().err
    assert main(base) == 2
    assert "needs both cascade_from" in capsys.readouterr().err


def test_compare_has_a_cascade_row_and_its_frontier(tmp_path, sample_rows, server_factory, api_oracle):
    server = server_factory(oracle=api_oracle)
    model = f"openai-compatible:gpt-test@{server.base_url}"
    results = compare(
        sample_rows,
        LABELS,
        methods=["zero-shot", "cascade"],
        split=(50, 30, 40),
        seed=0,
        model=model,
        out=tmp_path,
        chunk=20,
        classifier_options={"prices": PRICES, "batch_size": 4},
        cascade={"from": "tfidf-lr", "goal": "drop:0.05"},
    )
    api_only, cascade = results
    test_points = cascade["frontier"]["test"]
    assert test_points[-1]["api_share"] == 1.0 and test_points[-1]["accuracy"] == api_only["accuracy"]
    assert cascade["test_point"]["api_share"] == cascade["api_share"]  # the real run sent what the frontier says
    assert cascade["test_point"]["accuracy"] == pytest.approx(cascade["accuracy"])
    sent = cascade["api_share"] * 40
    assert 0 < sent < 40 and cascade["calls"] < api_only["calls"]
    assert cascade["cost_per_1k_items"] < api_only["cost_per_1k_items"]
    dev = cascade["frontier"]["dev"]
    assert cascade["dev_point"] in dev and cascade["dev_point"]["accuracy"] >= dev[-1]["accuracy"] - 0.05
    md = (tmp_path / "report.md").read_text()
    assert "## Cascade: tfidf-lr → zero-shot" in md and "(chosen)" in md
    assert (tmp_path / "frontier.png").stat().st_size > 10_000
    assert len(list(csv.DictReader(open(tmp_path / "frontier.csv")))) == len(dev) + len(test_points)
    assert json.loads((tmp_path / "report.json").read_text())[1]["threshold"] == cascade["threshold"]


def test_compare_cli_refuses_a_cascade_it_cannot_tune(tmp_path, capsys):
    base = [
        "compare",
        "--data",
        "tests/data/agnews_sample.csv",
        "--text-column",
        "title,description",
        "--label-names",
        "1=World,2=Sports,3=Business,4=Sci/Tech",
        "--methods",
        "cascade",
        "--out",
        str(tmp_path),
    ]
    assert main(base + ["--split", "80/0/30"]) == 2
    assert "chooses its threshold on the dev rows" in capsys.readouterr().err
    assert main(base + ["--split", "80/10/30", "--cascade-goal", "speed:3"]) == 2
    assert "cascade goal 'speed'" in capsys.readouterr().err
    assert main(base + ["--split", "80/10/30", "--cascade-from", "zero-shot"]) == 2
    assert "the local stage is one of" in capsys.readouterr().err
