"""`promptclf.finetune`, `promptclf.distill`, `promptclf.optimize` and `promptclf.compare` are the functions
(their modules live in the layers: promptclf.methods.finetune, promptclf.workflows.*), loaded only when used."""

from __future__ import annotations

import importlib
import inspect
import subprocess
import sys

import pytest

import promptclf
from promptclf import Classifier, ConfigError
from promptclf.core.data import split

from .fake_openai_server import binomial_spread, noisy_oracle

LABELS = ["World", "Sports", "Business", "Sci/Tech"]
NAMES = ("finetune", "distill", "optimize", "compare")


@pytest.mark.parametrize("name", NAMES)
def test_the_top_level_name_is_the_function_of_its_module(name):
    function = getattr(promptclf, name)
    assert inspect.isfunction(function) and function is getattr(
        importlib.import_module(promptclf.WORKFLOWS[name]), name
    )
    assert name in promptclf.__all__ and name in dir(promptclf)


LAZY = """
import sys
import promptclf
assert not [m for m in promptclf.WORKFLOWS.values() if m in sys.modules]  # nothing heavy on import
from promptclf import compare
assert callable(compare) and "promptclf.workflows.compare" in sys.modules
from promptclf.methods.finetune import FineTuneConfig, finetune
assert promptclf.finetune is finetune
"""


def test_the_functions_load_their_modules_only_when_used():
    done = subprocess.run([sys.executable, "-c", LAZY], capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr


def test_the_cli_still_finds_the_modules_sub_commands():
    from promptclf.cli import build_parser

    commands = build_parser()._subparsers._group_actions[0].choices
    assert {"finetune", "distill", "optimize", "compare"} <= set(commands)


def accuracy_of(answer, rows) -> float:
    return sum(answer(r["text"]) == r["label"] for r in rows) / len(rows)


def test_compare_runs_from_the_top_level(sample_rows, tmp_path, server_factory, oracle):
    answer = noisy_oracle(oracle, LABELS, 0.3, seed=3)  # a simulated model right on about 70% of items
    server = server_factory(item_oracle=answer)
    results = promptclf.compare(
        sample_rows,
        LABELS,
        methods=["zero-shot"],
        split=(60, 10, 50),
        out=tmp_path,
        model=f"openai-compatible:gpt-test@{server.base_url}",
    )
    assert [r["method"] for r in results] == ["zero-shot"] and results[0]["n_test"] == 50
    # its accuracy on the 50 test rows, within 3 binomial sd (0.19) of its rate 0.7
    test = split(sample_rows, (60, 10, 50), seed=0)[2]
    assert results[0]["accuracy"] == accuracy_of(answer, test) and abs(results[0]["accuracy"] - 0.7) <= binomial_spread(
        0.7, 50
    )
    assert (tmp_path / "report.md").exists()


def test_optimize_runs_from_the_top_level(server_factory, sample_rows, oracle):
    """A model wrong on 60% of items without examples and on 10% with them: the optimised prompt must do better
    than the one it started from (test_optimize.py has the full check)."""
    untaught, taught = noisy_oracle(oracle, LABELS, 0.6, seed=6), noisy_oracle(oracle, LABELS, 0.1, seed=7)
    server = server_factory(item_oracle=untaught, taught_oracle=taught)
    model = f"openai-compatible:gpt-test@{server.base_url}"
    dev = sample_rows[12:36]
    artifact = promptclf.optimize(sample_rows[:12], dev, LABELS, model, max_demos=2, cache=False)
    assert 0 < len(artifact.demos) <= 2 and artifact.dev_score == accuracy_of(taught, dev) > accuracy_of(untaught, dev)
    with pytest.raises(ConfigError, match="metric='recall'"):
        promptclf.optimize(sample_rows[:4], sample_rows[4:8], LABELS, model, metric="recall")


def test_finetune_from_the_top_level_checks_its_arguments(tmp_path):
    with pytest.raises(ConfigError, match="method='bert'"):
        promptclf.finetune([{"text": "a", "label": "World"}], LABELS, out=tmp_path, method="bert")
    with pytest.raises(ConfigError, match="needs training rows"):
        promptclf.finetune([], LABELS, out=tmp_path)


# --- the forms `labels` takes ---------------------------------------------------------------------------


def test_labels_takes_each_documented_form(tmp_path):
    from pathlib import Path

    from promptclf.core.labels import Label, LabelSet
    from promptclf.task.definition import Task

    described = {"World": "news from abroad", "Sports": "games and players"}
    task = Task.of(described)
    forms = {
        "list": ["World", "Sports"],
        "tuple": ("World", "Sports"),
        "commas": "World, Sports",
        "dict": described,
        "label set": LabelSet.of(described),
        "labels": [Label("World", "news from abroad"), Label("Sports", "games and players")],
        "task": task,
        "task file": str(task.save(tmp_path / "task.json")),
        "task file as a Path": Path(task.save(tmp_path / "task.yaml")),
    }
    for form, labels in forms.items():
        got = Classifier(labels, "embed", cache=False).labels
        assert got.names == ["World", "Sports"], form
        if form in ("dict", "label set", "labels", "task", "task file", "task file as a Path"):
            assert [label.description for label in got.labels] == list(described.values()), form


@pytest.mark.parametrize(
    "labels, says",
    [
        (42, "labels is int"),
        (None, "labels is NoneType"),
        ({"World", "Sports"}, "a set have no order"),
        (["World", 2], "label 2 is int, not a name"),
        (["World"], "at least two labels"),
    ],
)
def test_labels_in_another_form_is_a_clear_error(labels, says):
    from promptclf.core.labels import LabelError

    with pytest.raises(LabelError, match=says):
        Classifier(labels, "embed", cache=False)
