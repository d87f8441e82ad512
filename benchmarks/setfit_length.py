"""SetFit's text length: accuracy and training time of one SetFit model trained on a few-labels cell's examples
with texts cut to each --lengths (tokens; "none": the encoder's own 256, the default), scored on the cell's test
rows. A step costs more with every token, so only sets with long texts (IMDb) train faster when cut.

Data: the cells of few_labels.py (cell_data): examples drawn per class with the seed from each data set's pool,
the first --n-test rows of the seeded test sample scored. One model on all the examples (not the
cross-validation's fold models), SetFit's default budget, seed 0 for training.

    python benchmarks/setfit_length.py --data imdb --budgets 8 --seeds 0,1 --lengths none,64,128
"""

from __future__ import annotations

import argparse
import time

import numpy as np
from _datasets import NAMES
from few_labels import cell_data

from promptclf.methods.setfit import train_setfit


def run(name: str, budget: int, seed: int, length: int | None, n_test: int) -> dict:
    labels, test, _, examples = cell_data(name, budget, seed, n_test)
    started = time.perf_counter()
    model = train_setfit(examples, labels.names, max_length=length)
    trained = time.perf_counter()
    probs = model.probabilities([r["text"] for r in test])
    gold = np.array([labels.index(r["label"]) for r in test])
    return {
        "accuracy": float((probs.argmax(1) == gold).mean()),
        "train_s": trained - started,
        "items_s": len(test) / (time.perf_counter() - trained),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", default=",".join(NAMES))
    parser.add_argument("--budgets", default="8", help="examples per class")
    parser.add_argument("--seeds", default="0,1")
    parser.add_argument("--lengths", default="none,64,128")
    parser.add_argument("--n-test", type=int, default=200)
    args = parser.parse_args()
    lengths = [None if x == "none" else int(x) for x in args.lengths.split(",")]
    print("| data | per class | seed | max_length | accuracy | train s | items/s |\n|---|---|---|---|---|---|---|")
    for name in args.data.split(","):
        for budget in map(int, args.budgets.split(",")):
            for seed in map(int, args.seeds.split(",")):
                for length in lengths:
                    r = run(name, budget, seed, length, args.n_test)
                    print(
                        f"| {name} | {budget} | {seed} | {length or 'none (256)'} | {r['accuracy']:.3f} | "
                        f"{r['train_s']:.0f} | {r['items_s']:.1f} |",
                        flush=True,
                    )


if __name__ == "__main__":
    main()
