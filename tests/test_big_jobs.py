"""Big jobs: streaming in bounded windows, every row in the output (failures as rows), the circuit breaker, and
cache faults that degrade the run instead of ending it."""

from __future__ import annotations

import logging
import sqlite3

import pytest

from promptclf import Classifier
from promptclf.cache.store import SQLITE_FILE, SQLiteCache

from .conftest import scripted_classifier

LABELS = ["World", "Sports", "Business", "Sci/Tech"]


def test_stream_takes_a_generator_and_yields_in_order_a_window_at_a_time(scripted_model, cache_dir, sample_rows):
    clf, model = scripted_classifier(scripted_model, cache_dir, window=7)
    rows = sample_rows[:23]
    taken = []

    def texts():
        for row in rows:
            taken.append(row)
            yield row["text"]

    stream = clf.stream(texts())
    first = next(stream)
    assert len(taken) == 7  # one window read, not the whole input
    rest = list(stream)
    assert [p.label for p in [first, *rest]] == [r["label"] for r in rows]
    assert model.batch_sizes == [5, 2] * 3 + [2]  # each window's rows in batches of 5
    assert clf.report.items == 23


def test_duplicates_are_asked_once_in_a_window_and_from_the_cache_across_windows(
    scripted_model, cache_dir, sample_rows
):
    clf, model = scripted_classifier(scripted_model, cache_dir, window=4)
    a, b, c = (r["text"] for r in sample_rows[:3])
    predictions = list(clf.stream([a, b, a, a, a, c, b, b]))
    assert [p.label for p in predictions] == [sample_rows[i]["label"] for i in (0, 1, 0, 0, 0, 2, 1, 1)]
    assert sum(model.batch_sizes) == 3 and clf.report.cache_hits == 2


def test_bad_items_in_a_stream_become_error_rows(scripted_model, cache_dir, sample_rows):
    clf, _ = scripted_classifier(scripted_model, cache_dir)
    predictions = list(clf.stream([sample_rows[0]["text"], "  ", 7]))
    assert predictions[0].label == sample_rows[0]["label"]
    assert predictions[1].label is None and predictions[1].error.startswith("input: empty or whitespace-only")
    assert predictions[2].error.startswith("input: int (7), not a string")
    assert clf.report.failed == 2


def test_predict_keep_returns_every_row_with_its_error(scripted_model, cache_dir, sample_rows):
    clf, _ = scripted_classifier(scripted_model, cache_dir, faults=["offlabel"] * 3, batch_size=1, max_reasks=2)
    predictions = clf.predict([sample_rows[0]["text"], sample_rows[1]["text"]], errors="keep")
    assert predictions[0].label is None and predictions[0].source == "failed"
    assert predictions[0].error.startswith("no answer after 3 asks: answer")
    assert predictions[1].label == sample_rows[1]["label"] and predictions[1].error is None
    with pytest.raises(ValueError, match="errors='drop'"):
        clf.predict([sample_rows[0]["text"]], errors="drop")


def test_a_method_that_drops_an_item_is_a_bug_not_a_silent_gap(cache_dir):
    from promptclf.core.labels import LabelSet
    from promptclf.core.methods import Prediction

    class Forgetful:
        labels, identity, cacheable = LabelSet.of(LABELS), "forgetful", False

        def predict(self, texts, usage):
            yield from ((i, Prediction("World")) for i in range(len(texts) - 1))

    with pytest.raises(RuntimeError, match="Forgetful gave no outcome for 1 of 2 items"):
        Classifier(LABELS, method=Forgetful(), cache=False).predict(["a", "b"])


# --- cache faults --------------------------------------------------------------------------------------------


def test_a_corrupt_cache_file_is_moved_aside_and_the_run_goes_on(scripted_model, tmp_path, sample_rows, caplog):
    directory = tmp_path / "answers"
    directory.mkdir()
    (directory / SQLITE_FILE).write_bytes(b"this is not an SQLite database" * 100)
    with caplog.at_level(logging.WARNING, logger="promptclf"):
        clf, _ = scripted_classifier(scripted_model, directory)
        assert clf.classify([sample_rows[0]["text"]]) == [sample_rows[0]["label"]]
    aside = [p.name for p in directory.iterdir() if ".corrupt-" in p.name]
    assert len(aside) == 1 and (directory / aside[0]).read_bytes().startswith(b"this is not")
    assert "damaged" in caplog.text and len(SQLiteCache(directory)) == 1  # the new file has the answer


def test_a_cache_that_cannot_be_created_is_a_warning_and_no_cache(
    scripted_model, tmp_path, sample_rows, caplog, monkeypatch
):
    from pathlib import Path

    real_mkdir = Path.mkdir

    def refuse(self, *args, **kwargs):  # the tests run as root, whom a read-only directory does not stop
        if self.name == "answers":
            raise PermissionError(13, "Permission denied", str(self))
        return real_mkdir(self, *args, **kwargs)

    monkeypatch.setattr(Path, "mkdir", refuse)
    with caplog.at_level(logging.WARNING, logger="promptclf"):
        clf, _ = scripted_classifier(scripted_model, tmp_path / "ro" / "answers")
        assert clf.cache is None
        assert clf.classify([sample_rows[0]["text"]]) == [sample_rows[0]["label"]]
    assert "cannot be opened (PermissionError" in caplog.text


@pytest.mark.parametrize(
    "message", ["database or disk is full", "attempt to write a readonly database", "database is locked"]
)
def test_a_cache_that_fails_mid_run_warns_once_and_every_answer_reaches_the_output(
    scripted_model, cache_dir, sample_rows, caplog, monkeypatch, message
):
    def fail(self, mapping):
        raise sqlite3.OperationalError(message)

    monkeypatch.setattr(SQLiteCache, "set_many", fail)
    clf, model = scripted_classifier(scripted_model, cache_dir, window=5)
    rows = sample_rows[:20]
    with caplog.at_level(logging.WARNING, logger="promptclf"):
        assert clf.classify([r["text"] for r in rows]) == [r["label"] for r in rows]
    assert caplog.text.count("going on without it") == 1 and message in caplog.text
    assert sum(model.batch_sizes) == 20


# --- the CLI on files --------------------------------------------------------------------------------------

CLI_LABELS = ",".join(LABELS)


def _texts_file(tmp_path, rows, name="in.csv"):
    import pandas as pd

    src = tmp_path / name
    pd.DataFrame({"id": range(len(rows)), "text": [r["text"] for r in rows]}).to_csv(src, index=False)
    return src


def _never_answers(oracle, endings):
    """An oracle that answers every item except those ending with one of `endings`: a label outside the set."""
    return lambda text: "Nonsense" if text.strip().endswith(tuple(endings)) else oracle(text)


def test_rows_never_answered_are_in_the_output_with_their_error_and_a_rerun_asks_only_them(
    tmp_path, server_factory, oracle, sample_rows, capsys
):
    import pandas as pd

    from promptclf.cli import main

    rows = (sample_rows * 3)[:200]
    rows = [{"text": f"{r['text']} ({i})", "label": r["label"]} for i, r in enumerate(rows)]
    server = server_factory(oracle=_never_answers(oracle, [" (17)", " (150)"]))  # 1% of the rows
    src, out = _texts_file(tmp_path, rows), tmp_path / "out.csv"
    argv = [
        "classify",
        "--input",
        str(src),
        "--output",
        str(out),
        "--labels",
        CLI_LABELS,
        "--model",
        f"openai-compatible:gpt-test@{server.base_url}",
        "--cache-dir",
        str(tmp_path / "c"),
        "--batch-size",
        "20",
        "--window",
        "50",
    ]
    assert main(argv) == 1
    err = capsys.readouterr().err
    assert "2 of 200 rows could not be labelled (rows 18, 151; 1 is the first data row)" in err
    result = pd.read_csv(out, keep_default_na=False)
    assert list(result["id"]) == list(range(200))
    assert list(result.index[result["error"] != ""]) == [17, 150]
    assert result["error"][17].startswith("no answer after 5 asks: answer 'Nonsense' is not in the label set")
    assert (result["predicted_label"][result["error"] == ""] != "").all()
    before = server.log.chat_requests
    assert main(argv) == 1
    assert server.log.chat_requests - before == 10  # only the two failed rows (other windows), 5 asks each


def test_a_dead_server_stops_the_run_with_every_row_written(tmp_path, sample_rows, capsys):
    import pandas as pd

    from promptclf.cli import main

    src, out = _texts_file(tmp_path, sample_rows[:40]), tmp_path / "out.jsonl"
    code = main(
        [
            "classify",
            "--input",
            str(src),
            "--output",
            str(out),
            "--labels",
            CLI_LABELS,
            "--model",
            "openai-compatible:m@http://127.0.0.1:9/v1",
            "--max-attempts",
            "1",
            "--no-cache",
            "--batch-size",
            "2",
            "--concurrency",
            "1",
            "--stop-after-failures",
            "3",
        ]
    )
    err = capsys.readouterr().err
    assert code == 1 and "the run stopped asking: 3 requests in a row failed (last: " in err
    result = pd.read_json(out, lines=True)
    assert len(result) == 40 and result["predicted_label"].isna().all()
    assert result["error"][5].startswith("no answer after 1 attempts: ")
    assert result["error"][6].startswith("not asked: run stopped (3 requests in a row failed")


@pytest.mark.parametrize(
    "make, message",
    [
        (lambda p: p.write_text("text\n"), "no rows in"),
        (lambda p: p.write_text(""), "is empty: no header, no rows"),
        (
            lambda p: p.write_bytes(b"text\nfine\n" + bytes(range(128, 256))),
            "is not UTF-8 text (an undecodable byte at offset 10)",
        ),
    ],
)
def test_bad_input_is_refused_before_any_request(tmp_path, server_factory, capsys, make, message):
    from promptclf.cli import main

    server = server_factory()
    src = tmp_path / "in.csv"
    make(src)
    code = main(
        [
            "classify",
            "--input",
            str(src),
            "--output",
            str(tmp_path / "o.csv"),
            "--labels",
            CLI_LABELS,
            "--model",
            f"openai-compatible:gpt-test@{server.base_url}",
            "--no-cache",
        ]
    )
    err = capsys.readouterr().err.strip()
    assert code == 2 and message in err and str(src) in err and len(err.splitlines()) == 1
    assert server.log.requests == 0 and not (tmp_path / "o.csv").exists()


def test_the_output_format_and_examples_columns_are_checked_before_reading_or_asking(
    tmp_path, server_factory, sample_rows, capsys
):
    import pandas as pd

    from promptclf.cli import main

    server = server_factory()
    src = _texts_file(tmp_path, sample_rows[:3])
    model = ["--model", f"openai-compatible:gpt-test@{server.base_url}", "--no-cache"]
    assert (
        main(
            [
                "classify",
                "--input",
                str(tmp_path / "missing.csv"),
                "--output",
                str(tmp_path / "o.xlsx"),
                "--labels",
                CLI_LABELS,
                *model,
            ]
        )
        == 2
    )
    err = capsys.readouterr().err
    assert "output file" in err and "unsupported format '.xlsx'" in err
    examples = tmp_path / "ex.csv"
    pd.DataFrame({"text": ["a"], "category": ["World"]}).to_csv(examples, index=False)
    assert (
        main(
            [
                "classify",
                "--input",
                str(src),
                "--output",
                str(tmp_path / "o.csv"),
                "--labels",
                CLI_LABELS,
                "--examples",
                str(examples),
                *model,
            ]
        )
        == 2
    )
    err = capsys.readouterr().err
    assert "'label'" in err and "['text', 'category']" in err
    assert server.log.requests == 0


def test_output_dash_writes_only_the_table_to_stdout(tmp_path, server_factory, sample_rows, capsys):
    import io

    import pandas as pd

    from promptclf.cli import main

    server = server_factory()
    src = _texts_file(tmp_path, sample_rows[:5])
    assert (
        main(
            [
                "classify",
                "--input",
                str(src),
                "--output",
                "-",
                "--labels",
                CLI_LABELS,
                "--model",
                f"openai-compatible:gpt-test@{server.base_url}",
                "--no-cache",
            ]
        )
        == 0
    )
    captured = capsys.readouterr()
    table = pd.read_csv(io.StringIO(captured.out))
    assert list(table["predicted_label"]) == [r["label"] for r in sample_rows[:5]]
    assert "5 items" in captured.err and "wrote 5 rows to stdout" in captured.err


def test_an_unexpected_error_is_a_bug_exit_70_with_the_traceback_on_request(tmp_path, monkeypatch, capsys):
    from promptclf import cli

    def broken(args):
        raise ZeroDivisionError("division by zero")

    monkeypatch.setattr(cli, "cmd_classify", broken)
    parser = cli.build_parser
    monkeypatch.setattr(cli, "build_parser", lambda: _with_func(parser(), broken))
    argv = ["classify", "--input", "i.csv", "--output", "o.csv", "--labels", CLI_LABELS]
    assert cli.main(argv) == 70
    err = capsys.readouterr().err
    assert "internal error: ZeroDivisionError: division by zero" in err and "--debug" in err
    assert "Traceback" not in err
    assert cli.main(["--debug", *argv]) == 70
    assert "Traceback (most recent call last)" in capsys.readouterr().err
    monkeypatch.setenv("PROMPTCLF_DEBUG", "1")
    assert cli.main(argv) == 70 and "Traceback" in capsys.readouterr().err


def _with_func(parser, func):
    parser._subparsers._group_actions[0].choices["classify"].set_defaults(func=func)
    return parser


def test_the_cli_keeps_stdout_for_results_and_stderr_free_of_dependency_noise(tmp_path, sample_rows):
    """The packaged encoder, run as a user runs the command: a separate process, stdout piped."""
    import os
    import subprocess
    import sys

    src = _texts_file(tmp_path, sample_rows[:30])
    env = {**os.environ, "PROMPTCLF_HOME": str(tmp_path / "home")}
    run = subprocess.run(
        [
            sys.executable,
            "-m",
            "promptclf.cli",
            "classify",
            "--input",
            str(src),
            "--output",
            "-",
            "--labels",
            CLI_LABELS,
            "--model",
            "embed",
        ],
        capture_output=True,
        text=True,
        env=env,
        timeout=600,
    )
    assert run.returncode == 0, run.stderr
    lines = run.stdout.splitlines()
    assert lines[0] == "id,text,predicted_label,confidence,source,error" and len(lines) >= 31
    ours = ("promptclf", "wrote 30 rows", "30 items", "accuracy and confidence are uncalibrated")  # the run report
    noise = [line for line in run.stderr.splitlines() if not line.startswith(ours)]
    assert noise == [], noise


def test_setfit_training_prints_nothing_on_stdout_nor_dependency_warnings(sample_rows, tmp_path, capfd):
    from promptclf.core.labels import LabelSet
    from promptclf.methods.finetune import finetune
    from promptclf.task.examples import sample_per_class

    from .test_offline import TINY_SETFIT

    train = sample_per_class(sample_rows, LabelSet.of(LABELS), 2, seed=0)
    finetune(train, LABELS, out=tmp_path / "sf", method="setfit", progress=False, **TINY_SETFIT)
    out, err = capfd.readouterr()
    assert out == ""
    assert "pin_memory" not in err and "Map" not in err, err


def test_telemetry_spans_carry_the_genai_attributes_of_each_request_and_the_run(server_factory, sample_rows, cache_dir):
    pytest.importorskip("opentelemetry.sdk", reason='the otel extra: pip install "promptclf[otel]"')
    from opentelemetry import trace
    from opentelemetry.sdk.trace import TracerProvider
    from opentelemetry.sdk.trace.export import SimpleSpanProcessor
    from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

    exporter = InMemorySpanExporter()
    provider = TracerProvider()
    provider.add_span_processor(SimpleSpanProcessor(exporter))
    trace.set_tracer_provider(provider)  # once per process: OpenTelemetry keeps the first provider set
    server = server_factory()
    clf = Classifier(
        LABELS, f"openai-compatible:gpt-test@{server.base_url}", cache=cache_dir, batch_size=4, concurrency=2
    )
    clf.predict([r["text"] for r in sample_rows[:10]])
    spans = [s for s in exporter.get_finished_spans() if s.instrumentation_scope.name == "promptclf"]
    requests = [s for s in spans if s.name.startswith("chat ")]
    (run,) = [s for s in spans if s.name == "promptclf.run"]
    assert len(requests) == server.log.chat_requests == 3
    assert sum(s.attributes["gen_ai.usage.input_tokens"] for s in requests) == clf.report.prompt_tokens > 0
    assert {s.attributes["gen_ai.request.model"] for s in requests} == {clf.spec.id}
    assert all(s.parent is not None and s.parent.span_id == run.context.span_id for s in requests)
    assert run.attributes["promptclf.items"] == 10 and run.attributes["promptclf.requests"] == 3
    assert run.attributes["gen_ai.usage.output_tokens"] == clf.report.completion_tokens


def test_without_the_otel_extra_spans_are_no_ops(monkeypatch):
    from promptclf.core import telemetry

    monkeypatch.setattr(telemetry, "trace", None)
    with telemetry.span("x", a=1) as current:
        assert current is None
    assert telemetry.start("run") is None
    telemetry.end(None, items=1)


def test_a_key_refused_mid_run_keeps_what_was_answered_and_names_the_reason(
    tmp_path, server_factory, sample_rows, monkeypatch, capsys
):
    """A refused key before any row is answered is exit 2 and no output (test_keys_and_cache); once rows are
    answered (here from the cache), the run writes every row and exits 1."""
    import pandas as pd

    from promptclf.cli import main

    server = server_factory(api_key="right-key")
    src, out = _texts_file(tmp_path, sample_rows[:20]), tmp_path / "out.csv"
    argv = [
        "classify",
        "--input",
        str(src),
        "--output",
        str(out),
        "--labels",
        CLI_LABELS,
        "--model",
        f"openai-compatible:gpt-test@{server.base_url}",
        "--cache-dir",
        str(tmp_path / "c"),
        "--batch-size",
        "5",
    ]
    monkeypatch.setenv("OPENAI_COMPATIBLE_API_KEY", "right-key")
    first = _texts_file(tmp_path, sample_rows[:5], "first.csv")
    assert main([*argv[:2], str(first), *argv[3:]]) == 0
    monkeypatch.setenv("OPENAI_COMPATIBLE_API_KEY", "revoked-key")
    assert main(argv) == 1
    err = capsys.readouterr().err
    assert "the run stopped asking: model" in err and "401" in err and "revoked-key" not in err
    result = pd.read_csv(out, keep_default_na=False)
    assert list(result["source"][:5]) == ["cache"] * 5 and (result["error"][:5] == "").all()
    assert result["error"][5:].str.startswith("not asked: run stopped (model").all()


@pytest.mark.parametrize("suffix", [".csv", ".jsonl", ".parquet", "/"])
def test_files_are_read_and_written_a_chunk_at_a_time_in_order(
    tmp_path, server_factory, sample_rows, monkeypatch, suffix
):
    import pandas as pd

    from promptclf.cli import main
    from promptclf.core import data

    real = data.read_chunks  # 40 rows in chunks of 7: six chunks, the last one short
    monkeypatch.setattr(data, "read_chunks", lambda path, chunk_rows=7: real(path, 7))
    rows = sample_rows[:40]
    frame = pd.DataFrame({"id": range(40), "text": [r["text"] for r in rows]})
    src = tmp_path / ("in.jsonl" if suffix == ".jsonl" else "in.parquet" if suffix != ".csv" else "in.csv")
    {
        ".csv": lambda: frame.to_csv(src, index=False),
        ".jsonl": lambda: frame.to_json(src, orient="records", lines=True),
        ".parquet": lambda: frame.to_parquet(src),
        "/": lambda: frame.to_parquet(src),
    }[suffix]()
    out = tmp_path / ("out" + suffix if suffix != "/" else "parts")
    target = str(out) + ("/" if suffix == "/" else "")
    server = server_factory()
    assert (
        main(
            [
                "classify",
                "--input",
                str(src),
                "--output",
                target,
                "--labels",
                CLI_LABELS,
                "--model",
                f"openai-compatible:gpt-test@{server.base_url}",
                "--no-cache",
                "--window",
                "10",
            ]
        )
        == 0
    )
    if suffix == "/":
        parts = sorted(out.glob("*.parquet"))
        assert len(parts) == 6
        result = pd.concat([pd.read_parquet(p) for p in parts], ignore_index=True)
    else:
        result = {".csv": pd.read_csv, ".jsonl": lambda p: pd.read_json(p, lines=True), ".parquet": pd.read_parquet}[
            suffix
        ](out)
    assert list(result["id"]) == list(range(40))
    assert list(result["predicted_label"]) == [r["label"] for r in rows]
    assert not [p for p in tmp_path.iterdir() if ".partial" in p.name]  # the temporary output was moved into place


def test_the_progress_bar_moves_as_answers_arrive_not_when_a_window_ends(monkeypatch):
    """A local model's pass over one window takes minutes: the bar must move with each answer."""
    import promptclf.pipeline as pipeline_module
    from promptclf.core.labels import LabelSet
    from promptclf.core.methods import Prediction

    bars, seen = [], []
    real_tqdm = pipeline_module.tqdm
    monkeypatch.setattr(pipeline_module, "tqdm", lambda *a, **k: bars.append(real_tqdm(*a, **k)) or bars[-1])

    class Slow:
        labels, identity, cacheable = LabelSet.of(LABELS), "slow", False

        def predict(self, texts, usage):
            for i in range(len(texts)):
                seen.append(bars[-1].n)  # where the bar stands when each answer is made
                yield i, Prediction("World")

    clf = Classifier(LABELS, method=Slow(), cache=False, progress=True)
    assert len(clf.predict([f"text {i}" for i in range(30)])) == 30
    assert seen == list(range(30)) and bars[-1].n == 30


def test_answers_received_without_logprobs_are_cached_under_the_key_of_what_was_received(
    server_factory, sample_rows, cache_dir
):
    """A server that stops returning logprobs: its answers carry no confidence, so they must not be cached under
    the key that promises one (a later run would skip them in fallback_below and cascades without saying so)."""
    server = server_factory(chat_logprobs="omit")
    model = f"openai-compatible:gpt-test@{server.base_url}"
    texts = [r["text"] for r in sample_rows[:6]]
    first = Classifier(LABELS, model, cache=cache_dir).predict(texts)
    assert all(p.confidence is None for p in first)
    asked = server.log.chat_requests
    with_logprobs = Classifier(LABELS, model, cache=cache_dir, fallback_below=0.5)
    with_logprobs.predict(texts, errors="keep")
    assert server.log.chat_requests > asked and with_logprobs.report.cache_hits == 0  # asked again, for confidence
    asked = server.log.chat_requests
    without = Classifier(LABELS, model, cache=cache_dir, logprobs=False)
    assert [p.label for p in without.predict(texts)] == [p.label for p in first]
    assert server.log.chat_requests == asked and without.report.cache_hits == 6  # what was received is kept
