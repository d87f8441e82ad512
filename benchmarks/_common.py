"""Shared by the benchmarks: AG News, its seeded split, and the fake OpenAI-compatible server from tests/."""

import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from promptclf.core.data import load_ag_news, split  # noqa: E402
from tests.fake_openai_server import FakeOpenAIServer, ServerConfig  # noqa: E402

LABELS = ["World", "Sports", "Business", "Sci/Tech"]
SPLIT = (4000, 600, 3000)
SEED = 0
DATA = "AG News test.csv (7,600 rows), text = title + description"
SPLIT_TEXT = "seed-0 shuffle (numpy default_rng(0).permutation): train rows 0-3,999, dev 4,000-4,599, test 4,600-7,599"


def ag_split():
    return split(load_ag_news(), SPLIT, seed=SEED)


def oracle_server(rows, **config):
    """The fake server, answering every item with its gold label (so only the plumbing is measured)."""
    gold = {" ".join(r["text"].split()): r["label"] for r in rows}
    return FakeOpenAIServer(ServerConfig(oracle=lambda t: gold.get(" ".join(t.split()), "World"), **config))
