"""Shared fixtures: a small AG News sample (120 rows, tests/data), an oracle that knows its gold labels,
a fault-injecting OpenAI-compatible server on 127.0.0.1, and a fake chat model on LangChain's fakes."""

from __future__ import annotations

from pathlib import Path

import pytest
from langchain_core.language_models.fake_chat_models import GenericFakeChatModel
from langchain_core.messages import AIMessage
from langchain_core.outputs import ChatGeneration, ChatResult

from promptclf.core.data import load_ag_news

from .fake_openai_server import ITEM, FakeOpenAIServer, ServerConfig

DATA = Path(__file__).parent / "data"
LABELS = ["World", "Sports", "Business", "Sci/Tech"]


@pytest.fixture(autouse=True)
def fresh_endpoint_findings():
    """What servers were found to take is remembered per endpoint (model and base URL) for the process; test
    servers reuse ports, so each test starts with none (a later server on a port is another server)."""
    from promptclf.methods import endpoints

    endpoints._ENDPOINTS.clear()
    yield


@pytest.fixture(scope="session", autouse=True)
def promptclf_home(tmp_path_factory):
    """A PROMPTCLF_HOME of this test session's own: answers and embeddings never reach the user's cache, and
    nothing the user cached answers a test. Models already converted there are linked (read only), since
    converting one takes a minute."""
    from promptclf.cache.store import home

    session = tmp_path_factory.mktemp("promptclf-home")
    (session / "models").mkdir()
    converted = home() / "models"
    for model in converted.iterdir() if converted.is_dir() else ():
        if (model / "config.json").exists():
            (session / "models" / model.name).symlink_to(model)
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("PROMPTCLF_HOME", str(session))
        yield session


@pytest.fixture(scope="session")
def sample_rows() -> list[dict]:
    return load_ag_news(DATA / "agnews_sample.csv")


@pytest.fixture(scope="session")
def oracle(sample_rows):
    gold = {" ".join(r["text"].split()): r["label"] for r in sample_rows}

    def answer(text: str) -> str:  # whitespace-insensitive: the scoring prompt puts each item on one line
        return gold.get(" ".join(text.split()), "World")

    return answer


@pytest.fixture
def server_factory(oracle):
    servers = []

    def make(**config):
        server = FakeOpenAIServer(ServerConfig(oracle=config.pop("oracle", oracle), **config))
        servers.append(server.__enter__())
        return server

    yield make
    for server in servers:
        server.stop()


@pytest.fixture
def cache_dir(tmp_path) -> Path:
    return tmp_path / "answers"


class ScriptedChatModel(GenericFakeChatModel):
    """LangChain's GenericFakeChatModel, answering each batch prompt from an oracle instead of a script.

    `faults` is a list consumed one per call: None (a correct answer), "drop" (last answer missing),
    "garbage" (not JSON), "offlabel", "alias" (a lower-case alias of the right label), "raise" (KeyboardInterrupt).
    """

    oracle: object = None
    faults: list = []
    calls: int = 0
    batch_sizes: list = []
    prompts: list = []

    def _generate(self, messages, stop=None, run_manager=None, **kwargs):
        self.calls += 1
        fault = self.faults.pop(0) if self.faults else None
        text = "\n".join(str(m.content) for m in messages)
        self.prompts.append(text)
        items = [(int(i), t) for i, t in ITEM.findall(text)]
        self.batch_sizes.append(len(items))
        if fault == "raise":
            raise KeyboardInterrupt
        answers = [{"index": i, "label": self.oracle(t)} for i, t in items]
        if fault == "drop":
            answers.pop()
        if fault == "offlabel":
            answers[0]["label"] = "Weather"
        if fault == "alias":
            answers = [{**a, "label": a["label"].lower()} for a in answers]
        import json

        content = "Sure! ```json\n" + json.dumps({"answers": answers}) + "\n```" if fault != "garbage" else "no idea"
        usage = {
            "input_tokens": len(text) // 4,
            "output_tokens": len(content) // 4,
            "total_tokens": (len(text) + len(content)) // 4,
        }
        return ChatResult(generations=[ChatGeneration(message=AIMessage(content=content, usage_metadata=usage))])


@pytest.fixture
def scripted_model(oracle):
    def make(faults=()):
        return ScriptedChatModel(messages=iter([]), oracle=oracle, faults=list(faults))

    return make


def scripted_classifier(scripted_model, cache_dir, faults=(), **options):
    """A Classifier over the scripted chat model (one request at a time, 5 items a request unless given)."""
    from promptclf import Classifier

    model = scripted_model(faults)
    options = {"batch_size": 5, "concurrency": 1, **options}
    return Classifier(LABELS, "openai-compatible:fake@http://127.0.0.1:9", llm=model, cache=cache_dir, **options), model


EKMAN = ["anger", "disgust", "fear", "joy", "neutral", "sadness", "surprise"]
EKMAN_SAMPLE = Path(__file__).parent / "data" / "goemotions_ekman_sample.csv"


@pytest.fixture(scope="module")
def emotions() -> dict[str, list[dict]]:
    """The GoEmotions Ekman sample (multi-label): train and test rows of text and label list."""
    import pandas as pd

    frame = pd.read_csv(EKMAN_SAMPLE)
    rows = [(s, {"text": t, "labels": names.split(";")}) for t, names, s in zip(frame.text, frame.labels, frame.split)]
    return {split: [r for s, r in rows if s == split] for split in ("train", "test")}
