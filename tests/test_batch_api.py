"""The batch API path (promptclf/batch_api.py) against the fake server's /v1/files and /v1/batches."""

import json
import re

import pandas as pd
import pytest

from promptclf.cache.store import answer_key
from promptclf.classifier import Classifier
from promptclf.cli import main
from promptclf.core.errors import LabellingError
from promptclf.workflows.batch_api import BATCH_DISCOUNT, BatchJob, request_key

from .conftest import LABELS
from .fake_openai_server import ITEM, BatchConfig

PRICES = {"openai-compatible:gpt-test": (1.0, 2.0)}


def model(server) -> str:
    return f"openai-compatible:gpt-test@{server.base_url}"


def classifier(server, cache, **options) -> Classifier:
    return Classifier(LABELS, model(server), cache=str(cache), prices=PRICES, **options)


def uploaded_lines(server) -> list[dict]:
    files = server.batches.files.values()
    return [
        json.loads(line)
        for f in files
        if f["purpose"] in ("batch", "batch-api")
        for line in f["data"].decode().splitlines()
    ]


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
    job = BatchJob.submit(
        classifier(server, tmp_path / "b", structured=structured, batch_size=4), texts, tmp_path / "m.json"
    )
    lines = uploaded_lines(server)
    assert [line["method"] for line in lines] == ["POST", "POST"] and lines[0]["url"] == "/v1/chat/completions"
    assert [without_ids(line["body"]) for line in lines] == [without_ids(b) for b in server.log.bodies]
    ids_in_prompt = [int(i) for i, _ in ITEM.findall(lines[0]["body"]["messages"][-1]["content"])]
    assert ids_in_prompt == [i for i, _ in next(job.requests())["items"]]


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
    assert server.batches.log.lines_answered == job.data["request_count"] == len(list(job.requests())) == 12
    keys = [answer_key(clf.method.identity, clf.labels.fingerprint(), t) for t in texts[:10]]
    assert next(job.requests())["custom_id"] == request_key(keys)
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
    assert (report.prompt_tokens, report.completion_tokens) == (
        interactive.report.prompt_tokens,
        interactive.report.completion_tokens,
    )
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
    missing = [r for r in job.requests() if r["custom_id"] not in answered]
    expected = {texts[row] for r in missing for _, row in r["items"]}
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
    assert sum(len(r["items"]) for r in job.requests()) == job.data["item_count"] == 10
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
    return [
        "classify",
        "--input",
        str(src),
        "--output",
        str(out),
        "--labels",
        ",".join(LABELS),
        "--model",
        model(server),
        "--cache-dir",
        str(tmp_path / "cache"),
        "--no-progress",
        *extra,
    ]


def test_cli_stopped_after_submit_resumes_with_collect_and_pays_nothing_twice(
    server_factory, sample_rows, tmp_path, capsys, monkeypatch
):
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
    assert (
        server.batches.log.uploads,
        server.batches.log.batches_created,
        server.batches.log.lines_answered,
    ) == paid and server.log.chat_requests == 0
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


@pytest.mark.parametrize(
    "argv, message",
    [
        (["--model", "embed"], "has no batch API"),
        (["--no-cache"], "needs one"),
        (["--cache", "redis://:pw@127.0.0.1:1/0"], "without a password"),
    ],
)
def test_cli_configuration_errors_exit_2(tmp_path, sample_rows, server_factory, capsys, argv, message):
    server = server_factory()
    src, out = write_input(tmp_path, sample_rows[:3])
    base = [
        "classify",
        "--input",
        str(src),
        "--output",
        str(out),
        "--labels",
        ",".join(LABELS),
        "--no-progress",
        "--model",
        model(server),
        "--batch-api",
    ]
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


def test_batch_answers_keep_the_confidence_the_interactive_path_gives(server_factory, sample_rows, tmp_path):
    server = server_factory(label_probability=lambda item: 0.55 if len(item) % 2 else 0.95)
    texts = [r["text"] for r in sample_rows[:30]]
    interactive = classifier(server, tmp_path / "i").predict(texts)
    clf = classifier(server, tmp_path / "b")
    collected = BatchJob.submit(clf, texts, tmp_path / "m.json").collect(clf)
    expected = [p.confidence for p in interactive]
    assert None not in expected and len({round(c, 2) for c in expected}) == 2
    assert [p.confidence for p in collected] == pytest.approx(expected)
    assert [p.scores for p in collected] == [p.scores for p in interactive]
    chat_before = server.log.chat_requests
    with pytest.raises(LabellingError) as raised:  # the cached batch answers below it are routed, not kept
        classifier(server, tmp_path / "b", fallback_below=0.7).predict(texts)
    assert sorted(raised.value.failures) == [n for n, c in enumerate(expected) if c < 0.7]
    assert server.log.chat_requests == chat_before


def test_batch_answers_without_logprobs_are_said_to_carry_no_confidence(server_factory, sample_rows, tmp_path):
    server = server_factory(chat_logprobs="omit")
    texts = [r["text"] for r in sample_rows[:12]]
    clf = classifier(server, tmp_path / "b")
    job = BatchJob.submit(clf, texts, tmp_path / "m.json")
    assert {p.confidence for p in job.collect(clf)} == {None}
    assert job.report.without_confidence == 12 and "12 batch answers carry no confidence" in job.report.summary()


def test_the_manifest_does_not_grow_with_the_texts_and_a_loaded_job_resumes(server_factory, tmp_path):
    server = server_factory()
    sizes, texts = {}, {}
    for n in (100, 2000):
        texts[n] = [f"item {i}: a story about markets, prices and the weather, number {i}" for i in range(n)]
        BatchJob.submit(classifier(server, tmp_path / f"c{n}"), texts[n], tmp_path / f"m{n}.json")
        sizes[n] = (tmp_path / f"m{n}.json").stat().st_size
    assert sizes[2000] <= sizes[100] + 16  # counts and ranges gain a digit or two; nothing is kept per text
    assert server.batches.log.uploads == 2 and server.log.chat_requests == 0

    job = BatchJob.load(tmp_path / "m2000.json")
    with pytest.raises(ValueError, match="pass the texts"):
        job.collect(classifier(server, tmp_path / "c2000"))
    with pytest.raises(ValueError, match="other texts"):
        job.collect(classifier(server, tmp_path / "c2000"), texts[2000][:-1] + ["changed"])
    predictions = job.collect(classifier(server, tmp_path / "c2000"), texts[2000])
    assert {p.source for p in predictions} == {"batch"} and len(predictions) == 2000
    assert job.report.items_answered == 2000 and job.report.requests == 200 and server.log.chat_requests == 0
    assert (server.batches.log.uploads, server.batches.log.batches_created) == (2, 2)  # nothing paid twice


# --- the manifest is untrusted input -----------------------------------------------------------------


def edit_manifest(path, change) -> None:
    data = json.loads(path.read_text())
    change(data)
    path.write_text(json.dumps(data))


def keys_received(server, secret: str) -> int:
    return sum(secret in header for header in server.log.authorization + server.batches.log.authorization)


@pytest.mark.parametrize("provider", ["openai", "openai-compatible"])
def test_a_manifest_edited_to_another_host_sends_it_no_key(
    server_factory, sample_rows, tmp_path, capsys, monkeypatch, provider
):
    secret = "sk-the-users-own-secret"
    server, other = server_factory(api_key=secret), server_factory()
    if provider == "openai":
        monkeypatch.setenv("OPENAI_API_KEY", secret)
        monkeypatch.setenv("OPENAI_BASE_URL", server.base_url)  # the user names the host for OPENAI_API_KEY
        name = "openai:gpt-test"
    else:
        monkeypatch.setenv("OPENAI_COMPATIBLE_API_KEY", secret)
        name = model(server)
    src, out = write_input(tmp_path, sample_rows[:12])
    argv = classify_argv(src, out, server, tmp_path, "--batch-api", "submit")
    argv[argv.index("--model") + 1] = name
    assert main(argv) == 0
    manifest = tmp_path / "out.csv.batch.json"
    monkeypatch.delenv("OPENAI_BASE_URL", raising=False)  # later, in another shell: the seal names the host
    assert main(["batch", "status", str(manifest)]) == 0 and keys_received(server, secret) > 0

    def elsewhere(data):
        data["model"]["base_url"] = other.base_url
        data["extra"]["model"] = data["extra"]["model"].replace(server.base_url, other.base_url)

    edit_manifest(manifest, elsewhere)
    capsys.readouterr()
    for verb in ("status", "collect", "cancel"):
        assert main(["batch", verb, str(manifest)]) == 2
        assert "not named for" in capsys.readouterr().err
    assert keys_received(other, secret) == 0 and not out.exists()
    if provider == "openai-compatible":  # the user may name the host: then it gets the key
        assert main(["batch", "status", str(manifest), "--model", model(other)]) == 2  # other has no such batch
        assert keys_received(other, secret) == 1


def test_collect_writes_beside_the_manifest_or_to_output_never_where_the_manifest_says(
    server_factory, sample_rows, tmp_path, capsys
):
    server = server_factory()
    rows = sample_rows[:12]
    src, out = write_input(tmp_path, rows)
    assert main(classify_argv(src, out, server, tmp_path, "--batch-api", "submit")) == 0
    manifest = tmp_path / "out.csv.batch.json"
    elsewhere = tmp_path / "elsewhere" / "taken.csv"
    edit_manifest(manifest, lambda data: data["extra"].update(output=str(elsewhere)))
    assert main(["batch", "collect", str(manifest), "--no-progress"]) == 2
    assert "extra.output" in capsys.readouterr().err and not elsewhere.exists()

    edit_manifest(manifest, lambda data: data["extra"].pop("output"))
    assert main(["batch", "collect", str(manifest), "--no-progress"]) == 0
    assert list(pd.read_csv(out)["predicted_label"]) == [r["label"] for r in rows]
    chosen = tmp_path / "chosen.csv"
    assert main(["batch", "collect", str(manifest), "--no-progress", "--output", str(chosen)]) == 0
    assert list(pd.read_csv(chosen)["predicted_label"]) == [r["label"] for r in rows] and not elsewhere.exists()


@pytest.mark.parametrize(
    "change, field",
    [
        (lambda d: d["model"].update(base_url=7), "model.base_url"),
        (lambda d: d.update(surprise=True), "surprise"),
        (lambda d: d["batches"][0].update(id="../files/x"), "batches.0.id"),
        (lambda d: d["extra"].update(batch_size="10"), "extra.batch_size"),
        (lambda d: d["input"].update(rows=-1), "input.rows"),
    ],
)
def test_a_malformed_manifest_is_refused_naming_the_file_and_the_field(
    server_factory, sample_rows, tmp_path, capsys, change, field
):
    server = server_factory()
    src, out = write_input(tmp_path, sample_rows[:3])
    assert main(classify_argv(src, out, server, tmp_path, "--batch-api", "submit")) == 0
    manifest = tmp_path / "out.csv.batch.json"
    edit_manifest(manifest, change)
    requests_before = server.batches.log.retrieves
    capsys.readouterr()
    assert main(["batch", "status", str(manifest)]) == 2
    err = capsys.readouterr().err
    assert str(manifest) in err and field in err and len(err.splitlines()) == 1
    assert server.batches.log.retrieves == requests_before


def test_an_edited_requests_file_writes_no_answer_to_another_item(server_factory, sample_rows, tmp_path, caplog):
    server = server_factory()
    texts = [r["text"] for r in sample_rows[:20]]
    clf = classifier(server, tmp_path / "c")
    job = BatchJob.submit(clf, texts, tmp_path / "m.json")
    records = job.requests_path.read_text().splitlines()
    first = json.loads(records[0])
    first["items"] = [[item, (row + 10) % 20] for item, row in first["items"]]  # answers pinned on other rows
    job.requests_path.write_text("\n".join([json.dumps(first), *records[1:]]) + "\n")
    predictions = BatchJob.load(tmp_path / "m.json").collect(classifier(server, tmp_path / "c"), texts)
    assert [p.label for p in predictions] == [r["label"] for r in sample_rows[:20]]
    assert [p.source for p in predictions] == ["api"] * 10 + ["batch"] * 10  # the first request's asked again
    assert "line 1 of" in caplog.text and "does not match the texts" in caplog.text
