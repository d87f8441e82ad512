"""`promptclf.finetune`, `promptclf.optimize` and `promptclf.compare` are the functions, while the modules of
the same names stay importable in either order (checked in fresh interpreters), and load only when used."""

from __future__ import annotations

import inspect
import subprocess
import sys

import pytest

import promptclf
from promptclf import ConfigError

LABELS = ["World", "Sports", "Business", "Sci/Tech"]
NAMES = ("finetune", "optimize", "compare")


@pytest.mark.parametrize("name", NAMES)
def test_the_top_level_name_is_the_function_of_its_module(name):
    function = getattr(promptclf, name)
    assert inspect.isfunction(function) and function is getattr(sys.modules[f"promptclf.{name}"], name)
    assert name in promptclf.__all__


MODULES_FIRST = """
import sys
import promptclf
assert not [name for name in ("finetune", "optimize", "compare") if f"promptclf.{name}" in sys.modules]
from promptclf.finetune import FineTuneConfig, finetune as from_module
from promptclf.optimize import PromptArtifact
import promptclf.compare
from promptclf.compare import markdown
import promptclf
from promptclf import finetune, optimize, compare
assert finetune is from_module and finetune.__module__ == "promptclf.finetune"
assert optimize is promptclf.optimize and optimize.__name__ == "optimize"
assert compare is promptclf.compare and callable(compare)
"""

FUNCTIONS_FIRST = """
import importlib, inspect
from promptclf import finetune, optimize, compare
import promptclf.finetune, promptclf.optimize, promptclf.compare
from promptclf.finetune import FineTuneConfig, finetune as from_module
from promptclf.compare import METHODS
import promptclf
assert finetune is from_module is promptclf.finetune and inspect.isfunction(promptclf.compare)
assert importlib.import_module("promptclf.optimize").PromptArtifact and "tfidf-lr" in METHODS
"""


@pytest.mark.parametrize("code", [MODULES_FIRST, FUNCTIONS_FIRST], ids=["modules-first", "functions-first"])
def test_modules_and_functions_import_in_either_order(code):
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
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
