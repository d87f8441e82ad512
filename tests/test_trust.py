"""Labels you can trust (promptclf.core.trust, Classifier's validation=, target_accuracy=): calibration lowers a
known miscalibration, the auto-accept guarantee holds across seeded draws of a model of known accuracy, and
end to end through Classifier, PromptClassifier and the CLI on the fake server's noisy oracle."""

import functools
import json

import numpy as np
import pandas as pd
import pytest

from promptclf.classifier import Classifier
from promptclf.cli import main
from promptclf.core import trust
from promptclf.core.errors import ConfigError, InputError
from promptclf.core.labels import LabelSet
from promptclf.task.validation import read_validation

from .fake_openai_server import noisy_oracle

LABELS = ["World", "Sports", "Business", "Sci/Tech"]
ERROR_RATE = 0.25


# --- calibration ------------------------------------------------------------------------------------------


def _overconfident(n: int, seed: int, temperature: float = 0.4):
    """Per-label probabilities of a calibrated model (gold drawn from them), then sharpened: overconfident."""
    rng = np.random.default_rng(seed)
    calibrated = rng.dirichlet(np.full(4, 0.6), n)
    gold = np.array([rng.choice(4, p=p) for p in calibrated])
    return trust.scaled(calibrated, temperature), gold


def test_temperature_scaling_lowers_the_ece_of_overconfident_probabilities():
    fit_probs, fit_gold = _overconfident(400, seed=0)
    test_probs, test_gold = _overconfident(2000, seed=1)
    right = test_probs.argmax(1) == test_gold
    calibration = trust.fit_calibration(fit_probs.max(1), fit_probs.argmax(1) == fit_gold, fit_probs, fit_gold)
    assert calibration.kind == "temperature" and calibration.temperature > 1.5  # it softens (the truth: 2.5)
    before = trust.expected_calibration_error(test_probs.max(1), right)
    after = trust.expected_calibration_error(calibration.many(test_probs.max(1), test_probs), right)
    assert after < before / 2
    assert after < 2 * trust.perfectly_calibrated_ece(calibration.many(test_probs.max(1), test_probs))


def test_isotonic_from_enough_rows_and_platt_on_the_top_confidence_without_scores():
    rng = np.random.default_rng(0)
    confidence = rng.uniform(0.3, 1.0, 3000)
    right = rng.random(3000) < confidence**3  # right far less often than it says
    few = trust.fit_calibration(confidence[:300], right[:300])
    many = trust.fit_calibration(confidence[:2000], right[:2000])
    assert few.kind == "Platt" and many.kind == "isotonic"
    before = trust.expected_calibration_error(confidence[2000:], right[2000:])
    for calibration in (few, many):
        assert trust.expected_calibration_error(calibration.many(confidence[2000:]), right[2000:]) < before / 2


def test_a_single_prediction_is_calibrated_as_the_rows_are():
    probs, gold = _overconfident(300, seed=2)
    calibration = trust.fit_calibration(probs.max(1), probs.argmax(1) == gold, probs, gold)
    scores = dict(zip(LABELS, probs[0]))
    confidence, calibrated = calibration.confidence(float(probs[0].max()), scores)
    assert confidence == pytest.approx(calibration.many(probs[:1].max(1), probs[:1])[0])
    assert sum(calibrated.values()) == pytest.approx(1.0) and confidence < probs[0].max()


# --- the guarantee ----------------------------------------------------------------------------------------


def _model(n: int, rng):
    """A model of known accuracy: confidence ~ Beta(12, 1), right with probability confidence ** 1.5 (so its
    confidence overstates its accuracy, and a threshold read off the confidence would miss the target)."""
    confidence = rng.beta(12, 1, n)
    return confidence, rng.random(n) < confidence**1.5


@functools.cache
def _reference() -> np.ndarray:
    return np.sort(np.random.default_rng(12345).beta(12, 1, 400_000))


def _true_accuracy(threshold: float) -> float:
    """E[confidence ** 1.5 | confidence >= threshold], from a large reference sample."""
    kept = _reference()[np.searchsorted(_reference(), threshold) :]
    return float(np.mean(kept**1.5))


@pytest.mark.parametrize("search", trust.SEARCHES)
def test_the_guarantee_fails_no_more_often_than_the_risk(search):
    target, risk, draws = 0.9, 0.1, 300
    rng = np.random.default_rng(0)
    violations, coverage = 0, []
    for _ in range(draws):
        confidence, right = _model(200, rng)
        acceptance = trust.accept_threshold(confidence, right, target, risk, search=search)
        coverage.append(acceptance.coverage)
        if acceptance.threshold is not None:
            violations += _true_accuracy(acceptance.threshold) < target
    slack = 3 * np.sqrt(risk * (1 - risk) / draws)
    assert violations / draws <= risk + slack
    assert np.mean(coverage) > 0.2  # it does accept: the rate above is not met by accepting nothing


def test_a_handful_of_rows_never_certifies_095():
    assert trust.fewest_to_certify(0.95, 0.1) == 45
    for n in (1, 5, 20, 44):
        acceptance = trust.accept_threshold(np.full(n, 0.999), np.ones(n, bool), 0.95, 0.1)
        assert acceptance.threshold is None and acceptance.coverage == 0
    assert trust.accept_threshold(np.full(45, 0.999), np.ones(45, bool), 0.95, 0.1).threshold == 0.999


def test_the_fixed_sequence_stops_at_its_first_failure():
    """Rows from the most confident down: 100 right, then 40 of which half are wrong, then 300 right; the bound
    fails in the middle block, so the fixed sequence never reaches the lower thresholds, where the bound passes
    again and the Bonferroni grid, which tests each on its own, accepts."""
    right = np.r_[np.ones(100, bool), np.arange(40) % 2 == 0, np.ones(300, bool)]
    confidence = np.linspace(1.0, 0.5, len(right))
    fixed = trust.accept_threshold(confidence, right, 0.9, 0.1, search="fixed-sequence")
    assert 100 / len(right) <= fixed.coverage < 140 / len(right) and fixed.bound >= 0.9
    assert trust.accept_threshold(confidence, right, 0.9, 0.1, search="bonferroni").coverage == 1.0


def test_rows_for_a_three_point_interval():
    n = trust.rows_for_margin(0.03)
    low, high = trust.accuracy_interval(0.5 * n, n)
    assert (high - low) / 2 <= 0.03 < (lambda lh: (lh[1] - lh[0]) / 2)(trust.accuracy_interval(0.5 * 0.9 * n, 0.9 * n))
    assert trust.rows_for_margin(0.03, 0.9) < n  # a high accuracy varies less


# --- reading a validation sample --------------------------------------------------------------------------


def test_validation_forms_and_bad_rows_named(tmp_path):
    labels = LabelSet.of(LABELS)
    pairs = [("a text", "World"), ("another", "sports")]
    assert read_validation(pairs, labels) == [
        {"text": "a text", "label": "World"},
        {"text": "another", "label": "Sports"},
    ]
    frame = pd.DataFrame({"text": ["a text", "another"], "label": ["World", "Sports"]})
    assert read_validation(frame, labels) == read_validation(pairs, labels)
    path = tmp_path / "val.csv"
    frame.assign(label=["World", "Weather"]).to_csv(path, index=False)
    with pytest.raises(InputError, match=r"val\.csv.*row 1.*'Weather'"):
        read_validation(path, labels)
    with pytest.raises(InputError, match="row 1: the text is empty"):
        read_validation([("a text", "World"), ("  ", "World")], labels)
    frame.rename(columns={"label": "gold"}).to_csv(path, index=False)
    with pytest.raises(InputError, match="no column 'label'"):
        read_validation(path, labels)


def test_target_accuracy_needs_a_validation_sample():
    with pytest.raises(ConfigError, match="needs a validation sample"):
        Classifier(LABELS, "embed", target_accuracy=0.9)
    with pytest.raises(ConfigError, match="target_accuracy"):
        Classifier(LABELS, "embed", validation=[("a text", "World")], target_accuracy=1.5)


# --- end to end on the fake server ------------------------------------------------------------------------


@pytest.fixture
def noisy_server(server_factory, oracle):
    """A chat model right on about 1 - ERROR_RATE of the rows: confident (0.99) where right, unsure (0.55)
    where wrong, so only a threshold that separates them meets a 0.9 target."""
    noisy = noisy_oracle(oracle, LABELS, ERROR_RATE, seed=3)
    return server_factory(
        oracle=noisy, label_probability=lambda text: 0.99 if noisy(text) == oracle(text) else 0.55
    ), noisy


def _split(sample_rows):
    return sample_rows[:60], sample_rows[60:]


def test_classifier_accepts_what_the_validation_sample_certifies(noisy_server, sample_rows, cache_dir):
    server, noisy = noisy_server
    validation, rows = _split(sample_rows)
    model = f"openai-compatible:gpt-test@{server.base_url}"
    clf = Classifier(
        LABELS,
        model,
        cache=cache_dir,
        progress=False,
        validation=[(r["text"], r["label"]) for r in validation],
        target_accuracy=0.9,
    )
    predictions = clf.predict([r["text"] for r in rows])
    right = np.array([p.label == r["label"] for p, r in zip(predictions, rows)])
    accepted = np.array([p.accepted for p in predictions])
    assert accepted.any() and (~right).any()
    assert (accepted == right).all()  # exactly the confident, right answers
    assessment = clf.assessment
    expected = np.mean([noisy(r["text"]) == r["label"] for r in validation])
    assert assessment.accuracy == pytest.approx(expected) and assessment.low < expected < assessment.high
    assert assessment.acceptance.coverage == pytest.approx(expected)
    assert "auto-accept: confidence >=" in clf.report.summary() and "validation: accuracy" in clf.report.summary()
    plain = Classifier(LABELS, model, cache=cache_dir, progress=False).predict([r["text"] for r in rows])
    assert all(p.accepted is None for p in plain)
    assert [p.confidence for p in plain] != [p.confidence for p in predictions]  # calibrated
    assert clf.write_reliability_diagram(cache_dir.parent / "r.png").read_bytes()[:4] == b"\x89PNG"


def test_without_a_confidence_nothing_is_accepted(server_factory, sample_rows, cache_dir):
    server = server_factory(chat_logprobs="omit")
    validation, rows = _split(sample_rows)
    clf = Classifier(
        LABELS,
        f"openai-compatible:gpt-test@{server.base_url}",
        cache=cache_dir,
        progress=False,
        validation=[(r["text"], r["label"]) for r in validation],
        target_accuracy=0.9,
    )
    predictions = clf.predict([r["text"] for r in rows[:10]])
    assert [p.accepted for p in predictions] == [False] * 10
    assert "gives no confidence, so nothing is accepted" in clf.report.summary()


def test_without_a_validation_sample_the_report_says_how_many_rows_would_do(server_factory, sample_rows, cache_dir):
    server = server_factory()
    clf = Classifier(LABELS, f"openai-compatible:gpt-test@{server.base_url}", cache=cache_dir, progress=False)
    clf.predict([r["text"] for r in sample_rows[:5]])
    assert f"uncalibrated estimates: a validation sample of {trust.rows_for_margin(0.03)}" in clf.report.summary()


def test_a_cascade_threshold_is_chosen_on_the_validation_rows(noisy_server, sample_rows, cache_dir):
    from promptclf.cascade import stage_predictions
    from promptclf.core.usage import Usage
    from promptclf.methods.baselines import TfidfLR

    server, _ = noisy_server
    validation, rows = _split(sample_rows)
    local = TfidfLR(LABELS).fit([r["text"] for r in rows], [r["label"] for r in rows])  # it knows these rows
    clf = Classifier(
        LABELS,
        f"openai-compatible:gpt-test@{server.base_url}",
        cache=cache_dir,
        progress=False,
        cascade_from=local,
        validation=[(r["text"], r["label"]) for r in validation],
        target_accuracy=0.9,
    )
    clf.predict([r["text"] for r in rows])
    answers = stage_predictions(local, [r["text"] for r in validation], Usage(), None)
    confidence = [p.confidence for p in answers]
    right = [p.label == r["label"] for p, r in zip(answers, validation)]
    expected = trust.accept_threshold(np.array(confidence), np.array(right), 0.9, 0.05).threshold
    assert clf.method.below == (np.inf if expected is None else expected)


def test_prompt_classifier_takes_a_validation_sample(noisy_server, sample_rows, cache_dir):
    from promptclf.sklearn import PromptClassifier

    server, _ = noisy_server
    validation, rows = _split(sample_rows)
    estimator = PromptClassifier(
        f"openai-compatible:gpt-test@{server.base_url}",
        cache=str(cache_dir),
        labels=LABELS,
        validation=pd.DataFrame(validation)[["text", "label"]],
        target_accuracy=0.9,
    ).fit([r["text"] for r in rows[:8]], [r["label"] for r in rows[:8]])
    texts = [r["text"] for r in rows]
    accepted = estimator.accepted(texts)
    assert (accepted == (estimator.predict(texts) == np.array([r["label"] for r in rows]))).all()
    assert estimator.assessment_.acceptance.threshold is not None


def test_cli_writes_an_accepted_column_and_a_reliability_diagram(noisy_server, sample_rows, tmp_path, capsys):
    server, _ = noisy_server
    validation, rows = _split(sample_rows)
    pd.DataFrame(validation).to_csv(tmp_path / "val.csv", index=False)
    pd.DataFrame({"text": [r["text"] for r in rows], "gold": [r["label"] for r in rows]}).to_csv(
        tmp_path / "in.csv", index=False
    )
    out = tmp_path / "out.csv"
    argv = ["classify", "--input", str(tmp_path / "in.csv"), "--output", str(out), "--labels", ",".join(LABELS)]
    argv += ["--model", f"openai-compatible:gpt-test@{server.base_url}", "--cache-dir", str(tmp_path / "c")]
    assert main([*argv, "--validation", str(tmp_path / "val.csv"), "--target-accuracy", "0.9"]) == 0
    result = pd.read_csv(out)
    assert (result["accepted"] == (result["predicted_label"] == result["gold"])).all() and result["accepted"].any()
    assert (tmp_path / "out.csv.reliability.png").exists()
    assert "auto-accept" in capsys.readouterr().err
    tasks = tmp_path / "tasks.json"  # review export sends on exactly the rows not accepted
    assert main(["review", "export", "--input", str(out), "--output", str(tasks), "--labels", ",".join(LABELS)]) == 0
    assert len(json.loads(tasks.read_text())) == int((~result["accepted"]).sum())
    pd.DataFrame({"text": ["a text"], "label": ["Weather"]}).to_csv(tmp_path / "bad.csv", index=False)
    assert main([*argv, "--validation", str(tmp_path / "bad.csv")]) == 2
    assert "bad.csv" in (err := capsys.readouterr().err) and "row 0" in err and "'Weather'" in err
    assert main([*argv, "--target-accuracy", "0.9"]) == 2
