"""Data helpers: file formats, joined columns, seeded splits, tabular serialisation. No model."""

import pandas as pd
import pytest

from promptclf.core.data import read_table, serialize_rows, split, text_of, write_table


def test_split_is_seeded_and_disjoint():
    rows = list(range(100))
    a, b, c = split(rows, [60, 10, 30], seed=0)
    assert split(rows, [60, 10, 30], seed=0) == [a, b, c]
    assert split(rows, [60, 10, 30], seed=1)[0] != a
    assert sorted(a + b + c) == rows
    with pytest.raises(ValueError, match="add up to more"):
        split(rows, [90, 20], seed=0)


def test_serialize_rows_lists_features_then_the_question():
    frame = pd.DataFrame({"mean radius": [14.127291], "texture": ["smooth"]})
    (text,) = serialize_rows(frame, question="Is the tumour malignant?")
    assert text == "- mean radius: 14.1\n- texture: smooth\nIs the tumour malignant?"
    assert serialize_rows([{"a": 1, "b": 2.0}], columns=["b"]) == ["- b: 2"]


@pytest.mark.parametrize("suffix", [".csv", ".jsonl", ".parquet"])
def test_round_trip_and_joined_columns(tmp_path, suffix):
    frame = pd.DataFrame({"title": ["Hello.", "x"], "body": ["world", ""]})
    write_table(frame, tmp_path / f"f{suffix}")
    back = read_table(tmp_path / f"f{suffix}")
    assert text_of(back, "title,body") == ["Hello. world", "x"]
    with pytest.raises(ValueError, match="unsupported format"):
        read_table(tmp_path / f"f{suffix}").pipe(lambda f: write_table(f, tmp_path / "f.xlsx"))


@pytest.mark.parametrize("suffix", [".jsonl", ".parquet"])
def test_missing_values_are_empty_texts_not_the_word_nan(tmp_path, suffix):
    frame = pd.DataFrame({"title": ["Oil up", None, None], "body": ["x", "y", None]})
    write_table(frame, tmp_path / f"f{suffix}")
    back = read_table(tmp_path / f"f{suffix}")
    assert text_of(back, "title") == ["Oil up", "", ""]
    assert text_of(back, "title,body") == ["Oil up. x", "y", ""]
    assert text_of(pd.DataFrame({"t": [float("nan"), "x"]}), "t") == ["", "x"]


def test_quickstart_data_is_found_from_the_checkout_without_an_editable_install(tmp_path, monkeypatch):
    import promptclf.core.data as data

    checkout, shared = tmp_path / "checkout", tmp_path / "shared" / "data" / "ag_news"
    checkout.mkdir()
    shared.mkdir(parents=True)
    (shared / "test.csv").write_text("label,title,description\n3,Oil,up\n")
    site = tmp_path / "venv/lib/python3.11/site-packages/promptclf/core/data.py"  # a regular (not editable) install
    monkeypatch.setattr(data, "__file__", str(site))
    monkeypatch.chdir(checkout)
    assert data.default_ag_news_path().resolve() == (shared / "test.csv").resolve()
    assert data.load_ag_news() == [{"text": "Oil. up", "label": "Business"}]


def test_quickstart_data_is_found_next_to_an_editable_checkout_from_another_directory(tmp_path, monkeypatch):
    import promptclf.core.data as data

    shared = tmp_path / "shared" / "data" / "ag_news"
    shared.mkdir(parents=True)
    (shared / "test.csv").write_text("label,title,description\n3,Oil,up\n")
    monkeypatch.setattr(data, "__file__", str(tmp_path / "checkout/promptclf/core/data.py"))
    elsewhere = tmp_path / "somewhere" / "else"
    elsewhere.mkdir(parents=True)
    monkeypatch.chdir(elsewhere)
    assert data.default_ag_news_path().resolve() == (shared / "test.csv").resolve()
