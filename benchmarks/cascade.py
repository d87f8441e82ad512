"""A cascade on AG News: a local model trained on a few labels answers first, and only the items it is unsure
of go to the "API". The API here is a SIMULATION: the test suite's fake OpenAI-compatible server answering
the gold label for about 90% of items and a wrong label for a seeded ~10% (tests/fake_openai_server.py
noisy_oracle: which items are wrong depends on the item's text and the seed only, independent of how hard
the item is). A real API's mistakes concentrate on hard items, the same ones the local model is unsure of,
so a real cascade gains less on those items than this simulation shows.

Data: AG News test.csv, text = title + description, seed-0 shuffle: train rows 0-3,999, dev 4,000-4,599,
test 4,600-7,599 (benchmarks/_common.py). Local stage: SetFit (MiniLM, promptclf.methods.setfit defaults,
seed 0) trained on --per-class rows of each label drawn from the train rows with the seed (or --local emb-lr:
logistic regression on the same rows' MiniLM embeddings). Dev: the 600 dev rows. Test: the first --n-test
rows of the test split. Both stages answer every dev and test item (the frontier needs both at every
threshold); the threshold is chosen on the dev rows for --goal (default drop:0.01: the fewest API items at
no more than 1 point below the API alone), then the cascade runs on the test rows at that threshold and its
requests to the server are counted. Cost: the fake server's token counts (characters / 4) at an ASSUMED
price, gpt-4o-mini's list price ($0.15 / $0.60 per 1M input / output tokens), batch 10 items per request.

    nice -n 10 python benchmarks/cascade.py                 # SetFit 8 per class, 500 test items
    python benchmarks/cascade.py --local emb-lr --n-test 300
"""

from __future__ import annotations

import argparse
import json
import time
from dataclasses import asdict
from pathlib import Path

from _common import DATA, LABELS, SPLIT_TEXT, ag_split  # also puts the repository on sys.path

from promptclf.cascade import choose_threshold, frontier, measure
from promptclf.classifier import Classifier
from promptclf.core.labels import LabelSet
from promptclf.core.usage import Usage
from promptclf.methods.baselines import EmbeddingLR
from promptclf.task.examples import sample_per_class
from promptclf.workflows.compare import frontier_markdown, plot_frontier, write_frontier_csv
from tests.fake_openai_server import FakeOpenAIServer, ServerConfig, noisy_oracle

PRICE = {"openai-compatible:gpt-4o-mini": (0.15, 0.60)}  # assumed: gpt-4o-mini's list price, USD per 1M tokens


def train_local(kind: str, examples: list[dict], seed: int):
    if kind == "setfit":
        from promptclf.methods.setfit import train_setfit

        return train_setfit(examples, LABELS, seed=seed)
    return EmbeddingLR(LABELS, seed=seed).fit([r["text"] for r in examples], [r["label"] for r in examples])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--local", default="setfit", choices=["setfit", "emb-lr"])
    parser.add_argument("--per-class", type=int, default=8)
    parser.add_argument("--n-test", type=int, default=500)
    parser.add_argument("--error-rate", type=float, default=0.10, help="the simulated API's share of wrong answers")
    parser.add_argument("--goal", default="drop:0.01")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--out", default="reports/cascade")
    args = parser.parse_args()
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)

    train, dev, test = ag_split()
    test = test[: args.n_test]
    examples = sample_per_class(train, LabelSet.of(LABELS), args.per_class, args.seed)
    started = time.perf_counter()
    local = train_local(args.local, examples, args.seed)
    train_s = time.perf_counter() - started

    gold = {" ".join(r["text"].split()): r["label"] for r in train + dev + test}
    simulated = noisy_oracle(lambda text: gold[" ".join(text.split())], LABELS, args.error_rate, seed=args.seed)
    with FakeOpenAIServer(ServerConfig(oracle=simulated)) as server:
        model = f"openai-compatible:gpt-4o-mini@{server.base_url}"

        def api() -> Classifier:
            return Classifier(LABELS, model, cache=False, progress=False, prices=PRICE)

        dev_api = api()
        dev_record = measure(local, dev_api.method, dev, api_usage=dev_api.report)
        dev_points = frontier(
            dev_record.confidence, dev_record.local_correct, dev_record.api_correct, dev_record.api_cost_per_item
        )
        chosen = choose_threshold(dev_points, args.goal)

        api_only = api()
        requests_before = server.log.requests
        test_record = measure(local, api_only.method, test, api_usage=api_only.report)
        api_only_requests = server.log.requests - requests_before
        test_points = frontier(
            test_record.confidence, test_record.local_correct, test_record.api_correct, test_record.api_cost_per_item
        )
        at_chosen = frontier(
            test_record.confidence,
            test_record.local_correct,
            test_record.api_correct,
            test_record.api_cost_per_item,
            thresholds=[chosen.threshold],
        )[0]

        cascade = Classifier(
            LABELS, model, cache=False, progress=False, prices=PRICE, cascade_from=local, cascade_below=chosen.threshold
        )
        requests_before = server.log.requests
        started = time.perf_counter()
        predicted = cascade.classify([r["text"] for r in test])
        cascade_s = time.perf_counter() - started
        cascade_requests = server.log.requests - requests_before
    accuracy = sum(p == r["label"] for p, r in zip(predicted, test)) / len(test)
    report: Usage = cascade.report

    row = {
        "model": f"{args.local} ({args.per_class} per class) → simulated API",
        "stages": f"{args.local} → simulated API",
        "threshold": chosen.threshold,
        "goal": args.goal,
        "dev_point": asdict(chosen),
        "test_point": asdict(at_chosen),
        "frontier": {"dev": [asdict(p) for p in dev_points], "test": [asdict(p) for p in test_points]},
    }
    summary = {
        "data": DATA,
        "split": SPLIT_TEXT,
        "n_dev": len(dev),
        "n_test": len(test),
        "seed": args.seed,
        "local": args.local,
        "per_class": args.per_class,
        "local_train_s": train_s,
        "api": f"SIMULATED: fake server, gold label except a seeded {args.error_rate:.0%} of items",
        "price_assumed": "gpt-4o-mini list price, $0.15 / $0.60 per 1M input / output tokens",
        "local_accuracy_test": float(test_record.local_correct.mean()),
        "api_accuracy_test": float(test_record.api_correct.mean()),
        "api_only": {
            "requests": api_only_requests,
            "items": len(test),
            "cost_per_1k_items": 1000 * api_only.report.cost_usd / len(test),
        },
        "cascade": {
            "threshold": chosen.threshold,
            "goal": args.goal,
            "accuracy": accuracy,
            "requests": cascade_requests,
            "items_to_api": report.escalated,
            "cost_per_1k_items": 1000 * report.cost_usd / len(test),
            "seconds": cascade_s,
            "requests_saved": 1 - cascade_requests / api_only_requests,
        },
        "dev_point": asdict(chosen),
        "test_point": asdict(at_chosen),
    }
    (out / "cascade.json").write_text(json.dumps({**summary, "frontier": row["frontier"]}, indent=2))
    plot_frontier(row, out / "frontier.png")
    write_frontier_csv(row["frontier"], out / "frontier.csv")

    print(
        f"# Cascade on AG News: {args.local} ({args.per_class} per class) → SIMULATED API "
        f"({1 - args.error_rate:.0%} accurate fake server)\n"
    )
    print(
        f"Data: {DATA}; {SPLIT_TEXT}; dev = the 600 dev rows, test = the first {len(test)} test rows; seed "
        f"{args.seed}. Price ASSUMED: {summary['price_assumed']}, fake server token counts.\n"
    )
    print(
        f"local alone: accuracy {summary['local_accuracy_test']:.3f} (trained in {train_s:.0f} s) | API alone "
        f"(simulated): accuracy {summary['api_accuracy_test']:.3f}, {api_only_requests} requests, "
        f"${summary['api_only']['cost_per_1k_items']:.4f} per 1k items"
    )
    c = summary["cascade"]
    print(
        f"cascade at t={c['threshold']:.4f} (chosen on dev for {args.goal}): accuracy {accuracy:.3f} "
        f"({accuracy - summary['api_accuracy_test']:+.3f} vs API alone), {c['items_to_api']} of {len(test)} items "
        f"and {cascade_requests} requests to the API ({c['requests_saved']:.1%} fewer requests), "
        f"${c['cost_per_1k_items']:.4f} per 1k items\n"
    )
    print("\n".join(frontier_markdown(row)))
    print(f"\nwrote {out}/cascade.json, frontier.csv, frontier.png")


if __name__ == "__main__":
    main()
