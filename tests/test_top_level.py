"""`promptclf.finetune`, `promptclf.distill`, `promptclf.optimize` and `promptclf.compare` are the functions
(their modules live in the layers: promptclf.methods.finetune, promptclf.workflows.*), loaded only when used."""

from __future__ import annotations

import importlib
import inspect
import subprocess
import sys

import pytest

import promptclf
from promptclf import ConfigError

LABELS = ["World", "Sports", "Business", "Sci/Tech"]
NAMES = ("finetune", "distill", "optimize", "compare")


@pytest.mark.parametrize("name", NAMES)
def test_the_top_level_name_is_the_function_of_its_module(name):
    function = getattr(promptclf, name)
    assert inspect.isfunction(function) and function is getattr(importlib.import_module(promptclf.WORKFLOWS[name]), name)
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


def test_compare_runs_from_the_top_level(sample_rows, tmp_path):
    results = promptclf.compare(sample_rows, LABELS, methods=["tfidf-lr"], split=(60, 10, 50), out=tmp_path)
    assert [r["method"] for r in results] == ["tfidf-lr"] and results[0]["n_test"] == 50
    assert 0.0 <= results[0]["accuracy"] <= 1.0 and (tmp_path / "report.md").exists()


def test_optimize_runs_from_the_top_level(server_factory, sample_rows):
    server = server_factory()
    model = f"openai-compatible:gpt-test@{server.base_url}"
    artifact = promptclf.optimize(sample_rows[:12], sample_rows[12:24], LABELS, model, max_demos=2, cache=False)
    assert len(artifact.demos) <= 2 and artifact.dev_score == 1.0 and server.log.requests > 0  # the oracle server
    with pytest.raises(ConfigError, match="metric='recall'"):
        promptclf.optimize(sample_rows[:4], sample_rows[4:8], LABELS, model, metric="recall")


def test_finetune_from_the_top_level_checks_its_arguments(tmp_path):
    with pytest.raises(ConfigError, match="method='bert'"):
        promptclf.finetune([{"text": "a", "label": "World"}], LABELS, out=tmp_path, method="bert")
    with pytest.raises(ConfigError, match="needs training rows"):
        promptclf.finetune([], LABELS, out=tmp_path)
