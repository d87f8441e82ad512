"""Benchmark: the comparison table on AG News.

Data: ../shared/data/ag_news/test.csv (7,600 rows), text = title + description (or --text-column).
Split: seeded shuffle (numpy default_rng(seed).permutation), then train rows 0..3,999, dev 4,000..4,599,
test the last 3,000 (--split). Seed: 0 (--seed). Answers are not cached, so every call and second is real.

    python benchmarks/agnews_compare.py --methods lora-4bit,lora,emb-lr,tfidf-lr
    python benchmarks/agnews_compare.py --methods zero-shot,few-shot --split 4000/600/1000
"""

import argparse

from promptclf.core.data import default_ag_news_path, load_ag_news
from promptclf.workflows.compare import compare, markdown

parser = argparse.ArgumentParser()
parser.add_argument("--methods", default="zero-shot,few-shot,lora-4bit,lora,emb-lr,tfidf-lr")
parser.add_argument("--split", default="4000/600/3000")
parser.add_argument("--seed", type=int, default=0)
parser.add_argument("--model", default="local")
parser.add_argument("--text-column", default="title,description")
parser.add_argument("--prompt", help="optimised prompt artifact for the 'optimized' method")
parser.add_argument("--epochs", type=float, default=2, help="LoRA training epochs (early stopping may end sooner)")
parser.add_argument("--out", default="reports/agnews_compare")
args = parser.parse_args()

rows = load_ag_news(text_columns=args.text_column)
split = [int(x) for x in args.split.split("/")]
results = compare(
    rows,
    ["World", "Sports", "Business", "Sci/Tech"],
    methods=args.methods.split(","),
    split=split,
    seed=args.seed,
    model=args.model,
    out=args.out,
    prompt=args.prompt,
    cache=False,
    finetune_options={"epochs": args.epochs},
    data_name=f"{default_ag_news_path().name} ({args.text_column})",
)
print(
    markdown(
        results, dict(data=f"AG News test.csv ({args.text_column})", split=split, seed=args.seed, model=args.model)
    )
)
base = {r["method"]: r for r in results}.get("tfidf-lr")
if base:
    print("accuracy relative to TF-IDF + LR (same run):")
    for r in results:
        print(f"  {r['method']:10s} {r['accuracy'] / base['accuracy']:.3f}x")
