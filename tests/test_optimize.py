"""DSPy prompt optimisation: through the fake OpenAI-compatible server (promptclf's own engine: cache and
usage) and offline with the real embedded model (label scoring inside a dspy.Predict)."""

import json

import pandas as pd
import pytest

from promptclf import Classifier, ConfigError, LabelSet, classify
from promptclf.cache.store import AnswerCache
from promptclf.cli import main
from promptclf.core.metrics import classification_metrics
from promptclf.providers.registry import parse_model
from promptclf.task.artifacts import PromptArtifact
from promptclf.workflows.optimize import optimize

from .fake_openai_server import ITEM, binomial_spread, noisy_oracle

LABELS = ["World", "Sports", "Business", "Sci/Tech"]


def accuracy_of(answer, rows) -> float:
    return sum(answer(r["text"]) == r["label"] for r in rows) / len(rows)


@pytest.fixture
def uneven_server(server_factory, oracle):
    """Right in DSPy's own one-item format, wrong on some items in promptclf's batched prompt: a score taken
    in one format says nothing about the other."""
    return server_factory(item_oracle=lambda text: oracle(text) if len(text) % 3 else "World")


def test_bootstrap_scores_the_deployed_prompt_and_rerun_is_cached(uneven_server, sample_rows, tmp_path):
    server = uneven_server
    model = f"openai-compatible:gpt-test@{server.base_url}"
    train, dev = sample_rows[:20], sample_rows[20:60]
    artifact = optimize(train, dev, LABELS, model, max_demos=4, out=tmp_path / "a.json", cache=tmp_path / "c")
    assert len(artifact.demos) == 4 and artifact.usage["requests"] > 0
    saved = json.loads((tmp_path / "a.json").read_text())
    assert {"task", "model", "optimizer", "metric", "dev_score", "versions", "version"} <= saved.keys()
    assert saved["versions"]["dspy"] and saved["task"]["template"] == "few_shot"
    requests = server.log.requests
    again = optimize(train, dev, LABELS, model, max_demos=4, cache=tmp_path / "c")
    assert server.log.requests == requests and again.usage["cache_hits"] > 0  # the rerun made no calls

    clf = Classifier(LABELS, model, prompt=tmp_path / "a.json", cache=tmp_path / "answers")
    assert clf.method.prompt.variables["instructions"] == artifact.instructions
    assert [e["text"] for e in clf.method.prompt.variables["examples"]] == [d["text"] for d in artifact.demos]
    predicted = clf.classify([r["text"] for r in dev])
    score = classification_metrics([r["label"] for r in dev], predicted, LABELS)["accuracy"]
    assert 0.5 < score == artifact.dev_score < 1.0
    body = server.log.bodies[-1]["messages"]
    assert artifact.instructions in body[0]["content"] and "<example>" in body[-1]["content"]


def test_optimisation_scores_the_batches_classify_sends(server_factory, sample_rows):
    """Every prompt the optimiser scores holds as many items as `classify` puts in one request: a demo kept
    because a one-item prompt got it right says nothing of the ten-item prompt that is deployed."""
    server = server_factory()
    model = f"openai-compatible:gpt-test@{server.base_url}"
    deployed = Classifier(LABELS, model, cache=False).options["batch_size"]
    optimize(sample_rows[: 2 * deployed], sample_rows[40 : 40 + deployed], LABELS, model, max_demos=4, cache=False)
    items_per_request = [len(ITEM.findall(body["messages"][-1]["content"])) for body in server.log.bodies]
    assert len(items_per_request) > 1 and set(items_per_request) == {deployed}


def test_bootstrap_beats_the_unoptimised_prompt_on_a_model_that_learns_from_examples(
    server_factory, oracle, sample_rows
):
    """A simulated model wrong on half the items when the prompt shows no examples and on a tenth when it does:
    the optimised prompt must carry demos, score as that model does with them, and beat the prompt it started
    from. An optimiser that keeps no demos scores about 0.5."""
    untaught, taught = noisy_oracle(oracle, LABELS, 0.5, seed=4), noisy_oracle(oracle, LABELS, 0.1, seed=5)
    server = server_factory(item_oracle=untaught, taught_oracle=taught)
    model = f"openai-compatible:gpt-test@{server.base_url}"
    train, dev = sample_rows[:16], sample_rows[20:60]
    artifact = optimize(train, dev, LABELS, model, max_demos=4, cache=False)
    unoptimised = Classifier(LABELS, model, cache=False).classify([r["text"] for r in dev])
    before = classification_metrics([r["label"] for r in dev], unoptimised, LABELS)["accuracy"]
    assert before == accuracy_of(untaught, dev) and artifact.demos
    # the taught model's accuracy on these 40 rows, within 3 binomial sd (0.14) of its rate 0.9
    assert artifact.dev_score == accuracy_of(taught, dev) and abs(artifact.dev_score - 0.9) <= binomial_spread(0.9, 40)
    assert artifact.dev_score > before


def test_engine_sends_the_requests_settings_and_samples_anew(server_factory, tmp_path):
    from dspy.lm15 import Config, Message, Request

    from promptclf.core.usage import Usage
    from promptclf.workflows.optimize import dspy_lm

    server = server_factory()
    model = f"openai-compatible:gpt-test@{server.base_url}"

    def ask(lm, temperature, **rollout):
        lm(
            Request(
                model=lm.model,
                messages=(Message.user("Propose an instruction."),),
                config=Config(temperature=temperature, max_tokens=77),
            ),
            **rollout,
        )

    lm = dspy_lm(model, Usage(), AnswerCache(tmp_path / "c"))
    for rollout in (1, 2):
        ask(lm, 0.9, rollout_id=rollout)
    ask(lm, 0.0)
    ask(lm, 0.0)
    sent = [(b["temperature"], b.get("max_completion_tokens", b.get("max_tokens"))) for b in server.log.bodies]
    assert sent == [(0.9, 77), (0.9, 77), (0.0, 77)]  # two samples; the deterministic request once
    rerun = dspy_lm(model, Usage(), AnswerCache(tmp_path / "c"))
    for rollout in (1, 2):
        ask(rerun, 0.9, rollout_id=rollout)
    assert server.log.requests == 3  # the same samples, in the same order, from the cache


def test_artifact_for_another_label_set_is_refused(tmp_path):
    PromptArtifact.of(
        "x", [], LabelSet.of(["A", "B"]), model="local", optimizer="bootstrap", metric="accuracy", dev_score=0.5
    ).save(tmp_path / "a.json")
    with pytest.raises(ConfigError, match=r"optimised for labels \['A', 'B'\]"):
        Classifier(LABELS, "local", prompt=tmp_path / "a.json")


def _artifact_for(model: str, rows: list[dict], path):
    demos = [{"text": r["text"], "label": r["label"]} for r in rows]
    return PromptArtifact.of(
        "Label the news topic.",
        demos,
        LabelSet.of(LABELS),
        model=parse_model(model).id,
        optimizer="bootstrap",
        metric="accuracy",
        dev_score=0.9,
    ).save(path)


def test_no_model_given_with_an_artifact_parses_as_its_model(server_factory, sample_rows, tmp_path):
    model = f"openai-compatible:gpt-test@{server_factory().base_url}"
    artifact = _artifact_for(model, sample_rows[:2], tmp_path / "a.json")
    assert parse_model(None, prompt=artifact) == parse_model(model)
    assert parse_model(None, prompt=str(artifact)) == parse_model(model)
    assert parse_model("local", prompt=artifact) == parse_model("local")  # a model given is the model used
    assert parse_model(None, prompt="my_template.jinja") == parse_model("offline")


def test_classify_with_an_artifact_and_no_model_asks_the_artifacts_model(server_factory, sample_rows, tmp_path):
    server = server_factory()
    artifact = _artifact_for(f"openai-compatible:gpt-test@{server.base_url}", sample_rows[:2], tmp_path / "a.json")
    rows = sample_rows[10:15]
    assert classify([r["text"] for r in rows], LABELS, prompt=artifact, cache=False) == [r["label"] for r in rows]
    assert server.log.chat_requests == 1 and "Label the news topic." in server.log.bodies[0]["messages"][0]["content"]


def test_embedded_model_optimises_offline_and_classify_reproduces_the_dev_score(sample_rows, tmp_path):
    train, dev = sample_rows[:8], sample_rows[8:20]
    artifact = optimize(train, dev, LABELS, "local", max_demos=2, out=tmp_path / "local.json", cache=False)
    assert len(artifact.demos) == 2 and artifact.usage["compute_s"] > 0
    clf = Classifier(LABELS, "local", prompt=tmp_path / "local.json", cache=False)
    predicted = clf.classify([r["text"] for r in dev])
    assert classification_metrics([r["label"] for r in dev], predicted, LABELS)["accuracy"] == artifact.dev_score


def test_label_scoring_on_a_server_optimises_like_the_embedded_model(server_factory, sample_rows, tmp_path):
    """completions: scores labels as `local` does, so the registry gives it the same bootstrap path."""
    server = server_factory()
    model = f"completions:tiny@{server.base_url}"
    train, dev = sample_rows[:8], sample_rows[8:20]
    artifact = optimize(train, dev, LABELS, model, max_demos=2, out=tmp_path / "c.json", cache=False)
    assert len(artifact.demos) == 2 and server.log.requests > 0
    clf = Classifier(LABELS, model, prompt=tmp_path / "c.json", cache=False)
    predicted = clf.classify([r["text"] for r in dev])
    assert classification_metrics([r["label"] for r in dev], predicted, LABELS)["accuracy"] == artifact.dev_score
    with pytest.raises(ConfigError, match="scores labels and supports optimizer='bootstrap'"):
        optimize(train, dev, LABELS, model, optimizer="mipro", cache=False)


def test_cli_optimize_refuses_mipro_on_the_embedded_model(tmp_path, capsys):
    data = "tests/data/agnews_sample.csv"
    code = main(
        [
            "optimize",
            "--train",
            data,
            "--dev",
            data,
            "--labels",
            "1,2,3,4",
            "--text-column",
            "title",
            "--optimizer",
            "mipro",
            "--out",
            str(tmp_path / "a.json"),
        ]
    )
    assert code == 2 and "needs a generative model" in capsys.readouterr().err


def test_mipro_runs_through_the_engine_and_counts_its_calls(uneven_server, sample_rows, tmp_path):
    server = uneven_server
    model = f"openai-compatible:gpt-test@{server.base_url}"
    dev = sample_rows[30:50]
    artifact = optimize(
        sample_rows[:30], dev, LABELS, model, optimizer="mipro", max_demos=2, cache=False, out=tmp_path / "m.json"
    )
    assert artifact.optimizer == "mipro"
    sampled = [b for b in server.log.bodies if b["temperature"] > 0]
    assert len(sampled) >= 2  # MIPROv2's proposals are sampled as it asks, not answered at temperature 0
    batched = [b for b in server.log.bodies if ITEM.search(b["messages"][-1]["content"])]
    assert len(batched) > 1  # and the labelling, in promptclf's batched prompts
    assert artifact.usage["requests"] == server.log.chat_requests  # every DSPy call went through promptclf
    assert artifact.usage["prompt_tokens"] > 0
    predicted = Classifier(LABELS, model, prompt=tmp_path / "m.json", cache=False).classify([r["text"] for r in dev])
    assert classification_metrics([r["label"] for r in dev], predicted, LABELS)["accuracy"] == artifact.dev_score


@pytest.mark.parametrize("optimizer", ["bootstrap", "mipro"])
def test_a_refused_key_stops_optimisation_at_once(server_factory, tmp_path, capsys, optimizer):
    server = server_factory(api_key="another-key")
    data = "tests/data/agnews_sample.csv"
    code = main(
        [
            "optimize",
            "--train",
            data,
            "--dev",
            data,
            "--labels",
            "1,2,3,4",
            "--text-column",
            "title",
            "--optimizer",
            optimizer,
            "--model",
            f"openai-compatible:gpt-test@{server.base_url}",
            "--no-cache",
            "--out",
            str(tmp_path / "a.json"),
        ]
    )
    err = capsys.readouterr().err.strip().splitlines()
    assert code == 2 and "401" in err[-1] and err[-1].startswith("promptclf: error:")
    assert server.log.requests == 1  # DSPy's own error budget is not spent asking again


def test_cli_with_an_artifact_and_no_model_asks_the_artifacts_model(server_factory, sample_rows, tmp_path):
    from promptclf.cli import main

    server = server_factory()
    artifact = _artifact_for(f"openai-compatible:gpt-test@{server.base_url}", sample_rows[:2], tmp_path / "a.json")
    rows = sample_rows[10:15]
    pd.DataFrame({"text": [r["text"] for r in rows]}).to_csv(tmp_path / "in.csv", index=False)
    argv = ["classify", "--input", str(tmp_path / "in.csv"), "--output", str(tmp_path / "out.csv")]
    code = main(argv + ["--labels", ",".join(LABELS), "--prompt", str(artifact), "--no-cache", "--no-progress"])
    assert code == 0
    assert pd.read_csv(tmp_path / "out.csv")["predicted_label"].tolist() == [r["label"] for r in rows]
    assert server.log.chat_requests == 1
