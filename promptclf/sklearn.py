"""A scikit-learn estimator over promptclf: `PromptClassifier(model=...)`, usable with `clone`, `Pipeline`,
`cross_val_score` and `GridSearchCV`.

`__init__` only stores its parameters. `fit(X, y)` sets `classes_` (the sorted distinct labels of y; or
`labels=`, in the order given, which may name labels y lacks; or, for `finetuned:<dir>`, the saved model's
labels) and builds the promptclf `Classifier` with (X, y) as its examples:

- `offline`: the examples are cross-validated and the chosen components trained (SetFit too, unless
  `offline={"components": ...}` leaves it out), in `fit`;
- `embed`: each label's vector moves towards its examples' centroid (label_similarity.py);
- chat models (`openai:...`, `openai-compatible:...`, `together:...`), `local` and `completions:...`: the
  examples are the few-shot pool (`example_selection`, `k` choose from it);
- `finetuned:<dir>` is trained already: fit checks that y uses its labels and nothing else.

`predict_proba` gives the method's per-label scores, columns in `classes_` order. Chat models answer a label
without scores, so for them `predict_proba` does not exist (`hasattr(est, "predict_proba")` is False, as for
scikit-learn's SVC without probability=True) rather than returning a made-up one-hot.

X is one text per row: a list, a 1-D array or a pandas Series of strings, or a 2-D array / DataFrame whose cells
in a row are joined by newlines into one text (a title and a body; `n_features_in_` is its number of columns, and
predict takes the same). A number in X is taken as its text; NaN, inf, None and other objects are refused, naming
the row. y may hold strings or any other values (`cross_val_predict` passes integers); a label is shown to the
model as its `str()`.

Pickling keeps the parameters, classes and training rows; `classifier_` rebuilds the method from them on first
use (models, HTTP clients and locks do not pickle).

The class order (ClassifierMixin, BaseEstimator) is the one scikit-learn's check_mixin_order asks for.
`sklearn.utils.estimator_checks.check_estimator` passes all its checks but the three in `NOT_APPLICABLE`, each
for the reason given there (tests/test_sklearn.py runs all of them and checks that each listed one does fail and
every other passes).
"""

from __future__ import annotations

import inspect
import math
import numbers

import numpy as np
from sklearn.base import BaseEstimator, ClassifierMixin
from sklearn.utils.metaestimators import available_if
from sklearn.utils.validation import check_is_fitted

from promptclf.config import keyword_parameters, option_defaults
from promptclf.core.errors import ConfigError
from promptclf.providers.registry import parse_model, provider_of

# check_estimator's checks that cannot apply to a text classifier (checked with model="embed"), and why; all its
# others pass. It feeds numeric matrices: a number is taken as its text and a row's cells are joined into one text,
# so most of its checks run as written.
NOT_APPLICABLE = {
    "check_classifiers_train": "it asks for 83% accuracy on numeric blobs: a text model reading numbers as words "
    "does not learn distances between them",
    "check_fit1d": "it expects one-dimensional X to be refused; one text per row is this estimator's main input",
    "check_methods_subset_invariance": "MiniLM's float32 vectors of a text vary in the 7th digit with the batch it "
    "is padded in; tests/test_sklearn.py checks subset and order invariance to 1e-5",
}
# Every Classifier option is a parameter (promptclf/config.py declares them), but those fit sets from (X, y) and
# multi_label (one class per row here); defaults as Classifier's, but for the model and progress bars (off: a
# grid search fits many times).
_SET_BY_FIT = ("examples", "method")
_REFUSED = {
    "multi_label": "PromptClassifier predicts one class per row; for label sets use "
    "Classifier(labels, model, multi_label=True)",
    **{name: f"{name} is set by fit from (X, y)" for name in _SET_BY_FIT},
}
PARAMETERS = {
    "model": "offline",
    "labels": None,
    **{name: value for name, value in option_defaults().items() if name not in _REFUSED},
    "progress": False,
}


class PromptClassifier(ClassifierMixin, BaseEstimator):
    """promptclf as a scikit-learn classifier (see the module's docstring for what `fit` does per method).

    >>> est = PromptClassifier(model="embed").fit(texts, labels)
    >>> est.predict(new_texts), est.predict_proba(new_texts), est.score(test_texts, test_labels)

    The parameters are `Classifier`'s options of the same names, each one a parameter (`PARAMETERS`: the run
    options and every backend's, so GridSearchCV can search any of them), less `examples` and `method` (fit
    sets them) and `multi_label`. `labels` is the list of classes, in the order `classes_` takes (None: the
    sorted classes of y). `cache` takes True/False, a directory or a cache URL (a string clones; an open backend
    object may not). A backend option set for a model whose backend does not take it is a ConfigError at fit.
    """

    def __init__(self, model="offline", **params):
        refused = next((name for name in params if name in _REFUSED), None)
        if refused is not None:
            raise TypeError(_REFUSED[refused])
        unknown = sorted(set(params) - set(PARAMETERS))
        if unknown:
            raise TypeError(f"PromptClassifier got an unexpected keyword argument {unknown[0]!r}")
        self.model = model
        for name, default in PARAMETERS.items():
            if name != "model":
                setattr(self, name, params.get(name, default))

    # what scikit-learn's get_params, set_params and clone read: one parameter per option
    __init__.__signature__ = inspect.Signature(
        [
            inspect.Parameter("self", inspect.Parameter.POSITIONAL_OR_KEYWORD),
            inspect.Parameter("model", inspect.Parameter.POSITIONAL_OR_KEYWORD, default="offline"),
            *keyword_parameters({name: value for name, value in PARAMETERS.items() if name != "model"}),
        ]
    )

    # --- scikit-learn's verbs -------------------------------------------------------------------------

    def fit(self, X, y):
        y = _targets(y)
        classes = self._classes(y)
        texts, self.n_features_in_ = texts_and_width(X)
        if len(texts) != len(y):
            raise ValueError(f"X has {len(texts)} rows but y has {len(y)}")
        self.classes_, self._names = classes, _names(classes)
        position = {c: i for i, c in enumerate(self._names)}
        for i, value in enumerate(y):
            if str(value) not in position:
                raise ValueError(f"y[{i}] = {_plain(value)!r} is not one of labels={self.classes_.tolist()}")
        self._rows = [{"text": t, "label": str(v)} for t, v in zip(texts, y)]
        self._classifier = self._build(self._rows)
        return self

    @property
    def classifier_(self):
        """The fitted promptclf Classifier (its `report`: calls, tokens, cost and time of the last predict)."""
        check_is_fitted(self)
        if self.__dict__.get("_classifier") is None:  # unpickled: rebuilt from the rows it was fitted on
            self._classifier = self._build(self._rows)
        return self._classifier

    def __getstate__(self):
        """Parameters, classes and training rows: a method's models, clients and locks do not pickle, and
        `classifier_` rebuilds them (offline: from its saved state under PROMPTCLF_HOME, else it trains again)."""
        state = dict(super().__getstate__())
        state.pop("_classifier", None)
        return state

    def predict(self, X) -> np.ndarray:
        predictions = self._predictions(X)
        index = {name: i for i, name in enumerate(self._names)}
        return self.classes_[[index[p.label] for p in predictions]]

    @property
    def assessment_(self):
        """What the validation sample says (promptclf/core/trust.py, `Assessment`); None without one."""
        classifier = self.classifier_
        if classifier.validation and classifier.assessment is None:
            classifier.validate()
        return classifier.assessment

    def accepted(self, X) -> np.ndarray:
        """Whether each row's predicted label is auto-accepted (needs target_accuracy and validation)."""
        if self.target_accuracy is None:
            raise ConfigError("accepted needs target_accuracy= (and validation=): nothing decides acceptance")
        return np.array([bool(p.accepted) for p in self._predictions(X)])

    def _gives_scores(self) -> bool:
        try:
            return provider_of(parse_model(self.model)).gives_scores
        except ConfigError:
            return False

    @available_if(_gives_scores)
    def predict_proba(self, X) -> np.ndarray:
        """Per-label probabilities, columns in `classes_` order (only for methods that score every label)."""
        predictions = self._predictions(X)
        proba = np.zeros((len(predictions), len(self._names)))
        for i, p in enumerate(predictions):
            if not p.scores:
                raise ValueError(f"item {i}: the answer (source {p.source!r}) has no per-label scores")
            proba[i] = [p.scores.get(name, 0.0) for name in self._names]
        return proba / proba.sum(axis=1, keepdims=True)  # scores computed in float32 sum to 1 +- 1e-7

    def __sklearn_tags__(self):
        tags = super().__sklearn_tags__()
        tags.input_tags.string = True
        # Not one_d_array, like scikit-learn's own CountVectorizer: with it check_estimator slices X[:, 0] and
        # then indexes it in 2-D; two_d_array (one column is accepted) or check_estimator runs no check at all.
        tags.input_tags.two_d_array = True
        return tags

    # --- the steps ------------------------------------------------------------------------------------

    def _classes(self, y: np.ndarray) -> np.ndarray:
        if self.labels is not None:
            if isinstance(self.labels, str):
                raise ValueError("labels must be a list of labels, not one string")
            classes = np.asarray(list(self.labels))
        else:
            saved = self._saved_labels()
            classes = np.asarray(saved) if saved is not None else np.unique(y)
        if len(classes) < 2:
            raise ValueError(
                f"y has one class ({_plain(classes[0])!r}): a classifier needs two or more to choose "
                f"between; name the others with labels="
            )
        return classes

    def _saved_labels(self) -> list[str] | None:
        """A `finetuned:<dir>` model's own labels, in its order (it answers only those)."""
        if not self._is_finetuned():
            return None
        from pathlib import Path

        from promptclf.core.labels import LabelSet
        from promptclf.methods.finetune import read_meta

        return LabelSet.from_json(read_meta(Path(parse_model(self.model).name))["labels"]).names

    def _is_finetuned(self) -> bool:
        return isinstance(self.model, str) and parse_model(self.model).provider == "finetuned"

    def _classifier_options(self) -> dict:
        return {name: getattr(self, name) for name in PARAMETERS if name not in ("model", "labels")}

    def _build(self, rows: list[dict]):
        from promptclf.classifier import Classifier

        options = self._classifier_options()
        provider = parse_model(self.model).provider
        if provider == "finetuned":
            return Classifier(self._names, self.model, **options)  # trained already: the examples teach it nothing
        classifier = Classifier(self._names, self.model, examples=rows, **options)
        if provider == "offline":
            classifier.method.fit()  # cross-validation and training belong to fit, not to the first predict
        return classifier

    def _predictions(self, X) -> list:
        classifier = self.classifier_
        texts, width = texts_and_width(X)
        if width != self.n_features_in_:  # worded as scikit-learn words it
            raise ValueError(
                f"X has {width} features, but {type(self).__name__} is expecting {self.n_features_in_} features "
                f"as input. Reshape your data to the {self.n_features_in_} columns fit had (joined into one text)"
            )
        predictions = classifier.predict(texts)
        for i, p in enumerate(predictions):
            if p is None:
                raise ValueError(f"item {i} got no label (empty, with skip_empty=True); predict needs one per row")
        return predictions


def as_texts(X) -> list[str]:
    """One text per row (see `texts_and_width`)."""
    return texts_and_width(X)[0]


def texts_and_width(X) -> tuple[list[str], int]:
    """One text per row, and the number of columns X has: from a list, 1-D array or Series (one column), or a
    2-D array / DataFrame whose cells in a row are joined by newlines (a title and a body become one text). A
    cell is a string, or a number written as text as y's labels are; NaN, inf, None or any other object is
    refused, naming the row."""
    from scipy.sparse import issparse

    if isinstance(X, str):
        raise ValueError("X must be a sequence of texts, not one string: wrap it as [text]")
    if issparse(X):
        raise TypeError("X is a sparse matrix: sparse input is not supported; give one text per row")
    if hasattr(X, "columns"):  # a DataFrame
        rows, width = list(X.itertuples(index=False, name=None)), X.shape[1]
    else:
        if not hasattr(X, "tolist") and not hasattr(X, "__iter__") and hasattr(X, "__array__"):
            X = np.asarray(X)
        values = X.tolist() if hasattr(X, "tolist") else list(X)
        two_d = bool(values) and isinstance(values[0], (list, tuple))
        rows = [tuple(row) if two_d else (row,) for row in values]
        width = len(rows[0]) if two_d else 1
    if width == 0:  # worded as scikit-learn words it, which its checks look for
        raise ValueError(f"X has 0 feature(s) (shape={(len(rows), 0)}) while a minimum of 1 is required.")
    if any(len(row) != width for row in rows):
        raise ValueError("X rows have different lengths; give the same columns in every row")
    return ["\n".join(_cell_text(i, cell) for cell in row) for i, row in enumerate(rows)], width


def _cell_text(i: int, cell) -> str:
    if isinstance(cell, str):
        return cell
    if isinstance(cell, numbers.Real) and not isinstance(cell, bool):
        if not math.isfinite(cell):
            raise ValueError(f"X row {i} holds {cell}: NaN and inf are no text to label")
        return str(_plain(cell))
    raise ValueError(
        f"X row {i} is {type(cell).__name__} ({_plain(cell)!r:.40}), not a string: PromptClassifier labels texts"
    )


def _targets(y) -> np.ndarray:
    from sklearn.utils.multiclass import check_classification_targets
    from sklearn.utils.validation import column_or_1d

    if y is None:
        raise ValueError("PromptClassifier requires y to be passed, but the target y is None")
    y = np.asarray(y)
    if y.ndim == 2 and y.shape[1] == 1:
        y = column_or_1d(y, warn=True)
    if y.ndim != 1:
        raise ValueError(f"y must be one label per row (1-D); got shape {y.shape}")
    if len(y) == 0:
        raise ValueError("fit needs at least one labelled row; got 0 sample(s)")
    check_classification_targets(y)  # a continuous y is an error, not thousands of classes
    return y


def _plain(value):
    """A numpy scalar as the Python value it holds, for messages."""
    return value.item() if isinstance(value, np.generic) else value


def _names(classes: np.ndarray) -> list[str]:
    names = [str(c) for c in classes]
    if len(set(names)) != len(names):
        raise ValueError(f"labels {classes.tolist()} are not distinct as text")
    return names
