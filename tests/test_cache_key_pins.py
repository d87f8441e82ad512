"""Cache keys of today's single-label configurations, pinned: a refactor of how methods are built or how
their identity is computed must find every answer cached before it (a changed key is a cache miss, paid
again). A deliberate change of a key updates the pin here, with the reason in the commit."""

import json

import pytest

from promptclf import Classifier
from promptclf.cache.store import answer_key

LABELS = ["World", "Sports", "Business", "Sci/Tech"]
ROWS = [
    {"text": t, "label": label}
    for t, label in [
        ("Rebels seize the capital after a week of fighting", "World"),
        ("Election results contested by the opposition", "World"),
        ("Striker scores twice as United win the derby", "Sports"),
        ("Veteran wins the marathon in record time", "Sports"),
        ("Shares fall after the bank cuts its forecast", "Business"),
        ("Oil prices climb on supply worries", "Business"),
        ("New chip doubles battery life of phones", "Sci/Tech"),
        ("Telescope finds water on a distant planet", "Sci/Tech"),
    ]
]
SERVER = "http://127.0.0.1:9/v1"  # nothing listens: building a method makes no call
TEXT = "Stocks rally after the rate cut"

CONFIGURATIONS = {
    "openai zero-shot": ("openai:gpt-4o-mini", {}),
    "server few-shot all": (
        f"openai-compatible:m@{SERVER}",
        dict(examples=ROWS[:4], negative_examples=ROWS[4:5], instructions="Label the headline.", system_in_user=False),
    ),
    "server per-class": (f"openai-compatible:m@{SERVER}", dict(examples=ROWS, k=1, system_in_user=False)),
    "server similar": (
        f"openai-compatible:m@{SERVER}",
        dict(examples=ROWS, example_selection="similar", k=2, system_in_user=False),
    ),
    "server parser zero_shot": (
        f"openai-compatible:m@{SERVER}",
        dict(structured="parser", prompt="zero_shot", system_in_user=True),
    ),
    "completions similar": (f"completions:m@{SERVER}", dict(examples=ROWS)),
    "completions all": (
        f"completions:m@{SERVER}",
        dict(examples=ROWS[:4], example_selection="all", calibrate="none", demo_words=8, item_words=40),
    ),
}


def key(model: str, options: dict) -> str:
    method = Classifier(LABELS, model, cache=False, **options).method
    return answer_key(method.identity, Classifier(LABELS, "embed", cache=False).labels.fingerprint(), TEXT)


@pytest.fixture(autouse=True)
def plain_openai(monkeypatch):
    monkeypatch.setenv("OPENAI_API_KEY", "sk-test-pin")
    monkeypatch.delenv("OPENAI_BASE_URL", raising=False)


# The keys of methods that embed (embed, offline, similar examples) name the encoder by its files' contents
# (cache.store.model_digest); they were pinned again when that digest stopped reading the files' times.
PINNED = {
    "openai zero-shot": "a904797350d3726ace06093470e54605b03548bea596e4da93b92b9c1ddeb7f4",
    "server few-shot all": "a1e1399b86a1baff672f0f55fd1675b34e6efd9e69f221e41d6f9d748fc9630e",
    "server per-class": "2ce5664909a88a153af180b4b514e0e7104b1459f71feb829171c0cf77cfd713",
    "server similar": "ecd11a94640938c91dcb6e95a3ca0579d97e4b8f04ab76b6d2998ef821794dcd",
    "server parser zero_shot": "1f20a9abd37d070cda0cb369edc2d3f39dff5a1ab54fc4fcee8942646317abff",
    "completions similar": "e591c8be20a1bbe8d58984aee426ff402185d5237a2222e052a0262a79ccd8cd",
    "completions all": "a196ad584f4f8f512df4f04a293288e994d2ee543ace5733381fa9c0d8ae3eeb",
    "artifact": "f33f8f37604bf6c55ff89a9250eaa915902354c3721286a4342ca5c1caad9c33",
    "artifact completions": "e9844fb49492f659d0be9112b99b94e52742d61c0f09049ef0a613992cc92693",
    "local": "a627f7c3e565818baab5509cf433d1ff83d023d3c73c126b42a83b9f55893ff4",
    "embed": "029217a76083cfac50d6025cb3ee34e11f3ecc91bea0ae77b7e3e0df47676a8f",
    "offline": "f45c3dd4ab461e8f09db2fdcb0250faf31faebc9d54480a3ca559e6dffea8d04",
    # version 5: SetFit first from offline.SETFIT_FIRST_FROM examples per label
    "offline with examples": "aa24e3ec183dfec95e93f506e7180e0b2b4f5bf601993656c079b9b2b80f119d",
}


@pytest.mark.parametrize("name", sorted(CONFIGURATIONS))
def test_the_cache_key_of_a_configuration_is_what_it_was(name):
    model, options = CONFIGURATIONS[name]
    assert key(model, options) == PINNED[name]


def test_an_optimised_prompt_artifact_keeps_its_key(tmp_path):
    path = tmp_path / "old.json"  # the artifact format promptclf optimize wrote before it held a Task
    path.write_text(
        json.dumps(
            {
                "instructions": "Label the news headline by topic.",
                "demos": ROWS[:2],
                "labels": [{"name": n, "description": "", "aliases": []} for n in LABELS],
                "model": "local",
                "optimizer": "bootstrap",
                "metric": "accuracy",
                "dev_score": 0.75,
                "dspy_version": "3.0.0",
                "usage": {},
                "version": 1,
                "created": "2025-01-01T00:00:00Z",
            }
        )
    )
    assert key(f"openai-compatible:m@{SERVER}", dict(prompt=str(path), system_in_user=False)) == PINNED["artifact"]
    assert key(f"completions:m@{SERVER}", dict(prompt=str(path))) == PINNED["artifact completions"]


@pytest.mark.parametrize("model", ["local", "embed", "offline"])
def test_the_embedded_models_keep_their_keys(model):
    assert key(model, dict(unlabeled=[])) == PINNED[model]


def test_the_offline_classifier_with_examples_keeps_its_key():
    assert key("offline", dict(examples=ROWS, unlabeled=[])) == PINNED["offline with examples"]


def test_the_other_hashes_are_what_they_were():
    """Batch request ids, input fingerprints in manifests, a user's chat model's fingerprint and the
    self-training sample, all through promptclf.core.hashing since; values from before that change."""
    from promptclf.methods.label_similarity import stable_sample
    from promptclf.providers.chat_models import llm_fingerprint
    from promptclf.workflows.batch_api import input_fingerprint, request_key

    class L:
        def _get_llm_string(self):
            return "model=x"

    assert request_key(["a", "b"]) == "3554d2b8a1e34099053865de8576d1460b807430ec8c6b85315c9607ba93d308"
    assert input_fingerprint(["héllo", "b"])["sha256"] == (
        "521abf7477190f993c968259907af68242d9afb4c9917002c53a12f6c78629b0"
    )
    assert llm_fingerprint(L()) == "f6644dda4f1c1cf4"
    assert stable_sample(["a", "b", "c", "d"], 2) == ["d", "c"]
