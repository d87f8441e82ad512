"""promptclf.sklearn.PromptClassifier with scikit-learn's own tools (clone, Pipeline, cross_val_score,
GridSearchCV, check_estimator), on cheap methods: `embed` (MiniLM label similarity), the offline combination
without SetFit, and the fake OpenAI-compatible server (chat and completions). AG News sample, 120 rows."""

from __future__ import annotations

import inspect
import pickle

import numpy as np
import pandas as pd
import pytest
import sklearn
from sklearn.base import clone
from sklearn.model_selection import GridSearchCV, StratifiedKFold, cross_val_score
from sklearn.pipeline import Pipeline
from sklearn.preprocessing import FunctionTransformer

from promptclf import Classifier, ConfigError
from promptclf.sklearn import NOT_APPLICABLE, PromptClassifier

from .fake_openai_server import binomial_spread, noisy_oracle

LABELS = ["World", "Sports", "Business", "Sci/Tech"]


@pytest.fixture(scope="module")
def data(sample_rows):
    X = [r["text"] for r in sample_rows]
    y = [r["label"] for r in sample_rows]
    return X[:60], y[:60], X[60:], y[60:]


def embed(**params) -> PromptClassifier:
    return PromptClassifier(model="embed", cache=False, **params)


def first_sentence(texts):
    return [t.split(". ")[0] for t in texts]


# --- fit / predict / predict_proba / score ------------------------------------------------------------


def test_fit_learns_from_the_examples_and_predicts_classes(data):
    X, y, X_test, y_test = data
    est = embed()
    assert est.fit(X, y) is est
    assert list(est.classes_) == sorted(set(y))
    predicted = est.predict(X_test)
    assert set(predicted) <= set(est.classes_) and len(predicted) == len(X_test)
    proba = est.predict_proba(X_test)
    assert proba.shape == (len(X_test), 4) and np.abs(proba.sum(axis=1) - 1.0).max() < 1e-12
    assert list(est.classes_[proba.argmax(axis=1)]) == list(predicted)
    accuracy = est.score(X_test, y_test)
    assert isinstance(accuracy, float) and accuracy == np.mean(predicted == np.array(y_test))
    # the same labels with no examples: fit's examples move the label vectors, and that helps here
    zero_shot = Classifier(sorted(set(y)), "embed", cache=False).classify(X_test)
    assert accuracy > np.mean(np.array(zero_shot) == np.array(y_test)) + 0.05


def test_given_labels_keep_their_order_and_may_be_absent_from_y(data):
    X, y, X_test, _ = data
    labels = ["Sports", "World", "Sci/Tech", "Business", "Weather"]
    est = embed(labels=labels).fit(X, y)
    assert list(est.classes_) == labels
    predictions = est.classifier_.predict(X_test[:5])
    proba = est.predict_proba(X_test[:5])
    for row, p in zip(proba, predictions):
        assert list(row) == pytest.approx([p.scores[name] for name in labels])
    with pytest.raises(ValueError, match=r"y\[2\] = 'Markets' is not one of labels"):
        embed(labels=LABELS).fit(X[:3], y[:2] + ["Markets"])


def test_integer_targets_come_back_as_integers(data):
    X, y, X_test, _ = data
    codes = {name: i for i, name in enumerate(sorted(set(y)))}
    est = embed().fit(X, [codes[label] for label in y])
    assert list(est.classes_) == [0, 1, 2, 3]
    assert est.predict(X_test).dtype.kind == "i"


def test_every_form_of_one_text_per_row_gives_the_same_answers(data):
    X, y, X_test, _ = data
    est = embed().fit(np.array(X), pd.Series(y))
    expected = est.predict(X_test)
    assert list(est.predict(pd.Series(X_test))) == list(expected)
    assert list(est.predict(np.array(X_test).reshape(-1, 1))) == list(expected)
    assert list(est.predict(pd.DataFrame({"text": X_test}))) == list(expected)


def test_several_columns_are_joined_into_one_text_per_row(data):
    X, y, X_test, _ = data

    def columns(texts):
        return pd.DataFrame({"head": [t[:40] for t in texts], "tail": [t[40:] for t in texts]})

    def joined(texts):
        return [t[:40] + "\n" + t[40:] for t in texts]

    est = embed().fit(columns(X), y)
    assert est.n_features_in_ == 2
    direct = embed().fit(joined(X), y)
    assert np.allclose(est.predict_proba(columns(X_test)), direct.predict_proba(joined(X_test)))
    with pytest.raises(ValueError, match="X has 1 features, but PromptClassifier is expecting 2"):
        est.predict(X_test)


def test_bad_input_is_a_clear_error_naming_the_row(data):
    X, y, _, _ = data
    with pytest.raises(ValueError, match=r"X row 1 is NoneType \(None\), not a string"):
        embed().fit([X[0], None, X[2]], y[:3])
    with pytest.raises(ValueError, match="not one string"):
        embed().fit(X[0], y)
    with pytest.raises(ValueError, match=r"X row 2 holds nan: NaN and inf are no text"):
        embed().fit(pd.DataFrame({"a": X[:4], "b": [X[0], X[1], float("nan"), X[3]]}), y[:4])
    with pytest.raises(ValueError, match="X has 3 rows but y has 4"):
        embed().fit(X[:3], y[:4])
    with pytest.raises(ValueError, match="y has one class"):
        embed().fit(X[:3], ["World"] * 3)
    with pytest.raises(TypeError, match="examples is set by fit"):
        embed(examples=[])
    with pytest.raises(sklearn.exceptions.NotFittedError):
        embed().predict(X[:2])


def test_a_model_string_is_checked_at_fit_not_in_init(data):
    X, y, _, _ = data
    est = PromptClassifier(model="nonsense")  # configuration only: nothing parsed or loaded yet
    assert not hasattr(est, "predict_proba")
    with pytest.raises(ConfigError, match="unknown model 'nonsense'"):
        est.fit(X, y)


# --- one parameter per option ------------------------------------------------------------------------------


def test_every_classifier_option_is_a_parameter_with_its_default():
    classifier = inspect.signature(Classifier).parameters
    params = PromptClassifier().get_params()
    fit_sets = {"labels", "examples", "method", "multi_label"}  # labels: the classes here, a task there
    missing = [name for name in classifier if name not in params and name not in fit_sets]
    assert not missing
    assert {"batch_size", "concurrency", "calibrate", "quantize", "max_item_tokens", "fallback_below"} <= set(params)
    differ = {name for name in params if name not in fit_sets and params[name] != classifier[name].default}
    assert differ == {"model", "progress"}  # offline rather than None; no bars in a grid search


def test_a_backend_option_set_by_set_params_reaches_the_method(server_factory, oracle, sample_rows):
    server = server_factory(item_oracle=oracle)
    model = f"openai-compatible:gpt-test@{server.base_url}"
    rows = sample_rows[:4] + sample_rows[60:66]
    est = PromptClassifier(model, cache=False, concurrency=1, labels=LABELS)
    est.set_params(batch_size=2, example_selection="all")
    est.fit([r["text"] for r in rows[:4]], [r["label"] for r in rows[:4]])
    est.predict([r["text"] for r in rows[4:]])
    assert est.classifier_.options["batch_size"] == 2 and server.log.chat_requests == 3  # 6 rows, 2 a request
    with pytest.raises(ConfigError, match="option batch_size does not apply to model embed"):
        embed(batch_size=2).fit([r["text"] for r in rows[:4]], [r["label"] for r in rows[:4]])


# --- the estimator contract on text (check_estimator's numeric versions do not apply) --------------------


def test_fit_leaves_parameters_alone_refits_the_same_and_clones_unfitted(data):
    X, y, X_test, _ = data
    est = embed(labels=list(LABELS), descriptions={"World": "politics and world news"}, max_item_tokens=500)
    before = clone(est).get_params()
    first = est.fit(X, y).predict_proba(X_test)
    assert est.get_params() == before
    assert np.array_equal(est.fit(X, y).predict_proba(X_test), first)
    fresh = clone(est)
    assert fresh.get_params() == before and not hasattr(fresh, "classes_")
    with pytest.raises(sklearn.exceptions.NotFittedError):
        fresh.predict(X_test)


def test_answers_do_not_depend_on_order_or_company(data):
    X, y, X_test, _ = data
    est = embed().fit(X, y)
    proba = est.predict_proba(X_test)
    order = np.random.RandomState(0).permutation(len(X_test))
    assert np.allclose(est.predict_proba([X_test[i] for i in order]), proba[order])
    assert np.allclose(est.predict_proba(X_test[10:20]), proba[10:20])


def test_a_pickled_estimator_answers_the_same(data):
    X, y, X_test, _ = data
    est = embed().fit(X, y)
    expected = est.predict_proba(X_test)
    restored = pickle.loads(pickle.dumps(est))
    assert list(restored.classes_) == list(est.classes_)
    assert np.allclose(restored.predict_proba(X_test), expected)


@pytest.mark.slow  # about 200 s on 2 cores: each of its checks fits and predicts with MiniLM
@pytest.mark.skipif(sklearn.__version__ < "1.6", reason="expected_failed_checks is scikit-learn 1.6+")
def test_check_estimator_passes_every_check_that_applies_to_text():
    from sklearn.utils.estimator_checks import check_estimator

    results = check_estimator(embed(), expected_failed_checks=NOT_APPLICABLE, on_fail=None, on_skip=None)
    status = {}
    for r in results:
        status.setdefault(r["check_name"], set()).add(r["status"])
    assert not [name for name, s in status.items() if "failed" in s]
    assert {name for name, s in status.items() if "xfail" in s} == set(NOT_APPLICABLE)  # each does fail
    passed = {name for name, s in status.items() if s == {"passed"}}
    assert {
        "check_estimators_unfitted",
        "check_no_attributes_set_in_init",
        "check_requires_y_none",
        "check_classifiers_one_label",
        "check_estimators_empty_data_messages",
        "check_classifiers_regression_target",
        "check_estimator_sparse_matrix",
        "check_mixin_order",
    } <= passed


# --- scikit-learn's tools -----------------------------------------------------------------------------


def test_in_a_pipeline_it_labels_the_transformed_texts(data):
    X, y, X_test, _ = data
    pipe = Pipeline([("first", FunctionTransformer(first_sentence)), ("clf", embed())]).fit(X, y)
    direct = embed().fit(first_sentence(X), y)
    assert list(pipe.predict(X_test)) == list(direct.predict(first_sentence(X_test)))
    assert np.allclose(pipe.predict_proba(X_test), direct.predict_proba(first_sentence(X_test)))
    assert list(pipe.classes_) == sorted(set(y))


def test_cross_val_score_is_each_fold_refitted(data, sample_rows):
    X = [r["text"] for r in sample_rows]
    y = np.array([r["label"] for r in sample_rows])
    folds = StratifiedKFold(3, shuffle=True, random_state=0)
    scores = cross_val_score(embed(), X, y, cv=folds)
    by_hand = [
        embed().fit([X[i] for i in train], y[train]).score([X[i] for i in test], y[test])
        for train, test in folds.split(X, y)
    ]
    assert list(scores) == pytest.approx(by_hand)
    log_loss = cross_val_score(embed(), X, y, cv=folds, scoring="neg_log_loss")
    assert np.all(np.isfinite(log_loss)) and np.all(log_loss < 0)


def test_grid_search_picks_the_model_that_labels_best(server_factory, oracle, sample_rows):
    """Two label scorers of known accuracy (completions endpoints favouring a simulated model's answer, wrong on
    10% and on 40% of items) and embed: each scorer's cross-validated score is its model's own accuracy on the
    folds, and the grid picks the better one."""
    answers = {0.1: noisy_oracle(oracle, LABELS, 0.1, seed=8), 0.4: noisy_oracle(oracle, LABELS, 0.4, seed=9)}
    servers = {rate: server_factory(oracle=answer) for rate, answer in answers.items()}
    scorers = {rate: f"completions:tiny@{server.base_url}" for rate, server in servers.items()}
    X = [r["text"] for r in sample_rows[:48]]
    y = [r["label"] for r in sample_rows[:48]]
    # one grid per backend: calibrate and local_batch_size are label scoring's options, an error for embed
    grids = [
        {"model": ["embed"]},
        {"model": list(scorers.values()), "calibrate": ["none"], "local_batch_size": [16]},
    ]
    folds = StratifiedKFold(3, shuffle=True, random_state=0)
    grid = GridSearchCV(PromptClassifier(cache=False), grids, cv=folds)
    grid.fit(X, y)
    means = dict(zip(grid.cv_results_["param_model"], grid.cv_results_["mean_test_score"]))
    for rate, answer in answers.items():
        own = np.mean([np.mean([answer(X[i]) == y[i] for i in test]) for _, test in folds.split(X, y)])
        # within 3 binomial sd of its rate on 48 rows (0.13 and 0.21)
        assert means[scorers[rate]] == pytest.approx(own) and abs(own - (1 - rate)) <= binomial_spread(1 - rate, 48)
    assert grid.best_params_["model"] == scorers[0.1] and means[scorers[0.1]] > means[scorers[0.4]]
    assert all(server.log.completion_requests > 0 for server in servers.values())
    assert grid.best_estimator_.predict_proba(X[:4]).shape == (4, 4)


def test_chat_models_use_the_examples_as_few_shot_and_have_no_predict_proba(server_factory, oracle, sample_rows):
    answer = noisy_oracle(oracle, LABELS, 0.3, seed=10)  # a simulated model right on about 70% of items
    server = server_factory(item_oracle=answer)
    model = f"openai-compatible:gpt-test@{server.base_url}"
    pool = [next(r for r in sample_rows if r["label"] == label) for label in LABELS * 2][:4]
    pool += [[r for r in sample_rows if r["label"] == label][1] for label in LABELS]  # two per label
    test = sample_rows[60:70]
    est = PromptClassifier(model, cache=False, k=1, concurrency=1)
    est.fit([r["text"] for r in pool], [r["label"] for r in pool])
    assert not hasattr(est, "predict_proba")
    right = np.mean([answer(r["text"]) == r["label"] for r in test])  # the model's own accuracy on these rows
    assert est.score([r["text"] for r in test], [r["label"] for r in test]) == pytest.approx(right) and 0 < right < 1
    prompt = "\n".join(str(m.get("content")) for m in server.log.bodies[0]["messages"])
    shown = [r["label"] for r in pool if r["text"][:60] in prompt]
    assert sorted(shown) == sorted(LABELS)  # k=1 per label: the fitted rows are the few-shot pool


def test_offline_cross_validates_in_fit(data):
    X, y, X_test, y_test = data
    est = PromptClassifier(cache=False, offline={"components": ("labels", "examples"), "folds": 3}).fit(X, y)
    estimate = est.classifier_.method.estimate
    assert estimate is not None and set(estimate.candidates) == {"labels", "examples", "combination"}  # in fit
    singles = {name: estimate.candidates[name] for name in ("labels", "examples")}
    assert estimate.chosen == max(singles, key=singles.get)  # neither is a prior: the better single component
    proba = est.predict_proba(X_test)
    assert proba.shape == (len(X_test), 4) and est.score(X_test, y_test) > 0.5


def test_a_finetuned_model_keeps_its_own_labels_and_order(data, tmp_path):
    import promptclf

    X, y, X_test, _ = data
    tiny = {"iterations": 2, "min_pairs": 32, "max_pairs": 64, "batch_size": 16, "max_length": 64}
    rows = [{"text": t, "label": label} for t, label in zip(X[:16], y[:16])]
    trained = promptclf.finetune(rows, LABELS, out=tmp_path / "sf", method="setfit", progress=False, **tiny)
    est = PromptClassifier(f"finetuned:{tmp_path / 'sf'}", cache=False).fit(X[:8], y[:8])
    assert list(est.classes_) == LABELS  # the model's order, not sorted, and labels y[:8] may lack
    direct = Classifier(LABELS, method=trained, cache=False).predict(X_test[:6])
    assert np.allclose(est.predict_proba(X_test[:6]), [[p.scores[name] for name in LABELS] for p in direct], atol=1e-6)
    with pytest.raises(ValueError, match=r"y\[0\] = 'Weather' is not one of labels"):
        est.fit(X[:2], ["Weather", "World"])
