"""The batch API path (promptclf/batch_api.py) against the fake server's /v1/files and /v1/batches."""

import json
import re

import pandas as pd
import pytest

from promptclf.workflows.batch_api import BATCH_DISCOUNT, BatchJob, request_key
from promptclf.cache.store import answer_key
from promptclf.classifier import Classifier
from promptclf.cli import main

from .conftest import LABELS
from .fake_openai_server import ITEM, BatchConfig

PRICES = {"openai-compatible:gpt-test": (1.0, 2.0)}


def model(server) -> str:
    return f"openai-compatible:gpt-test@{server.base_url}"


def classifier(server, cache, **options) -> Classifier:
    return Classifier(LABELS, model(server), cache=str(cache), prices=PRICES, **options)


def uploaded_lines(server) -> list[dict]:
    files = server.batches.files.values()
    return [json.loads(line) for f in files if f["purpose"] in ("batch", "batch-api")
            for line in f["data"].decode().splitlines()]


def asked_interactively(server) -> list[str]:
    """The item texts of every interactive chat request, in the order asked."""
    texts = []
    for body in server.log.bodies:
        prompt = "\n".join(m["content"] for m in body["messages"])
        texts += [t.replace("‹", "<") for _, t in ITEM.findall(prompt)]
    return texts


def without_ids(body: dict) -> str:
    return re.sub(r"\b\d{6}\b", "ID", json.dumps(body, sort_keys=True))  # item ids are drawn per request


@pytest.mark.parametrize("structured", ["parser", "json_schema", "function_calling"])
def test_requests_are_the_interactive_requests(server_factory, sample_rows, tmp_path, structured):
    server = server_factory()
    texts = [r["text"] for r in sample_rows[:7]]
    classifier(server, tmp_path / "a", structured=structured, batch_size=4, concurrency=1).predict(texts)
    job = BatchJob.submit(classifier(server, tmp_path / "b", structured=structured, batch_size=4), texts,
                          tmp_path / "m.json")
    lines = uploaded_lines(server)
    assert [line["method"] for line in lines] == ["POST", "POST"] and lines[0]["url"] == "/v1/chat/completions"
    assert [without_ids(line["body"]) for line in lines] == [without_ids(b) for b in server.log.bodies]
    ids_in_prompt = [int(i) for i, _ in ITEM.findall(lines[0]["body"]["messages"][-1]["content"])]
    assert ids_in_prompt == [i for i, _ in job.data["requests"][0]["items"]]


def test_batch_labels_equal_the_interactive_path_and_fill_the_cache(server_factory, sample_rows, tmp_path):
    server = server_factory()
    texts, gold = [r["text"] for r in sample_rows], [r["label"] for r in sample_rows]
    interactive = classifier(server, tmp_path / "interactive").classify(texts)
    chat_before = server.log.chat_requests
    clf = classifier(server, tmp_path / "batch")
    job = BatchJob.submit(clf, texts, tmp_path / "m.json")
    predictions = job.collect(clf)
    assert [p.label for p in predictions] == interactive == gold
    assert {p.source for p in predictions} == {"batch"}
    assert server.log.chat_requests == chat_before  # nothing asked interactively
    assert server.batches.log.lines_answered == len(job.data["requests"]) == 12
    keys = [answer_key(clf.method.identity, clf.labels.fingerprint(), t) for t in texts[:10]]
    assert job.data["requests"][0]["custom_id"] == request_key(keys)
    later = classifier(server, tmp_path / "batch")
    assert later.classify(texts) == gold
    assert server.log.chat_requests == chat_before and later.report.cache_hits == len(set(texts))


def test_cost_is_half_the_interactive_cost_of_the_same_tokens(server_factory, sample_rows, tmp_path):
    server = server_factory()
    texts = [r["text"] for r in sample_rows[:40]]
    interactive = classifier(server, tmp_path / "i")
    interactive.predict(texts)
    clf = classifier(server, tmp_path / "b")
    job = BatchJob.submit(clf, texts, tmp_path / "m.json")
    job.collect(clf)
    report = job.report
    assert (report.prompt_tokens, report.completion_tokens) == (interactive.report.prompt_tokens,
                                                                interactive.report.completion_tokens)
    assert report.prompt_tokens > 0
    assert report.cost_usd == pytest.approx(interactive.report.cost_usd * BATCH_DISCOUNT)
    assert f"${report.cost_usd:.4f}" in report.summary() and "50%" in report.summary()


def test_expired_batch_reasks_exactly_the_missing_requests(server_factory, sample_rows, tmp_path):
    server = server_factory()
    server.batches.config = BatchConfig(expire_after=3)
    texts = [r["text"] for r in sample_rows[:60]]
    clf = classifier(server, tmp_path / "c")
    job = BatchJob.submit(clf, texts, tmp_path / "m.json")
    predictions = job.collect(clf)
    answered = set(server.batches.log.answered_ids)
    assert len(answered) == 3 and job.report.missing == 3 and job.data["batches"][0]["status"] == "expired"
    missing = [r for r in job.data["requests"] if r["custom_id"] not in answered]
    expected = {t for r in missing for t in texts[job.data["requests"].index(r) * 10:][:10]}
    assert sorted(asked_interactively(server)) == sorted(expected)
    assert [p.label for p in predictions] == [r["label"] for r in sample_rows[:60]]
    assert [p.source for p in predictions].count("batch") == 30 and [p.source for p in predictions].count("api") == 30


def test_failed_lines_and_off_schema_answers_are_reasked_item_by_item(server_factory, sample_rows, tmp_path):
    server = server_factory()
    server.batches.config = BatchConfig(fail_lines=2, line_faults={3: "offlabel"}, polls_to_finish=2)
    texts = [r["text"] for r in sample_rows[:50]]
    clf = classifier(server, tmp_path / "c")
    job = BatchJob.submit(clf, texts, tmp_path / "m.json")
    predictions = job.collect(clf)
    asked = asked_interactively(server)
    failed_lines = set(texts[:20])  # lines 0 and 1: 10 items each
    assert failed_lines <= set(asked) and len(asked) == 21  # and the one off-label item of line 3
    assert (set(asked) - failed_lines) <= set(texts[30:40])
    assert job.report.errors == 2 and job.report.items_answered == 29
    assert [p.label for p in predictions] == [r["label"] for r in sample_rows[:50]]


def test_failed_batch_is_labelled_interactively(server_factory, sample_rows, tmp_path):
    server = server_factory()
    server.batches.config = BatchConfig(fail_batch=True)
    texts = [r["text"] for r in sample_rows[:15]]
    clf = classifier(server, tmp_path / "c")
    predictions = BatchJob.submit(clf, texts, tmp_path / "m.json").collect(clf)
    assert [p.label for p in predictions] == [r["label"] for r in sample_rows[:15]]
    assert sorted(asked_interactively(server)) == sorted(texts)


def test_requests_over_the_limit_go_in_several_batches(server_factory, sample_rows, tmp_path):
    server = server_factory()
    server.batches.config = BatchConfig(max_lines=2)  # the server rejects a bigger file
    texts = [r["text"] for r in sample_rows[:45]]
    clf = classifier(server, tmp_path / "c")
    job = BatchJob.submit(clf, texts, tmp_path / "m.json", max_requests=2)
    assert [(b["first"], b["last"]) for b in job.data["batches"]] == [(0, 2), (2, 4), (4, 5)]
    assert [p.label for p in job.collect(clf)] == [r["label"] for r in sample_rows[:45]]
    assert server.log.chat_requests == 0 and server.batches.log.lines_answered == 5


def test_cached_items_are_not_submitted(server_factory, sample_rows, tmp_path):
    server = server_factory()
    texts = [r["text"] for r in sample_rows[:30]]
    classifier(server, tmp_path / "c").classify(texts[:20])
    clf = classifier(server, tmp_path / "c")
    job = BatchJob.submit(clf, texts, tmp_path / "m.json")
    assert sum(len(r["items"]) for r in job.data["requests"]) == 10
    predictions = job.collect(clf)
    assert [p.source for p in predictions] == ["cache"] * 20 + ["batch"] * 10


def test_together_dialect(server_factory, sample_rows, tmp_path, monkeypatch):
    server = server_factory(api_key="together-secret-key")
    server.batches.config = BatchConfig(dialect="together")
    monkeypatch.setattr("promptclf.workflows.batch_api.TOGETHER_URL", server.base_url)
    monkeypatch.setenv("TOGETHER_API_KEY", "together-secret-key")
    texts = [r["text"] for r in sample_rows[:12]]
    clf = Classifier(LABELS, "together:meta-llama/Llama-3.3-70B-Instruct-Turbo", cache=str(tmp_path / "c"))
    job = BatchJob.submit(clf, texts, tmp_path / "m.json")
    assert all(set(line) == {"custom_id", "body"} for line in uploaded_lines(server))
    assert server.batches.log.purposes == ["batch-api"]
    assert [p.label for p in job.collect(clf)] == [r["label"] for r in sample_rows[:12]]
    assert job.data["batches"][0]["status"] == "completed" and server.log.chat_requests == 0
    assert set(server.batches.log.authorization) == {"Bearer together-secret-key"}
    assert "together-secret-key" not in (tmp_path / "m.json").read_text()


# --- the command line -------------------------------------------------------------------------------

def write_input(tmp_path, rows) -> tuple:
    src = tmp_path / "in.csv"
    pd.DataFrame({"id": range(len(rows)), "text": [r["text"] for r in rows]}).to_csv(src, index=False)
    return src, tmp_path / "out.csv"


def classify_argv(src, out, server, tmp_path, *extra) -> list[str]:
    return ["classify", "--input", str(src), "--output", str(out), "--labels", ",".join(LABELS), "--model",
            model(server), "--cache-dir", str(tmp_path / "cache"), "--no-progress", *extra]


def test_cli_stopped_after_submit_resumes_with_collect_and_pays_nothing_twice(server_factory, sample_rows, tmp_path,
                                                                               capsys, monkeypatch):
    monkeypatch.setenv("OPENAI_COMPATIBLE_API_KEY", "sk-compatible-secret")
    server = server_factory(api_key="sk-compatible-secret")
    rows = sample_rows[:35]
    src, out = write_input(tmp_path, rows)
    assert main(classify_argv(src, out, server, tmp_path, "--batch-api", "submit")) == 0
    manifest = tmp_path / "out.csv.batch.json"
    assert manifest.exists() and not out.exists()
    assert "promptclf batch collect" in capsys.readouterr().err
    assert "sk-compatible-secret" not in manifest.read_text()
    assert (server.batches.log.batches_created, server.batches.log.lines_answered) == (1, 0)

    assert main(["batch", "status", str(manifest)]) == 0
    assert "in_progress" in capsys.readouterr().out

    assert main(["batch", "collect", str(manifest), "--no-progress"]) == 0
    result = pd.read_csv(out)
    assert list(result["predicted_label"]) == [r["label"] for r in rows] and set(result["source"]) == {"batch"}
    assert "batch API: 1 batches, 4 requests (4 answered" in capsys.readouterr().err
    paid = (server.batches.log.uploads, server.batches.log.batches_created, server.batches.log.lines_answered)
    assert paid == (1, 1, 4) and server.log.chat_requests == 0

    # again, either way: the manifest is resumed, the answers come from the cache
    assert main(classify_argv(src, out, server, tmp_path, "--batch-api")) == 0
    assert main(["batch", "collect", str(manifest), "--no-progress"]) == 0
    assert "resuming" in capsys.readouterr().err
    assert (server.batches.log.uploads, server.batches.log.batches_created,
            server.batches.log.lines_answered) == paid and server.log.chat_requests == 0
    assert main(classify_argv(src, tmp_path / "plain.csv", server, tmp_path)) == 0
    assert server.log.chat_requests == 0 and "35 from cache" in capsys.readouterr().err
    assert set(server.batches.log.authorization) == {"Bearer sk-compatible-secret"}


def test_cli_waits_and_collects_in_one_go(server_factory, sample_rows, tmp_path, capsys):
    server = server_factory()
    server.batches.config = BatchConfig(expire_after=1)
    rows = sample_rows[:25]
    src, out = write_input(tmp_path, rows)
    assert main(classify_argv(src, out, server, tmp_path, "--batch-api")) == 0
    result = pd.read_csv(out)
    assert list(result["predicted_label"]) == [r["label"] for r in rows]
    assert list(result["source"]) == ["batch"] * 10 + ["api"] * 15
    err = capsys.readouterr().err
    assert "2 never answered" in err and "then interactively" in err


@pytest.mark.parametrize("argv, message", [
    (["--model", "embed"], "has no batch API"),
    (["--no-cache"], "needs one"),
    (["--cache", "redis://:pw@127.0.0.1:1/0"], "without a password"),
])
def test_cli_configuration_errors_exit_2(tmp_path, sample_rows, server_factory, capsys, argv, message):
    server = server_factory()
    src, out = write_input(tmp_path, sample_rows[:3])
    base = ["classify", "--input", str(src), "--output", str(out), "--labels", ",".join(LABELS), "--no-progress",
            "--model", model(server), "--batch-api"]
    assert main(base + argv) == 2
    err = capsys.readouterr().err.strip()
    assert message in err and len(err.splitlines()) == 1
    assert server.batches.log.uploads == 0


def test_cli_refused_key_exits_2_naming_the_variable(tmp_path, sample_rows, server_factory, capsys, monkeypatch):
    monkeypatch.setenv("OPENAI_COMPATIBLE_API_KEY", "sk-wrong-key-000")
    server = server_factory(api_key="sk-right-key-111")
    src, out = write_input(tmp_path, sample_rows[:3])
    assert main(classify_argv(src, out, server, tmp_path, "--batch-api")) == 2
    err = capsys.readouterr().err
    assert "401" in err and "OPENAI_COMPATIBLE_API_KEY" in err and "sk-wrong-key-000" not in err


def test_cli_batch_commands_on_a_missing_or_foreign_manifest(tmp_path, capsys):
    assert main(["batch", "status", str(tmp_path / "nope.json")]) == 2
    assert "no batch manifest" in capsys.readouterr().err
    other = tmp_path / "other.json"
    other.write_text('{"hello": 1}')
    assert main(["batch", "collect", str(other)]) == 2
    assert "not a promptclf batch manifest" in capsys.readouterr().err


def test_collect_with_another_prompt_is_refused(server_factory, sample_rows, tmp_path):
    server = server_factory()
    texts = [r["text"] for r in sample_rows[:5]]
    job = BatchJob.submit(classifier(server, tmp_path / "c"), texts, tmp_path / "m.json")
    with pytest.raises(ValueError, match="another model, prompt or label set"):
        job.collect(classifier(server, tmp_path / "c", instructions="Be terse."))
