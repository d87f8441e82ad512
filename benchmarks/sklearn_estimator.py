"""PromptClassifier (promptclf.sklearn) in scikit-learn's model selection: what fit's examples add to the
`embed` label similarity, and a grid search over the label descriptions, on AG News.

Data: benchmarks/_common.py's seed-0 split. The examples are 8 per label (32 rows) drawn from the train rows by
promptclf.task.examples.sample_per_class with seed 0; the test rows are 1,000 of the 3,000 test rows (numpy
default_rng(0) permutation, as benchmarks/few_labels.py draws them). Grid search: 4-fold StratifiedKFold
(shuffle, random_state=0) on the 32 examples over descriptions None / one line per label.

    python benchmarks/sklearn_estimator.py        # about a minute on 2 CPU cores
"""

from __future__ import annotations

import numpy as np
from _common import LABELS, ag_split
from few_labels import test_sample
from sklearn.model_selection import GridSearchCV, StratifiedKFold

from promptclf import Classifier
from promptclf.core.labels import LabelSet
from promptclf.sklearn import PromptClassifier
from promptclf.task.examples import sample_per_class

DESCRIPTIONS = {
    "World": "world news, politics, conflicts, diplomacy",
    "Sports": "sports, games, players, teams",
    "Business": "business, companies, markets, the economy",
    "Sci/Tech": "science and technology",
}


def main() -> None:
    train, _, test = ag_split()
    examples = sample_per_class(train, LabelSet.of(LABELS), 8, seed=0)
    test = test_sample(test, 1000)
    X, y = [r["text"] for r in examples], [r["label"] for r in examples]
    X_test, y_test = [r["text"] for r in test], np.array([r["label"] for r in test])

    zero_shot = Classifier(LABELS, "embed", cache=False).classify(X_test)
    print(f"embed, label names only (Classifier):      accuracy {np.mean(np.array(zero_shot) == y_test):.3f}")
    est = PromptClassifier("embed", labels=LABELS, cache=False).fit(X, y)
    print(f"embed, fitted on 32 examples (estimator):  accuracy {est.score(X_test, y_test):.3f}")
    grid = GridSearchCV(
        PromptClassifier("embed", labels=LABELS, cache=False),
        {"descriptions": [None, DESCRIPTIONS]},
        cv=StratifiedKFold(4, shuffle=True, random_state=0),
    )
    grid.fit(X, y)
    for params, score in zip(grid.cv_results_["params"], grid.cv_results_["mean_test_score"]):
        print(f"grid: descriptions={'yes' if params['descriptions'] else 'no '}  cross-validated {score:.3f}")
    print(f"grid's choice on the test rows: accuracy {grid.score(X_test, y_test):.3f}")


if __name__ == "__main__":
    main()
