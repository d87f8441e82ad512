"""Finding wrong labels (promptclf.find_label_errors, `promptclf audit`): out-of-fold probabilities from the
offline components, then cleanlab, on the AG News sample (tests/data) with some labels flipped."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from promptclf.cli import main

from .conftest import LABELS

FLIPS = 12  # of the sample's 120 rows


def flipped_labels(rows, n, seed=0):
    """The rows' labels with n of them changed to another label (seeded), and which ones."""
    rng = np.random.default_rng(seed)
    flipped = sorted(int(i) for i in rng.choice(len(rows), size=n, replace=False))
    labels = [r["label"] for r in rows]
    for i in flipped:
        others = [name for name in LABELS if name != labels[i]]
        labels[i] = others[int(rng.integers(len(others)))]
    return labels, set(flipped)


@pytest.fixture(scope="module")
def audited(sample_rows):
    """The audit of the sample with FLIPS labels flipped, and of the sample as it is."""
    from promptclf import find_label_errors

    texts = [r["text"] for r in sample_rows]
    labels, flipped = flipped_labels(sample_rows, FLIPS)
    noisy = find_label_errors(texts, labels, label_set=LABELS)
    clean = find_label_errors(texts, [r["label"] for r in sample_rows], label_set=LABELS)
    return noisy, clean, flipped


def test_the_flipped_labels_are_found_and_the_right_label_suggested(audited, sample_rows):
    noisy, _, flipped = audited
    found = set(noisy["row"]) & flipped
    # Chance would be FLIPS / 120 = 10% of the flagged rows; the models see each row only from other folds.
    assert len(found) >= 0.3 * len(noisy)
    assert len(found) >= 0.5 * FLIPS
    suggested = noisy.set_index("row")["suggested_label"]
    assert sum(suggested[i] == sample_rows[i]["label"] for i in found) >= 0.75 * len(found)


def test_the_audit_flags_fewer_rows_when_no_label_was_flipped(audited):
    noisy, clean, flipped = audited
    assert len(clean) < len(noisy)
    assert len(set(clean["row"]) & flipped) <= len(flipped) // 4  # the rows flipped above are mostly right here


def test_suspects_are_ranked_by_the_probability_of_the_label_given(audited):
    noisy, _, _ = audited
    assert list(noisy.columns) == [
        "row",
        "text",
        "label",
        "suggested_label",
        "label_quality",
        "suggested_probability",
    ]
    assert noisy["label_quality"].is_monotonic_increasing
    assert (noisy["label_quality"] <= noisy["suggested_probability"] + 1e-12).all()
    assert (noisy["label"] != noisy["suggested_label"]).any()


def test_the_folds_never_score_a_row_with_a_model_that_saw_it(sample_rows, monkeypatch):
    """A trainer that remembers its rows answers them with their own label: out-of-fold probabilities must
    never see that answer."""
    from promptclf.core.labels import LabelSet
    from promptclf.core.methods import from_probabilities
    from promptclf.workflows import audit

    labels = LabelSet.of(LABELS)

    class Memorises:
        def __init__(self, rows):
            self.seen = {r["text"]: r["label"] for r in rows}

        def predict(self, texts, usage):
            def probs(batch):
                out = np.full((len(batch), len(labels)), 0.25)
                for k, t in enumerate(batch):
                    if t in self.seen:
                        out[k] = np.eye(len(labels))[labels.index(self.seen[t])]
                return out

            return from_probabilities(labels, probs, texts, usage, "test")

    monkeypatch.setattr(audit, "trainer", lambda *a, **k: Memorises)
    monkeypatch.setattr(audit, "shared_encoder", lambda texts, progress: None)
    rows = [{"text": r["text"], "label": r["label"]} for r in sample_rows]
    probs = audit.out_of_fold_probabilities(rows, labels, ("examples",))
    assert np.allclose(probs, 0.25)


def test_known_vectors_ask_the_encoder_only_for_new_texts():
    from promptclf.workflows.audit import KnownVectors

    class Encoder:
        identity = "enc"
        asked: list = []

        def encode(self, texts):
            self.asked.append(list(texts))
            return np.ones((len(texts), 2), dtype=np.float32)

    encoder = Encoder()
    known = KnownVectors(encoder, ["a", "b"], np.array([[1.0, 0.0], [0.0, 1.0]], dtype=np.float32))
    vectors = known.encode(["b", "a", "new", "b"])
    assert encoder.asked == [["new"]]
    assert vectors.tolist() == [[0.0, 1.0], [1.0, 0.0], [1.0, 1.0], [0.0, 1.0]]
    assert known.identity == "enc"


def test_cli_audit_prints_and_writes_the_suspects(tmp_path, sample_rows, audited, capsys):
    noisy, _, _ = audited
    labels, _ = flipped_labels(sample_rows, FLIPS)
    examples = tmp_path / "examples.csv"
    pd.DataFrame({"text": [r["text"] for r in sample_rows], "label": labels}).to_csv(examples, index=False)
    assert main(["audit", "--examples", str(examples), "--top", "3"]) == 0
    out, err = capsys.readouterr()
    written = pd.read_csv(tmp_path / "examples.label_issues.csv")
    assert written["row"].tolist() == [i + 1 for i in noisy["row"]]  # 1 is the first data row
    assert f"{len(noisy)} of {len(sample_rows)} rows look mislabelled" in out
    first = written.iloc[0]
    assert f"{first['row']:>6}  {first['label']:<16} {first['suggested_label']:<16}" in out
    assert f"and {len(noisy) - 3} more" in out
    assert "audit: examples" in err and "fold" in err  # the folds' progress bar
    assert f"wrote {len(noisy)} suspect rows" in err and "wrote" not in out


@pytest.mark.parametrize(
    "rows, options, message",
    [
        (
            [("a text", "World"), ("b text", "World"), ("c text", "Sports")],
            [],
            "label 'Sports' has a single row (row 3)",
        ),
        ([("a text", "World"), ("b text", "Weather")], ["--labels", ",".join(LABELS)], "'Weather' (row 2)"),
        ([("a text", "World;Sports"), ("b text", "World")], [], "single-label rows only"),
        ([("a text", "World"), ("b text", "World")], [], "the audit needs two or more"),
    ],
)
def test_cli_audit_refuses_rows_it_cannot_judge_naming_them(tmp_path, capsys, rows, options, message):
    examples = tmp_path / "examples.csv"
    pd.DataFrame(rows, columns=["text", "label"]).to_csv(examples, index=False)
    assert main(["audit", "--examples", str(examples), *options]) == 2
    err = capsys.readouterr().err
    assert message in err and str(examples) in err
    assert not (tmp_path / "examples.label_issues.csv").exists()


def test_unknown_components_are_refused_before_any_work():
    from promptclf import ConfigError, find_label_errors

    with pytest.raises(ConfigError, match="choose from"):
        find_label_errors(["a", "b", "c", "d"], ["x", "y", "x", "y"], components=("bert",))


def test_the_self_trained_component_joins_the_default_from_enough_distinct_texts():
    from promptclf.methods.label_similarity import MIN_UNLABELED
    from promptclf.workflows.audit import default_components

    assert default_components([f"text {i}" for i in range(MIN_UNLABELED)]) == ("examples", "self-trained")
    assert default_components([f"text {i % (MIN_UNLABELED - 1)}" for i in range(500)]) == ("examples",)


def test_find_label_errors_is_the_top_level_function():
    import promptclf
    from promptclf.workflows import audit

    assert promptclf.find_label_errors is audit.find_label_errors and "find_label_errors" in promptclf.__all__


def test_several_components_are_combined_with_weights_fitted_on_their_out_of_fold_probabilities(monkeypatch):
    """An informative component and an uninformative one: the combination follows the informative one."""
    from promptclf.core.labels import LabelSet
    from promptclf.core.methods import from_probabilities
    from promptclf.workflows import audit

    labels = LabelSet.of(["a", "b"])
    rows = [{"text": f"{'a' if i % 2 else 'b'} {i}", "label": "a" if i % 2 else "b"} for i in range(40)]

    def trainer(name, *args):
        def fitted(train_rows):
            class Method:
                def predict(self, texts, usage):
                    def probs(batch):
                        if name == "labels":  # no information
                            return np.full((len(batch), 2), 0.5)
                        return np.array([[0.8, 0.2] if t.startswith("a") else [0.2, 0.8] for t in batch])

                    return from_probabilities(labels, probs, texts, usage, name)

            return Method()

        return fitted

    monkeypatch.setattr(audit, "trainer", trainer)
    monkeypatch.setattr(audit, "shared_encoder", lambda texts, progress: None)
    combined = audit.out_of_fold_probabilities(rows, labels, ("examples", "labels"))
    assert np.allclose(combined.sum(axis=1), 1.0)
    assert (combined.argmax(axis=1) == [0 if r["label"] == "a" else 1 for r in rows]).all()
    assert combined.max(axis=1).min() > 0.8  # sharper than the informative one alone: its weight was fitted above 1


def test_cli_setfit_adds_the_setfit_component(tmp_path, sample_rows, monkeypatch, capsys):
    from promptclf.workflows import audit

    asked = []

    def probabilities(rows, labels, components, **options):
        asked.append(tuple(components))
        return np.eye(len(labels))[[labels.index(r["label"]) for r in rows]]

    monkeypatch.setattr(audit, "out_of_fold_probabilities", probabilities)
    examples = tmp_path / "examples.csv"
    pd.DataFrame([{"text": r["text"], "label": r["label"]} for r in sample_rows]).to_csv(examples, index=False)
    assert main(["audit", "--examples", str(examples), "--setfit", "--quiet"]) == 0
    assert main(["audit", "--examples", str(examples), "--components", "labels", "--setfit", "--quiet"]) == 0
    assert asked == [("examples", "setfit"), ("labels", "setfit")]  # 120 texts: too few for self-trained
    assert "no suspect labels among 120 rows" in capsys.readouterr().out
