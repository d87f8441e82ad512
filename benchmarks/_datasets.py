"""The real data sets in ../shared/data/ as (train pool, test rows, label names), for the benchmarks.

AG News has one file: its seed-0 shuffle gives the pool (rows 0-3,999) and the test rows (the last 3,000),
as everywhere in benchmarks/. SMS Spam has no split: a seeded stratified 70/30 one. GoEmotions (Ekman,
7 labels) is multi-label: the single-label rows only. TREC, IMDb: their own train/test files.
"""

from __future__ import annotations

import csv
from pathlib import Path

from _common import ROOT

from promptclf.core.data import load_ag_news, split

SHARED = ROOT.parent / "shared" / "data"
NAMES = ("ag_news", "trec", "imdb", "sms_spam", "goemotions_ekman")


def _csv(path: Path, label_column: str = "label") -> list[dict]:
    with open(path, newline="", encoding="utf-8") as f:
        return [
            {"text": " ".join(r["text"].replace("<br />", " ").split()), "label": r[label_column]}
            for r in csv.DictReader(f)
        ]


def _stratified(rows: list[dict], test_fraction: float, seed: int) -> tuple[list[dict], list[dict]]:
    import numpy as np

    rng = np.random.default_rng(seed)
    train, test = [], []
    for label in sorted({r["label"] for r in rows}):
        group = [r for r in rows if r["label"] == label]
        order = rng.permutation(len(group))
        cut = int(round(len(group) * test_fraction))
        test += [group[i] for i in order[:cut]]
        train += [group[i] for i in order[cut:]]
    return train, test


def load(name: str) -> tuple[list[dict], list[dict], list[str]]:
    if name == "ag_news":
        pool, _, test = split(load_ag_news(), (4000, 600, 3000), seed=0)
        return pool, test, ["World", "Sports", "Business", "Sci/Tech"]
    if name in ("trec", "imdb"):
        train, test = _csv(SHARED / name / "train.csv"), _csv(SHARED / name / "test.csv")
    elif name == "sms_spam":
        train, test = _stratified(_csv(SHARED / "sms_spam" / "sms_spam.csv"), 0.3, seed=0)
    elif name == "goemotions_ekman":
        single = lambda rows: [r for r in rows if ";" not in r["label"]]  # noqa: E731
        train = single(_csv(SHARED / "goemotions" / "goemotions_ekman_train.csv", "labels"))
        test = single(_csv(SHARED / "goemotions" / "goemotions_ekman_test.csv", "labels"))
    else:
        raise ValueError(f"unknown data set {name!r}: choose from {NAMES}")
    return train, test, sorted({r["label"] for r in train})
