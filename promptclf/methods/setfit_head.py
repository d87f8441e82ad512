"""A SetFit model's scikit-learn head on disk as JSON, never as a pickle.

setfit saves and loads the head with joblib (`model_head.pkl`), and unpickling runs whatever code the file holds:
whoever could write a model directory or $PROMPTCLF_HOME would run code in every process that loads it. The heads
promptclf trains are a LogisticRegression (single-label) or a OneVsRestClassifier of them (multi-label); each is
rebuilt from its parameters and fitted arrays (floats in JSON read back to the last bit).
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np

from promptclf.core.errors import ConfigError

HEAD = "head.json"
OLD_HEAD = "model_head.pkl"  # setfit's joblib pickle, as promptclf saved it before: never read
FORMAT = 1


def save_head(head, directory: Path, normalize_embeddings: bool = False) -> None:
    data = {"format": FORMAT, "normalize_embeddings": bool(normalize_embeddings), **_head_to_json(head)}
    (directory / HEAD).write_text(json.dumps(data))


def load_head(directory: Path) -> tuple[object, dict]:
    """(the head, its settings: multi_target_strategy, normalize_embeddings) saved in `directory`."""
    path = directory / HEAD
    if not path.exists():
        if (directory / OLD_HEAD).exists():
            raise ConfigError(
                f"{str(directory)!r}: its SetFit head is a pickle ({OLD_HEAD}, saved by an older promptclf), and "
                f"promptclf does not unpickle: loading one runs whatever code the file holds. Train it again: "
                f"promptclf finetune --method setfit --train ROWS --out {directory} (a directory under "
                f"$PROMPTCLF_HOME/offline: delete it, and the next run trains again)"
            )
        raise ConfigError(f"{str(directory)!r} is not a SetFit model saved by promptclf (no {HEAD})")
    try:
        data = json.loads(path.read_text())
        head = _head_from_json(data)
    except (ValueError, KeyError, TypeError) as exc:
        raise ConfigError(f"{path}: not a SetFit head saved by promptclf ({exc})") from None
    strategy = "one-vs-rest" if data["kind"] == "one_vs_rest" else None
    return head, {"multi_target_strategy": strategy, "normalize_embeddings": bool(data.get("normalize_embeddings"))}


def _head_to_json(head) -> dict:
    from sklearn.linear_model import LogisticRegression
    from sklearn.multiclass import OneVsRestClassifier

    if isinstance(head, LogisticRegression):
        return {
            "kind": "logistic_regression",
            "params": _params(head),
            "classes": head.classes_.tolist(),
            "coef": head.coef_.tolist(),
            "intercept": head.intercept_.tolist(),
        }
    if isinstance(head, OneVsRestClassifier) and head.multilabel_:
        return {
            "kind": "one_vs_rest",
            "params": _params(head.estimator),
            "estimators": [_binary_to_json(e) for e in head.estimators_],
        }
    raise ConfigError(f"a SetFit head of type {type(head).__name__} cannot be saved without pickle")


def _binary_to_json(estimator) -> dict:
    from sklearn.multiclass import _ConstantPredictor

    if isinstance(estimator, _ConstantPredictor):  # a label that all or none of the training rows had
        return {"kind": "constant", "value": int(np.ravel(estimator.y_)[0])}
    return _head_to_json(estimator)


def _params(estimator) -> dict:
    """The constructor's parameters that JSON keeps as they are (the others only matter in fitting)."""
    return {k: v for k, v in estimator.get_params().items() if v is None or isinstance(v, (str, int, float, bool))}


def _head_from_json(data: dict):
    from sklearn.multiclass import OneVsRestClassifier
    from sklearn.preprocessing import LabelBinarizer

    if data["kind"] == "logistic_regression":
        return _logistic_regression(data)
    if data["kind"] != "one_vs_rest":
        raise ValueError(f"unknown head kind {data['kind']!r}")
    parts = data["estimators"]
    width = next((len(p["coef"][0]) for p in parts if p["kind"] != "constant"), 1)
    head = OneVsRestClassifier(_logistic_regression({"params": data["params"]}, fitted=False))
    head.estimators_ = [
        _constant(p["value"], width) if p["kind"] == "constant" else _logistic_regression(p) for p in parts
    ]
    # What OneVsRestClassifier.fit sets from the label indicator matrix it was fitted on: one column per label.
    head.label_binarizer_ = LabelBinarizer(sparse_output=True).fit(np.eye(len(parts), dtype=int))
    head.classes_ = head.label_binarizer_.classes_
    head.n_features_in_ = width
    return head


def _logistic_regression(data: dict, fitted: bool = True):
    from sklearn.linear_model import LogisticRegression

    known = LogisticRegression().get_params()
    head = LogisticRegression(**{k: v for k, v in data["params"].items() if k in known})
    if not fitted:
        return head
    classes = np.asarray(data["classes"])
    coef = np.asarray(data["coef"], dtype=np.float64)
    intercept = np.asarray(data["intercept"], dtype=np.float64)
    rows = 1 if len(classes) == 2 else len(classes)
    if classes.ndim != 1 or coef.ndim != 2 or coef.shape[0] != rows or intercept.shape != (rows,):
        raise ValueError(f"coefficients {coef.shape} and intercepts {intercept.shape} for {len(classes)} classes")
    head.classes_, head.coef_, head.intercept_ = classes, coef, intercept
    head.n_features_in_ = coef.shape[1]
    return head


def _constant(value: int, width: int):
    from sklearn.multiclass import _ConstantPredictor

    return _ConstantPredictor().fit(np.zeros((1, width)), np.array([int(value)]))
