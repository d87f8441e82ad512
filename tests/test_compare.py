"""compare(): one table over methods on one seeded split. LLM rows use the fake OpenAI-compatible server."""

import json

from promptclf.cli import main
from promptclf.core.data import split
from promptclf.workflows.compare import compare

from .fake_openai_server import binomial_spread, noisy_oracle

LABELS = ["World", "Sports", "Business", "Sci/Tech"]
KEYS = {
    "method",
    "accuracy",
    "macro_f1",
    "cost_per_1k_items",
    "items_per_s",
    "per_class_f1",
    "calls",
    "prompt_tokens_per_item",
    "train_s",
    "latency_p50_s",
    "latency_p95_s",
    "peak_rss_mb",
}


def accuracy_of(answer, rows) -> float:
    return sum(answer(r["text"]) == r["label"] for r in rows) / len(rows)


def test_compare_writes_one_row_per_method(tmp_path, sample_rows, server_factory, oracle):
    """A simulated model wrong on 40% of items without examples and on 10% with them: each row's accuracy is the
    share of the test rows that model gets right, and few-shot ranks above zero-shot."""
    zero_shot, taught = noisy_oracle(oracle, LABELS, 0.4, seed=1), noisy_oracle(oracle, LABELS, 0.1, seed=2)
    server = server_factory(item_oracle=zero_shot, taught_oracle=taught)
    model = f"openai-compatible:gpt-test@{server.base_url}"
    results = compare(
        sample_rows,
        LABELS,
        methods=["zero-shot", "few-shot", "tfidf-lr", "emb-lr"],
        split=(60, 10, 50),
        seed=0,
        model=model,
        out=tmp_path,
        chunk=25,
        classifier_options={"batch_size": 10},
    )
    assert [r["method"] for r in results] == ["zero-shot", "few-shot", "tfidf-lr", "emb-lr"]
    for row in results:
        assert KEYS <= row.keys() and row["n_test"] == 50
    by = {r["method"]: r for r in results}
    test = split(sample_rows, (60, 10, 50), seed=0)[2]
    for method, answer, right in (("zero-shot", zero_shot, 0.6), ("few-shot", taught, 0.9)):
        # the simulated model's own accuracy on these 50 rows, within 3 binomial sd of its rate (0.21 and 0.13)
        assert by[method]["accuracy"] == accuracy_of(answer, test)
        assert abs(by[method]["accuracy"] - right) <= binomial_spread(right, 50)
    assert by["few-shot"]["accuracy"] > by["zero-shot"]["accuracy"]
    assert by["zero-shot"]["calls"] == 6  # 2 chunks x 3
    assert by["few-shot"]["prompt_tokens_per_item"] > by["zero-shot"]["prompt_tokens_per_item"]
    assert by["tfidf-lr"]["calls"] == 0 and by["emb-lr"]["accuracy"] > 0.5
    saved = json.loads((tmp_path / "report.json").read_text())
    assert [r["method"] for r in saved] == [r["method"] for r in results]
    md = (tmp_path / "report.md").read_text()
    assert "seed-0 shuffle" in md and "| tfidf-lr |" in md
    assert (tmp_path / "report.png").stat().st_size > 10_000


def test_compare_cli_maps_raw_labels_and_refuses_unknown_methods(tmp_path, capsys):
    code = main(
        [
            "compare",
            "--data",
            "tests/data/agnews_sample.csv",
            "--text-column",
            "title,description",
            "--label-names",
            "1=World,2=Sports,3=Business,4=Sci/Tech",
            "--split",
            "80/10/30",
            "--methods",
            "tfidf-lr",
            "--out",
            str(tmp_path),
        ]
    )
    assert code == 0
    assert json.loads((tmp_path / "report.json").read_text())[0]["per_class_f1"].keys() == set(LABELS)
    assert (
        main(
            [
                "compare",
                "--data",
                "tests/data/agnews_sample.csv",
                "--text-column",
                "title",
                "--methods",
                "magic",
                "--split",
                "80/10/30",
                "--out",
                str(tmp_path),
            ]
        )
        == 2
    )
    assert "unknown method(s) ['magic']" in capsys.readouterr().err


def test_the_compared_models_options_do_not_reach_the_embedding_row(tmp_path, sample_rows):
    """classifier_options configure `model`; embed takes no batch_size, and its row must not be refused for it."""
    results = compare(
        sample_rows,
        LABELS,
        methods=["embed"],
        split=(16, 4, 40),
        seed=0,
        out=tmp_path,
        model="openai-compatible:m@http://127.0.0.1:9/v1",
        classifier_options={"batch_size": 5},
    )
    assert results[0]["method"] == "embed" and results[0]["n_test"] == 40


def test_compare_has_embedding_zero_shot_and_setfit_rows(tmp_path, sample_rows):
    results = compare(
        sample_rows,
        LABELS,
        methods=["embed", "setfit"],
        split=(16, 4, 40),
        seed=0,
        out=tmp_path,
        setfit_options={"iterations": 2, "min_pairs": 32, "max_pairs": 32},
    )
    by = {r["method"]: r for r in results}
    assert by["embed"]["accuracy"] > 0.45 and by["embed"]["train_s"] < 30  # chance 0.25; nothing to train
    assert by["setfit"]["size_on_disk_mb"] > 1 and by["setfit"]["train_s"] > 0
    assert json.loads((tmp_path / "setfit" / "promptclf.json").read_text())["metrics"]["steps"] == 2
