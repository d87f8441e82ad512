"""The promptclf command on files, against the fake OpenAI-compatible server (tests/fake_openai_server.py)."""

import pandas as pd
import pytest

from promptclf.cli import main

LABELS = "World,Sports,Business,Sci/Tech"


@pytest.mark.parametrize("suffix", [".csv", ".jsonl", ".parquet"])
def test_classify_file_keeps_extra_columns(tmp_path, server_factory, sample_rows, suffix, capsys):
    server = server_factory()
    rows = sample_rows[:12]
    frame = pd.DataFrame({"id": range(12), "text": [r["text"] for r in rows], "gold": [r["label"] for r in rows]})
    src, out = tmp_path / f"in{suffix}", tmp_path / f"out{suffix}"
    {
        ".csv": frame.to_csv,
        ".jsonl": lambda p, **k: frame.to_json(p, orient="records", lines=True),
        ".parquet": frame.to_parquet,
    }[suffix](src, index=False) if suffix != ".jsonl" else frame.to_json(src, orient="records", lines=True)
    code = main(
        [
            "classify",
            "--input",
            str(src),
            "--output",
            str(out),
            "--labels",
            LABELS,
            "--model",
            f"openai-compatible:gpt-test@{server.base_url}",
            "--cache-dir",
            str(tmp_path / "c"),
        ]
    )
    assert code == 0
    result = {".csv": pd.read_csv, ".jsonl": lambda p: pd.read_json(p, lines=True), ".parquet": pd.read_parquet}[
        suffix
    ](out)
    assert list(result["id"]) == list(range(12))
    assert list(result["predicted_label"]) == list(result["gold"])
    assert set(result["source"]) == {"api"}
    err = capsys.readouterr().err
    assert "12 items" in err and "calls" in err and "prompt" in err


def test_joined_text_columns(tmp_path, server_factory, sample_rows):
    server = server_factory()
    src = tmp_path / "in.csv"
    raw = pd.read_csv("tests/data/agnews_sample.csv")
    clean = ~(raw["title"].str.contains("\\", regex=False) | raw["description"].str.contains("\\", regex=False))
    raw[clean].head(5).to_csv(src, index=False)
    out = tmp_path / "out.csv"
    assert (
        main(
            [
                "classify",
                "--input",
                str(src),
                "--output",
                str(out),
                "--text-column",
                "title,description",
                "--labels",
                LABELS,
                "--model",
                f"openai-compatible:gpt-test@{server.base_url}",
                "--no-cache",
            ]
        )
        == 0
    )
    expected = [r["label"] for r, keep in zip(sample_rows, clean) if keep][:5]
    assert list(pd.read_csv(out)["predicted_label"]) == expected


@pytest.mark.parametrize(
    "argv, message",
    [
        (["--model", "gpt-4o"], "unknown model 'gpt-4o'\n  accepted: offline, embed, local, together:<name>"),
        (["--model", "openai:gpt-4o-mini"], "OPENAI_API_KEY is not set"),
        (["--text-column", "body"], "has no column 'body': its columns are ['text'] (choose with --text-column)"),
    ],
)
def test_user_errors_are_short_with_exit_code_2(tmp_path, monkeypatch, capsys, argv, message):
    monkeypatch.delenv("OPENAI_API_KEY", raising=False)
    src = tmp_path / "in.csv"
    pd.DataFrame({"text": ["a"]}).to_csv(src, index=False)
    code = main(["classify", "--input", str(src), "--output", str(tmp_path / "o.csv"), "--labels", LABELS] + argv)
    err = capsys.readouterr().err.strip()
    assert code == 2 and message in err and len(err.splitlines()) <= 3


def test_missing_input_file(tmp_path, capsys):
    assert main(["classify", "--input", str(tmp_path / "nope.csv"), "--output", "o.csv", "--labels", LABELS]) == 2
    assert "does not exist" in capsys.readouterr().err


def test_unlabellable_items_exit_1_and_name_them(tmp_path, capsys):
    src = tmp_path / "in.csv"
    pd.DataFrame({"text": ["a", "b"]}).to_csv(src, index=False)
    code = main(
        [
            "classify",
            "--input",
            str(src),
            "--output",
            str(tmp_path / "o.csv"),
            "--labels",
            LABELS,
            "--model",
            "openai-compatible:m@http://127.0.0.1:9/v1",
            "--max-attempts",
            "1",
            "--no-cache",
        ]
    )
    assert code == 1 and "2 of 2 rows could not be labelled (rows 1, 2" in capsys.readouterr().err
    out = pd.read_csv(tmp_path / "o.csv")
    assert out["predicted_label"].isna().all() and out["error"].str.startswith("no answer after 1 attempts").all()


def test_local_scoring_options_reach_the_classifier(tmp_path):
    """Real embedded model (float32 here); checks the flags are wired, not the labels."""
    from promptclf.cli import _classifier, build_parser

    args = build_parser().parse_args(
        [
            "classify",
            "--input",
            "i.csv",
            "--output",
            "o.csv",
            "--labels",
            LABELS,
            "--quantize",
            "none",
            "--item-words",
            "20",
            "--demo-words",
            "8",
            "--calibrate",
            "none",
            "--no-cache",
            "--model",
            "local",
        ]
    )
    clf = _classifier(args, LABELS)
    assert clf.method.scorer.quantize is None and clf.method.calibrate == "none"
    assert (clf.method.prompt.item_words, clf.method.prompt.demo_words) == (20, 8)


def test_empty_or_missing_texts_are_named_or_skipped(tmp_path, server_factory, sample_rows, capsys):
    server = server_factory()
    src = tmp_path / "in.parquet"
    pd.DataFrame({"text": [sample_rows[0]["text"], None]}).to_parquet(src)
    argv = [
        "classify",
        "--input",
        str(src),
        "--output",
        str(tmp_path / "o.csv"),
        "--labels",
        LABELS,
        "--model",
        f"openai-compatible:gpt-test@{server.base_url}",
        "--no-cache",
    ]
    assert main(argv) == 2
    err = capsys.readouterr().err.strip()
    assert "row 2: the text is empty (pass --skip-empty" in err and len(err.splitlines()) == 1
    assert main(argv + ["--skip-empty"]) == 0
    out = pd.read_csv(tmp_path / "o.csv")
    assert list(out["source"]) == ["api", "skipped"] and out["predicted_label"][0] == sample_rows[0]["label"]


def test_structured_output_mode_is_a_cli_option(tmp_path, server_factory, sample_rows):
    server = server_factory()
    src = tmp_path / "in.csv"
    pd.DataFrame({"text": [r["text"] for r in sample_rows[:3]]}).to_csv(src, index=False)
    assert (
        main(
            [
                "classify",
                "--input",
                str(src),
                "--output",
                str(tmp_path / "o.csv"),
                "--labels",
                LABELS,
                "--model",
                f"openai-compatible:gpt-test@{server.base_url}",
                "--no-cache",
                "--structured",
                "function_calling",
            ]
        )
        == 0
    )
    assert server.log.bodies[0]["tools"][0]["type"] == "function"
    assert list(pd.read_csv(tmp_path / "o.csv")["predicted_label"]) == [r["label"] for r in sample_rows[:3]]


def test_no_logprobs_is_a_cli_option_and_rejected_where_it_does_not_apply(
    tmp_path, server_factory, sample_rows, capsys
):
    server = server_factory()
    src = tmp_path / "in.csv"
    pd.DataFrame({"text": [r["text"] for r in sample_rows[:3]]}).to_csv(src, index=False)
    argv = ["classify", "--input", str(src), "--output", str(tmp_path / "o.csv"), "--labels", LABELS, "--no-cache"]
    assert main(argv + ["--model", f"openai-compatible:gpt-test@{server.base_url}", "--no-logprobs"]) == 0
    assert server.log.bodies and not any("logprobs" in body for body in server.log.bodies)
    assert main(argv + ["--model", "embed", "--no-logprobs"]) == 2
    assert "option logprobs does not apply to model embed" in capsys.readouterr().err
