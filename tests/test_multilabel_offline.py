"""Offline multi-label (promptclf/methods/offline_multilabel.py): a probability per label from components trained on
the examples, a threshold per label, zero-shot label sets of more than one label, and the forms examples come in.
The packaged MiniLM embeds; the texts are written so that each label is one topic and an item may mix two."""

import itertools

import numpy as np
import pandas as pd
import pytest

from promptclf import Classifier, ConfigError
from promptclf.cli import main
from promptclf.core.usage import Usage
from promptclf.methods.offline_multilabel import (
    MIN_POSITIVES,
    ZERO_SHOT_RATIO,
    Cardinality,
    MultiLabelConfig,
    OfflineMultiLabel,
    choose_thresholds,
    decide,
    f1,
    shared_threshold,
)

TOPICS = {
    "sports": [
        "The striker scored a late goal to win the match.",
        "Our team won the basketball game in overtime.",
        "The tennis final went to five long sets.",
        "He ran the marathon in under three hours.",
        "The coach praised the defence after the football match.",
        "The cyclist won the mountain stage of the race.",
        "The goalkeeper saved a penalty in the cup final.",
        "She swam the fastest lap of the championship.",
        "The batsman hit a six over the stadium roof.",
        "Fans cheered as the sprinter crossed the finish line.",
    ],
    "cooking": [
        "Simmer the tomato sauce with garlic and basil.",
        "She baked a loaf of sourdough bread this morning.",
        "Chop the onions and fry them gently in butter.",
        "The soup needs more salt and a little pepper.",
        "Roast the chicken for an hour in a hot oven.",
        "Whisk the eggs with sugar for the sponge cake.",
        "Knead the pizza dough and let it rise.",
        "Grill the vegetables and drizzle them with olive oil.",
        "Stir the risotto slowly while adding the stock.",
        "Marinate the beef overnight in soy sauce and ginger.",
    ],
    "weather": [
        "Heavy rain and strong winds are expected tomorrow.",
        "The forecast says snow will fall overnight.",
        "It was a hot sunny afternoon with clear skies.",
        "A thunderstorm rolled in from the west.",
        "Thick fog covered the valley this morning.",
        "Temperatures will drop below freezing tonight.",
        "A light drizzle lasted all day long.",
        "The heatwave broke records across the region.",
        "Hail and lightning hit the coast in the evening.",
        "The wind chill made the morning bitterly cold.",
    ],
}
NAMES = list(TOPICS)
CODES = ["alpha", "beta", "gamma"]  # names that say nothing: only examples can teach them


def rows(part: slice, codes=NAMES) -> list[dict]:
    """Single-topic items and two-topic items (one sentence of each), from the given sentences of every topic."""
    singles = [{"text": t, "labels": [codes[k]]} for k, name in enumerate(NAMES) for t in TOPICS[name][part]]
    pairs = [
        {"text": f"{a} {b}", "labels": [codes[i], codes[j]]}
        for (i, x), (j, y) in itertools.combinations(enumerate(NAMES), 2)
        for a, b in zip(TOPICS[x][part], TOPICS[y][part])
    ]
    return singles + pairs


TRAIN, TEST = slice(0, 6), slice(6, 10)


def f1_of(clf, test) -> float:
    return clf.score([r["text"] for r in test], [r["labels"] for r in test])["micro_f1"]


@pytest.fixture(scope="module")
def coded():
    """Labels named alpha/beta/gamma: zero-shot, and trained on 42 examples."""
    test = rows(TEST, CODES)
    zero = Classifier(CODES, "offline", multi_label=True, cache=False, unlabeled=[])
    trained = Classifier(CODES, "offline", multi_label=True, cache=False, unlabeled=[], examples=rows(TRAIN, CODES))
    return zero, trained, test


def test_offline_multi_label_learns_from_its_examples(coded):
    zero, trained, test = coded
    assert isinstance(trained.method, OfflineMultiLabel)
    assert f1_of(trained, test) >= 0.9 > f1_of(zero, test) + 0.3


def test_each_label_has_its_own_probability_and_threshold(coded):
    _, trained, test = coded
    predictions = trained.predict([r["text"] for r in test])
    thresholds = trained.method.estimate.thresholds
    assert set(thresholds) == set(CODES)
    sums = [sum(p.scores.values()) for p in predictions]
    assert max(sums) > 1.2  # one-vs-rest: a two-topic item has two probable labels, no softmax across them
    for p in predictions:
        past = [n for n in CODES if p.scores[n] >= thresholds[n]]
        assert list(p.labels) == (past or [max(p.scores, key=p.scores.get)])
    two = [p for p, r in zip(predictions, test) if len(r["labels"]) == 2]
    assert sum(len(p.labels) == 2 for p in two) >= 0.8 * len(two)


def test_the_report_says_what_trained_on_how_many_examples_and_the_thresholds(coded):
    _, trained, test = coded
    trained.classify([r["text"] for r in test[:3]])
    report = trained.report.estimate
    assert f"trained on {len(rows(TRAIN))} examples" in report and "cross-validated over 3 folds" in report
    assert all(f"{name} {t:.2f}" in report for name, t in trained.method.estimate.thresholds.items())
    assert "no estimate" not in report and "self-trained on" not in report
    estimate = trained.method.estimate
    assert estimate.micro_f1 is not None and set(estimate.candidates) >= {"labels", "examples"}


def test_zero_shot_gives_two_labels_to_items_of_two_topics():
    """Scores that sum to one can never pass 0.5 twice; the zero-shot rule gives a second label where it is at
    least ZERO_SHOT_RATIO as probable as the best, more often to items that mix two topics than to the others."""
    test = rows(TEST)
    clf = Classifier(NAMES, "offline", multi_label=True, cache=False, unlabeled=[])
    predictions = clf.predict([r["text"] for r in test])
    two = [p for p, r in zip(predictions, test) if len(r["labels"]) == 2]
    one = [p for p, r in zip(predictions, test) if len(r["labels"]) == 1]
    both_right = [
        p for p, r in zip(predictions, test) if len(r["labels"]) == 2 and sorted(p.labels) == sorted(r["labels"])
    ]
    assert len(both_right) >= 2
    assert sum(len(p.labels) >= 2 for p in two) / len(two) > sum(len(p.labels) >= 2 for p in one) / len(one)
    for p in predictions:
        best = max(p.scores.values())
        assert best == 1.0 and list(p.labels) == [n for n in NAMES if p.scores[n] >= ZERO_SHOT_RATIO * best]
    assert "within 0.5 of the best" in clf.method.estimate.describe()


def test_a_validation_sample_takes_the_place_of_the_folds():
    validation = [{"text": r["text"], "label": ";".join(r["labels"])} for r in rows(slice(6, 8), CODES)]
    clf = Classifier(
        CODES,
        "offline",
        multi_label=True,
        cache=False,
        unlabeled=[],
        examples=rows(TRAIN, CODES),
        offline={"validation": validation},
    )
    assert f1_of(clf, rows(slice(8, 10), CODES)) >= 0.9
    estimate = clf.method.estimate
    assert estimate.validation == len(validation) and estimate.folds == 0
    assert f"on {len(validation)} validation rows" in estimate.describe()


def test_options_that_do_not_apply_to_a_multi_label_task_are_refused():
    with pytest.raises(ConfigError, match="llm_model do not apply to a multi-label task"):
        Classifier(CODES, "offline", multi_label=True, cache=False, offline={"llm_model": "gemma3-270m"})
    with pytest.raises(ConfigError, match="average='weighted'"):
        Classifier(CODES, "offline", multi_label=True, cache=False, offline={"average": "weighted"})


# --- thresholds and the decision rule, on numbers ---------------------------------------------------------------


def test_thresholds_are_chosen_per_label():
    """Label a's positives score 0.3-0.4 (its negatives below 0.2), label b's 0.8-0.9 (its negatives 0.6-0.7):
    no one threshold separates both, one each does."""
    rng = np.random.default_rng(0)
    gold = rng.integers(0, 2, size=(60, 2))
    probs = np.where(gold == 1, [0.35, 0.85], [0.1, 0.65]) + rng.uniform(-0.05, 0.05, size=(60, 2))
    thresholds = choose_thresholds(probs, gold, allow_empty=True)
    assert 0.15 < thresholds[0] <= 0.3 and 0.65 < thresholds[1] <= 0.8
    assert (decide(probs, thresholds, allow_empty=True) == gold).all()


def test_a_label_with_few_positives_keeps_the_shared_threshold():
    """Label b has MIN_POSITIVES - 1 positives at 0.97 and some negatives at 0.75: on its own it would take a
    threshold above 0.75, which so few rows cannot justify."""
    gold = np.zeros((40, 2), dtype=int)
    gold[:20, 0] = 1
    gold[20 : 20 + MIN_POSITIVES - 1, 1] = 1
    probs = np.where(gold == 1, [0.7, 0.97], [0.2, 0.2])
    probs[30:34, 1] = 0.75
    thresholds = choose_thresholds(probs, gold, allow_empty=True)
    assert thresholds[1] == shared_threshold(probs, gold, allow_empty=True) < 0.75


def test_the_thresholds_give_no_more_labels_per_item_than_the_examples_carry():
    """Probabilities that barely tell the labels apart: on these rows the best F1 comes from giving every label
    to every item (4 labels, one each: micro-F1 0.4) or most, which the cardinality forbids."""
    rng = np.random.default_rng(1)
    gold = np.eye(4, dtype=int)[rng.integers(0, 4, size=200)]
    probs = 0.3 + 0.02 * gold + rng.uniform(0, 0.2, size=gold.shape)
    free = choose_thresholds(probs, gold)
    assert decide(probs, free, False).sum(axis=1).mean() > 2
    capped = choose_thresholds(probs, gold, cardinality=Cardinality(probs, 1.1))
    assert decide(probs, capped, False).sum(axis=1).mean() <= 1.1


def test_f1_is_sklearns():
    from sklearn.metrics import f1_score

    rng = np.random.default_rng(2)
    for _ in range(20):
        gold, chosen = rng.integers(0, 2, size=(2, 30, 5))
        gold[:, 2] = chosen[:, 2] = 0  # a label nobody has nor is given: 0 in macro-F1
        for average in ("micro", "macro"):
            assert f1(gold, chosen, average) == pytest.approx(f1_score(gold, chosen, average=average, zero_division=0))


def test_an_item_gets_no_label_only_where_the_task_allows_it():
    probs = np.array([[0.2, 0.3], [0.9, 0.1]])
    thresholds = np.array([0.5, 0.5])
    assert decide(probs, thresholds, allow_empty=False).tolist() == [[False, True], [True, False]]
    assert decide(probs, thresholds, allow_empty=True).tolist() == [[False, False], [True, False]]


def test_allow_empty_reaches_the_offline_method():
    clf = Classifier(CODES, "offline", multi_label=True, cache=False, unlabeled=[], allow_empty=True)
    assert clf.method.config.allow_empty
    assert not Classifier(CODES, "offline", multi_label=True, cache=False, unlabeled=[]).method.config.allow_empty


# --- the forms examples come in ---------------------------------------------------------------------------------


def test_examples_as_lists_joined_names_or_single_labels_are_the_same_sets():
    given = rows(TRAIN, CODES)
    forms = [
        given,
        [{"text": r["text"], "labels": ";".join(r["labels"])} for r in given],
        [{"text": r["text"], "label": ";".join(r["labels"])} for r in given],
    ]
    methods = [OfflineMultiLabel(CODES, form) for form in forms]
    assert methods[0].examples == methods[1].examples == methods[2].examples
    assert methods[0].identity == methods[2].identity
    single = OfflineMultiLabel(CODES, [{"text": "x", "label": "beta"}] * 3)
    assert single.examples == [("x", ["beta"])] * 3


def test_too_few_examples_to_cross_validate_are_refused_before_any_work():
    with pytest.raises(ConfigError, match="2 example\\(s\\) cannot be cross-validated over 3 folds"):
        Classifier(CODES, "offline", multi_label=True, cache=False, examples=rows(TRAIN, CODES)[:2])


@pytest.mark.parametrize("suffix", [".csv", ".jsonl", ".parquet"])
def test_cli_trains_offline_on_multi_label_examples_from_a_file(tmp_path, suffix, capsys):
    given = rows(TRAIN, CODES)
    column = [";".join(r["labels"]) if suffix == ".csv" else r["labels"] for r in given]
    frame = pd.DataFrame({"text": [r["text"] for r in given], "labels": column})
    examples = tmp_path / f"examples{suffix}"
    {
        ".csv": lambda: frame.to_csv(examples, index=False),
        ".jsonl": lambda: frame.to_json(examples, orient="records", lines=True),
        ".parquet": lambda: frame.to_parquet(examples),
    }[suffix]()
    test = rows(TEST, CODES)
    src, out = tmp_path / "in.csv", tmp_path / "out.csv"
    pd.DataFrame({"text": [r["text"] for r in test]}).to_csv(src, index=False)
    args = ["classify", "--input", str(src), "--output", str(out), "--labels", ",".join(CODES), "--multi-label"]
    args += ["--model", "offline", "--no-cache", "--examples", str(examples), "--examples-label-column", "labels"]
    assert main(args) == 0
    assert f"trained on {len(given)} examples" in capsys.readouterr().err
    written = pd.read_csv(out, keep_default_na=False)["predicted_label"]
    right = sum(sorted(v.split(";")) == sorted(r["labels"]) for v, r in zip(written, test))
    assert right >= 0.8 * len(test)


def test_predict_reports_its_compute_time(coded):
    _, trained, test = coded
    usage = Usage()
    answers = dict(trained.method.predict([r["text"] for r in test[:4]], usage))
    assert len(answers) == 4 and usage.compute_s > 0
    assert isinstance(MultiLabelConfig.of({}), MultiLabelConfig)
