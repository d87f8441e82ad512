"""Benchmark: tabular rows as prompts (TabLLM-style) against classical models on the same split.

Data: scikit-learn's bundled breast-cancer data (569 rows; the 10 "mean ..." features, to keep prompts short).
Split: seed-0 shuffle (numpy default_rng(0).permutation), train 400 rows, test 169. Each row is serialised as
"- feature: value" lines plus the question "Is the tumour malignant?" (promptclf.core.data.serialize_rows).
Methods: the embedded Gemma 3 270M by label scoring of the two answers Yes/No (zero-shot, calibrated; and with
2 nearest demonstrations), a 4-bit LoRA MiniLM classifier fine-tuned on the serialised rows (3 epochs),
logistic regression and gradient boosting on the raw features.
"""

import time

import _common  # noqa: F401 - puts the repository on sys.path
import numpy as np
from sklearn.datasets import load_breast_cancer
from sklearn.ensemble import GradientBoostingClassifier
from sklearn.linear_model import LogisticRegression
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import StandardScaler

from promptclf import Classifier
from promptclf.core.data import serialize_rows
from promptclf.core.usage import Usage
from promptclf.methods.finetune import finetune

data = load_breast_cancer(as_frame=True)
features = [c for c in data.frame.columns if c.startswith("mean ")]
X = data.frame[features]
y = np.where(data.target == 0, "Yes", "No")  # target 0 = malignant
order = np.random.default_rng(0).permutation(len(X))
train, test = order[:400], order[400:]
texts = serialize_rows(X, question="Is the tumour malignant?")
rows = [{"text": texts[i], "label": y[i]} for i in range(len(X))]
gold = y[test]
results = []


def record(name, predicted, seconds):
    results.append((name, float(np.mean(np.asarray(predicted) == gold)), len(test) / seconds))


for name, model in [
    ("logistic regression", make_pipeline(StandardScaler(), LogisticRegression(max_iter=1000))),
    ("gradient boosting", GradientBoostingClassifier(random_state=0)),
]:
    model.fit(X.iloc[train], y[train])
    started = time.perf_counter()
    record(name, model.predict(X.iloc[test]), time.perf_counter() - started)

for name, options in [
    ("gemma-270m zero-shot Yes/No", dict(calibrate="content-free")),
    ("gemma-270m 2 nearest demos", dict(examples=[rows[i] for i in train], k=2, demo_words=None)),
]:
    clf = Classifier(["Yes", "No"], "local", cache=False, progress=False, max_length=1024, **options)
    started = time.perf_counter()
    record(name, clf.classify([texts[i] for i in test]), time.perf_counter() - started)

lora = finetune(
    [rows[i] for i in train], ["Yes", "No"], out="reports/tabular-lora", epochs=3, max_length=256, progress=False
)
started = time.perf_counter()
record(
    "MiniLM 4-bit LoRA on serialised rows",
    [p.label for _, p in sorted(lora.predict([texts[i] for i in test], Usage()))],
    time.perf_counter() - started,
)

print(f"data: breast cancer (sklearn), {len(features)} features; split: seed-0 shuffle, 400 train / {len(test)} test")
print(f"{'method':>40} {'accuracy':>8} {'items/s':>9}")
for name, acc, rate in results:
    print(f"{name:>40} {acc:>8.3f} {rate:>9.1f}")
print(f"majority class: {max(np.mean(gold == 'Yes'), np.mean(gold == 'No')):.3f}")
