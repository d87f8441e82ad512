"""DSPy prompt optimisation: through the fake OpenAI-compatible server (promptclf's own engine: cache and
usage) and offline with the real embedded model (label scoring inside a dspy.Predict)."""

import json

import pytest

from promptclf import Classifier, ConfigError
from promptclf.cli import main
from promptclf.metrics import classification_metrics
from promptclf.optimize import PromptArtifact, optimize

LABELS = ["World", "Sports", "Business", "Sci/Tech"]


def test_bootstrap_artifact_runs_through_classify_and_rerun_is_cached(server_factory, sample_rows, tmp_path):
    server = server_factory()
    model = f"openai-compatible:gpt-test@{server.base_url}"
    train, dev = sample_rows[:20], sample_rows[20:40]
    artifact = optimize(train, dev, LABELS, model, max_demos=4, out=tmp_path / "a.json", cache=tmp_path / "c")
    assert len(artifact.demos) == 4 and artifact.dev_score == 1.0 and artifact.usage["requests"] > 0
    saved = json.loads((tmp_path / "a.json").read_text())
    assert {"instructions", "demos", "labels", "model", "dev_score", "dspy_version", "version"} <= saved.keys()
    requests = server.log.requests
    again = optimize(train, dev, LABELS, model, max_demos=4, cache=tmp_path / "c")
    assert server.log.requests == requests and again.usage["cache_hits"] > 0  # the rerun made no calls

    clf = Classifier(LABELS, model, prompt=tmp_path / "a.json", cache=tmp_path / "answers")
    assert clf.method.prompt.variables["instructions"] == artifact.instructions
    assert [e["text"] for e in clf.method.prompt.variables["examples"]] == [d["text"] for d in artifact.demos]
    predicted = clf.classify([r["text"] for r in dev])
    score = classification_metrics([r["label"] for r in dev], predicted, LABELS)["accuracy"]
    assert score == artifact.dev_score
    body = server.log.bodies[-1]["messages"]
    assert artifact.instructions in body[0]["content"] and "<example>" in body[1]["content"]


def test_artifact_for_another_label_set_is_refused(tmp_path):
    PromptArtifact("x", [], [{"name": "A"}, {"name": "B"}], "local", "bootstrap", "accuracy", 0.5, "3").save(
        tmp_path / "a.json")
    with pytest.raises(ConfigError, match=r"optimised for labels \['A', 'B'\]"):
        Classifier(LABELS, "local", prompt=tmp_path / "a.json")


def test_embedded_model_optimises_offline_and_classify_reproduces_the_dev_score(sample_rows, tmp_path):
    train, dev = sample_rows[:8], sample_rows[8:20]
    artifact = optimize(train, dev, LABELS, "local", max_demos=2, out=tmp_path / "local.json", cache=False)
    assert len(artifact.demos) == 2 and artifact.usage["compute_s"] > 0
    clf = Classifier(LABELS, "local", prompt=tmp_path / "local.json", cache=False)
    predicted = clf.classify([r["text"] for r in dev])
    assert classification_metrics([r["label"] for r in dev], predicted, LABELS)["accuracy"] == artifact.dev_score


def test_cli_optimize_refuses_mipro_on_the_embedded_model(tmp_path, capsys):
    data = "tests/data/agnews_sample.csv"
    code = main(["optimize", "--train", data, "--dev", data, "--labels", "1,2,3,4", "--text-column", "title",
                 "--optimizer", "mipro", "--out", str(tmp_path / "a.json")])
    assert code == 2 and "needs a generative model" in capsys.readouterr().err


def test_mipro_runs_through_the_engine_and_counts_its_calls(server_factory, sample_rows, tmp_path):
    server = server_factory()
    artifact = optimize(sample_rows[:30], sample_rows[30:50], LABELS, f"openai-compatible:gpt-test@{server.base_url}",
                        optimizer="mipro", max_demos=2, cache=False, out=tmp_path / "m.json")
    assert artifact.optimizer == "mipro" and artifact.dev_score == 1.0
    assert artifact.usage["requests"] == server.log.chat_requests > 50  # every DSPy call went through promptclf
    assert artifact.usage["prompt_tokens"] > 0
