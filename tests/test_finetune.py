"""Real training (MiniLM base, 4-bit NF4 LoRA, CPU) on a few hundred AG News rows from
../shared/data/ag_news/test.csv, through the CLI; then load, evaluate and fallback routing."""

import json

import pandas as pd
import pytest

from promptclf import Classifier, ConfigError
from promptclf.cli import main
from promptclf.core.data import load_ag_news, split
from promptclf.methods.finetune import FineTuneConfig, FineTunedMethod, finetune, plan_schedule

from .fake_openai_server import binomial_spread, noisy_oracle

LABELS = ["World", "Sports", "Business", "Sci/Tech"]


@pytest.fixture(scope="module")
def ag_split():
    train, test = split(load_ag_news(), [320, 200], seed=0)
    return train, test


@pytest.fixture(scope="module")
def trained(tmp_path_factory, ag_split):
    """Two epochs, so the run goes train -> eval -> train -> eval (the AVX512-BF16 repacking trap)."""
    base = tmp_path_factory.mktemp("ft")
    train, test = ag_split
    pd.DataFrame(train).to_csv(base / "train.csv", index=False)
    pd.DataFrame(test).to_csv(base / "test.csv", index=False)
    assert (
        main(
            [
                "finetune",
                "--train",
                str(base / "train.csv"),
                "--out",
                str(base / "model"),
                "--epochs",
                "2",
                "--labels",
                ",".join(LABELS),
            ]
        )
        == 0
    )
    return base


@pytest.mark.slow  # shares the module's LoRA training (about 75 s on 2 cores): -m slow, run by .ci/run
def test_fine_tuned_model_is_well_above_chance_and_saved_whole(trained, capsys):
    meta = json.loads((trained / "model" / "promptclf.json").read_text())
    assert meta["config"]["quantize"] == "4bit" and meta["metrics"]["dev"]["epoch"] == 2.0
    assert (trained / "model" / "adapter_model.safetensors").exists()
    code = main(
        [
            "evaluate",
            "--model",
            f"finetuned:{trained / 'model'}",
            "--data",
            str(trained / "test.csv"),
            "--json",
            str(trained / "eval.json"),
            "--no-progress",
        ]
    )
    assert code == 0
    result = json.loads((trained / "eval.json").read_text())
    assert result["accuracy"] > 0.6, result  # chance 0.25; measured 0.855 with this split and seed
    assert "accuracy" in capsys.readouterr().out


@pytest.mark.slow  # shares the module's LoRA training (about 75 s on 2 cores): -m slow, run by .ci/run
def test_save_load_predicts_the_same(trained, ag_split):
    _, test = ag_split
    texts = [r["text"] for r in test[:40]]
    a = FineTunedMethod.load(trained / "model").probabilities(texts)
    b = FineTunedMethod.load(trained / "model", LABELS).probabilities(texts)
    assert (a.argmax(1) == b.argmax(1)).all() and abs(a - b).max() < 1e-5
    assert a.max(1).mean() > 0.4  # a trained head, not a random one reloaded


@pytest.mark.slow  # shares the module's LoRA training (about 75 s on 2 cores): -m slow, run by .ci/run
def test_label_set_mismatch_is_refused(trained):
    with pytest.raises(ConfigError, match="was trained on labels"):
        FineTunedMethod.load(trained / "model", ["World", "Sports"])


@pytest.mark.slow  # shares the module's LoRA training (about 75 s on 2 cores): -m slow, run by .ci/run
def test_server_down_every_item_is_labelled_by_the_fallback(trained, ag_split, cache_dir):
    _, test = ag_split
    rows = test[:30]
    clf = Classifier(
        LABELS,
        "openai-compatible:gpt-test@http://127.0.0.1:9/v1",
        cache=cache_dir,
        fallback=trained / "model",
        max_attempts=2,
        max_wait=0.01,
    )
    preds = clf.predict([r["text"] for r in rows])
    assert all(p.source == "fallback" and p.label in LABELS for p in preds)
    assert clf.report.fallback == 30 and clf.report.failed == 0
    assert sum(p.label == r["label"] for p, r in zip(preds, rows)) >= 18


@pytest.mark.slow  # shares the module's LoRA training (about 75 s on 2 cores): -m slow, run by .ci/run
def test_low_confidence_answers_can_be_routed_to_the_fallback(trained, server_factory, sample_rows, cache_dir):
    server = server_factory()
    texts = [r["text"] for r in sample_rows[:6]]
    model = f"completions:tiny@{server.base_url}"
    sure = Classifier(
        LABELS, model, cache=cache_dir, calibrate="none", fallback=f"finetuned:{trained / 'model'}", fallback_below=0.5
    )
    assert {p.source for p in sure.predict(texts)} == {"api"}
    doubtful = Classifier(
        LABELS, model, cache=cache_dir, calibrate="none", fallback=trained / "model", fallback_below=0.999
    )
    assert {p.source for p in doubtful.predict(texts)} == {"fallback"}
    assert doubtful.report.fallback == 6


@pytest.mark.slow  # shares the module's LoRA training (about 75 s on 2 cores): -m slow, run by .ci/run
def test_fine_tuned_model_string_works_in_classify(trained, ag_split):
    _, test = ag_split
    rows = test[:40]
    clf = Classifier(LABELS, f"finetuned:{trained / 'model'}")
    predictions = clf.predict([r["text"] for r in rows])
    labels = [p.label for p in predictions]
    assert {p.source for p in predictions} == {"lora"}
    assert sum(label == r["label"] for label, r in zip(labels, rows)) >= 24  # chance 10; 0.855 of 200 above
    assert clf.report.compute_s > 0


@pytest.mark.slow  # a LoRA training of its own: -m slow, run by .ci/run
def test_init_from_starts_from_the_saved_model(trained, ag_split, tmp_path):
    train, test = ag_split
    texts = [r["text"] for r in test[:40]]
    saved = FineTunedMethod.load(trained / "model")
    # no learning: the continued model must be the saved one, adapter and head, not a fresh start
    method = finetune(
        train[:32],
        LABELS,
        out=tmp_path / "more",
        init_from=trained / "model",
        epochs=1,
        learning_rate=0.0,
        progress=False,
    )
    assert method.config.quantize == "4bit"  # kept from the saved model
    assert abs(method.probabilities(texts) - saved.probabilities(texts)).max() < 1e-4


@pytest.mark.slow  # a LoRA training of its own: -m slow, run by .ci/run
def test_eight_bit_fine_tuning_trains_saves_and_loads(ag_split, tmp_path):
    train, test = ag_split
    method = finetune(train[:96], LABELS, out=tmp_path / "m8", quantize="8bit", epochs=1, max_length=48, progress=False)
    meta = json.loads((tmp_path / "m8" / "promptclf.json").read_text())
    assert meta["config"]["quantize"] == "8bit"
    texts = [r["text"] for r in test[:20]]
    again = FineTunedMethod.load(tmp_path / "m8")
    assert abs(again.probabilities(texts) - method.probabilities(texts)).max() < 1e-4


@pytest.mark.slow  # a LoRA training of its own: -m slow, run by .ci/run
def test_distill_teaches_the_local_model_what_the_llm_answered(server_factory, ag_split, tmp_path, capsys):
    train, test = ag_split
    gold = {" ".join(r["text"].split()): r["label"] for r in train + test}
    # a teacher wrong on about 20% of items: the report must give its own accuracy on the test rows
    teacher = noisy_oracle(lambda text: gold[" ".join(text.split())], LABELS, 0.2, seed=16)
    server = server_factory(oracle=teacher)
    pd.DataFrame({"text": [r["text"] for r in train[:160]]}).to_csv(tmp_path / "pool.csv", index=False)
    pd.DataFrame(test[:60]).to_csv(tmp_path / "gold.csv", index=False)
    code = main(
        [
            "distill",
            "--pool",
            str(tmp_path / "pool.csv"),
            "--test",
            str(tmp_path / "gold.csv"),
            "--labels",
            ",".join(LABELS),
            "--model",
            f"openai-compatible:gpt-test@{server.base_url}",
            "--out",
            str(tmp_path / "student"),
            "--quantize",
            "none",
            "--epochs",
            "2",
            "--max-length",
            "64",
        ]
    )
    assert code == 0
    report = json.loads((tmp_path / "student" / "distill.json").read_text())
    assert report["pool"] == 160 and report["teacher_usage"]["requests"] >= 16
    # its accuracy on these 60 rows, within 3 binomial sd (0.15) of its rate 0.8
    right = sum(teacher(r["text"]) == r["label"] for r in test[:60]) / 60
    assert report["teacher_accuracy"] == pytest.approx(right) and abs(right - 0.8) <= binomial_spread(0.8, 60)
    assert report["agreement"] > 0.4 and report["student_accuracy"] > 0.4  # chance 0.25
    assert FineTunedMethod.load(tmp_path / "student").labels.names == LABELS


def test_cli_finetune_reports_a_missing_column(tmp_path, capsys):
    pd.DataFrame({"text": ["a", "b"], "label": ["x", "y"]}).to_csv(tmp_path / "t.csv", index=False)
    assert (
        main(["finetune", "--train", str(tmp_path / "t.csv"), "--label-column", "topic", "--out", str(tmp_path / "m")])
        == 2
    )
    assert "column 'topic' not in" in capsys.readouterr().err


def test_small_data_schedule_reaches_min_steps():
    """32 rows in batches of 32 for 3 epochs were 3 optimiser steps (0.50-0.53 on AG News, a head barely
    trained); small data now gets smaller batches and more epochs up to min_steps."""
    config = FineTuneConfig(epochs=3)
    small = plan_schedule(32, config)
    assert small.steps >= config.min_steps and small.batch_size == 8 and small.eval_steps == 8
    assert plan_schedule(32, FineTuneConfig(epochs=3, min_steps=0)).steps == 3  # the old schedule
    assert plan_schedule(231, config).epochs == 3 and plan_schedule(231, config).steps >= config.min_steps
    big = plan_schedule(3600, FineTuneConfig(epochs=2))  # 4,000 rows less the dev 10%: unchanged
    assert (big.batch_size, big.epochs, big.steps, big.eval_steps, big.warmup_steps) == (32, 2, 226, None, 0)


def test_few_rows_train_on_all_rows_for_min_steps(tmp_path):
    """16 rows, no dev rows: no 1-row dev set is held out, and training runs min_steps optimiser steps (the old
    schedule: 15 rows in one batch, 3 steps). A small floor and short texts keep it quick."""
    rows = split(load_ag_news(), [16], seed=1)[0]
    method = finetune(rows, LABELS, out=tmp_path / "m", progress=False, max_length=16, min_steps=12)
    metrics = method.metrics
    assert metrics["train_rows"] == 16 and metrics["dev_rows"] == 0 and metrics["dev"] == {}
    assert metrics["steps"] == 12 and metrics["schedule"]["batch_size"] == 8
    assert method.probabilities([r["text"] for r in rows]).shape == (16, 4)
