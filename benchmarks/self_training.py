"""Embedding zero-shot, self-trained on unlabelled texts: how the settings in promptclf/methods/label_similarity.py
(MIN_UNLABELED, ROUNDS, MIX) were chosen, on all five shared data sets.

Data (benchmarks/_datasets.py): the same 200 seeded test rows of each set as benchmarks/few_labels.py. The
unlabelled texts are drawn from each set's train pool (never the test rows), --draws random draws of each size
(numpy default_rng(10 + draw)); their labels are never used. For each size, rounds and mix: the accuracy
gain over the plain label names on the test rows, per data set as mean/worst over the draws.

    python benchmarks/self_training.py            # about a minute on 2 CPU cores once the texts are embedded

--with-examples: how promptclf/pseudo_labels.py's settings (KEEP, EXAMPLE_WEIGHT, C) were chosen. The
unlabelled texts are what classify() would label: the 800 seeded test rows of benchmarks/few_labels.py, scored
on their first --n-test; examples per class drawn from the pool with seeds 0-2 (sample_per_class). Printed:
mean accuracy over the seeds per data set and budget, for every setting.
"""

from __future__ import annotations

import argparse

import numpy as np
from _common import ROOT  # noqa: F401 - puts the repository on sys.path
from _datasets import NAMES, load
from few_labels import test_sample

from promptclf.core.labels import LabelSet
from promptclf.methods.embeddings import cached_encode, default_encoder
from promptclf.methods.label_similarity import LabelSimilarity, self_train
from promptclf.task.examples import sample_per_class


def gains(name: str, sizes, rounds, mixes, draws: int, n_test: int) -> dict:
    pool, test, label_names = load(name)
    test = test_sample(test, n_test)
    y = np.array([label_names.index(r["label"]) for r in test])
    encoder = default_encoder()
    labels = encoder.encode(LabelSimilarity(label_names).label_texts())
    vectors = cached_encode(encoder, [r["text"] for r in test])
    plain = vectors @ labels.T
    accuracy = lambda scores: float((scores.argmax(1) == y).mean())  # noqa: E731
    out = {"plain": accuracy(plain)}
    for size in sizes:
        drawn = []
        for draw in range(draws):
            order = np.random.default_rng(10 + draw).permutation(len(pool))[:size]
            drawn.append(cached_encode(encoder, [pool[i]["text"] for i in order]))
        for r in rounds:
            centroids = [self_train(unlabeled, labels, r) for unlabeled in drawn]
            for mix in mixes:
                found = [accuracy(mix * (vectors @ c.T) + (1 - mix) * plain) - out["plain"] for c in centroids]
                out[(size, r, mix)] = (float(np.mean(found)), float(np.min(found)))
    return out


def with_examples(budgets, n_test: int) -> str:
    from few_labels import UNLABELED
    from sklearn.linear_model import LogisticRegression

    from promptclf.methods.pseudo_labels import confident, training_set

    grid = [(w, keep, c) for w in (0.25, 0.5, 1.0, 2.0) for keep in (0.5, 1.0) for c in (1.0, 10.0)]
    found: dict = {}
    encoder = default_encoder()
    for name in NAMES:
        pool, test, label_names = load(name)
        labels = LabelSet.of(label_names)
        unlabeled = [r["text"] for r in test_sample(test, UNLABELED)]
        y = np.array([labels.index(r["label"]) for r in test_sample(test, n_test)])
        vectors = cached_encode(encoder, unlabeled)
        probs = LabelSimilarity(labels, encoder=encoder, unlabeled=unlabeled).probabilities(unlabeled)
        for budget in budgets:
            for seed in (0, 1, 2):
                examples = sample_per_class(pool, labels, budget, seed)
                x_ex = cached_encode(encoder, [r["text"] for r in examples])
                y_ex = np.array([labels.index(r["label"]) for r in examples])
                for weight, keep, c in grid:
                    kept = confident(probs, keep)
                    x, t, w = training_set(vectors[kept], probs[kept].argmax(1), x_ex, y_ex, weight)
                    model = LogisticRegression(C=c, max_iter=3000).fit(x, t, sample_weight=w)
                    found.setdefault((weight, keep, c), {}).setdefault((name, budget), []).append(
                        float((model.predict(vectors[: len(y)]) == y).mean())
                    )
    columns = [(n, b) for n in NAMES for b in budgets]
    lines = [
        "| example weight | keep | C | " + " | ".join(f"{n} {b}" for n, b in columns) + " | mean |",
        "|---" * (len(columns) + 4) + "|",
    ]
    for setting, cells in found.items():
        means = [np.mean(cells[col]) for col in columns]
        lines.append(
            "| "
            + " | ".join(map(str, setting))
            + " | "
            + " | ".join(f"{m:.3f}" for m in means)
            + f" | {np.mean(means):.3f} |"
        )
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--sizes", default="50,100,200,400,800")
    parser.add_argument("--rounds", default="1,2")
    parser.add_argument("--mixes", default="0.3,0.5,0.7,1.0")
    parser.add_argument("--draws", type=int, default=3)
    parser.add_argument("--n-test", type=int, default=200)
    parser.add_argument("--with-examples", action="store_true")
    parser.add_argument("--budgets", default="2,8,64", help="examples per class, with --with-examples")
    args = parser.parse_args()
    if args.with_examples:
        print(with_examples([int(b) for b in args.budgets.split(",")], args.n_test))
        return
    sizes, rounds = [int(s) for s in args.sizes.split(",")], [int(r) for r in args.rounds.split(",")]
    mixes = [float(m) for m in args.mixes.split(",")]
    results = {name: gains(name, sizes, rounds, mixes, args.draws, args.n_test) for name in NAMES}
    print(
        f"Self-trained label similarity: accuracy gain over the label names alone on {args.n_test} test rows, "
        f"mean / worst over {args.draws} draws of unlabelled pool texts (mix = weight of the centroids).\n"
    )
    print("| unlabelled | rounds | mix | " + " | ".join(NAMES) + " | mean | worst |")
    print("|---" * (len(NAMES) + 5) + "|")
    print("| (label names alone) | | | " + " | ".join(f"{results[n]['plain']:.3f}" for n in NAMES) + " | | |")
    for size in sizes:
        for r in rounds:
            for mix in mixes:
                cells = [results[n][(size, r, mix)] for n in NAMES]
                print(
                    f"| {size} | {r} | {mix} | "
                    + " | ".join(f"{m:+.3f} / {w:+.3f}" for m, w in cells)
                    + f" | {np.mean([m for m, _ in cells]):+.3f} | {min(w for _, w in cells):+.3f} |"
                )


if __name__ == "__main__":
    main()
