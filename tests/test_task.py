"""The task as one piece of data (promptclf/task.py): files, validation, the keyword form's identity, the CLI."""

import json
import os

import pandas as pd
import pytest
from pydantic import ValidationError

from promptclf import Classifier, ConfigError, Task, classify
from promptclf.cli import main

LABELS = ["World", "Sports", "Business", "Sci/Tech"]
DESCRIPTIONS = {"World": "politics and world events", "Sci/Tech": "science and technology"}
ALIASES = {"Sci/Tech": ["science"]}


def examples(rows, n):
    return [{"text": r["text"], "label": r["label"]} for r in rows[-n:]]


def rich_task() -> Task:
    return Task(
        labels=[
            {
                "name": "Sports",
                "description": "games and athletes",
                "aliases": ["sport"],
                "examples": ["Bayern wins the cup final"],
                "negative_examples": ["Stocks rally"],
            },
            {"name": "Business", "examples": ["Ünïcode GmbH buys a rival"]},
        ],
        examples=[{"text": "Oil prices rise", "label": "Business"}],
        instructions="Label the headline by its topic.",
        template="few_shot",
        multi_label=True,
    )


@pytest.mark.parametrize("suffix", [".json", ".yaml", ".yml"])
def test_a_task_round_trips_through_its_file(tmp_path, suffix):
    task = rich_task()
    path = task.save(tmp_path / f"task{suffix}")
    assert Task.load(path) == task and Task.load(str(path)) == task
    assert Task.model_validate(task.model_dump()) == task
    assert "Ünïcode" in path.read_text(encoding="utf-8")  # written as text, not escaped


def test_a_hand_written_yaml_task(tmp_path):
    path = tmp_path / "task.yaml"
    path.write_text(
        "labels:\n  - name: Sports\n    aliases: [sport]\n  - name: Business\n"
        "examples:\n  - {text: Bayern wins, label: sport}\n"
    )
    task = Task.load(path)
    assert task.all_examples() == [{"text": "Bayern wins", "label": "Sports"}]  # the alias became the name
    assert task.multi_label is False and task.template is None


@pytest.mark.parametrize(
    "data, message",
    [
        ({"labels": [{"name": "A"}, {"name": "A"}]}, "duplicate labels in the label set: ['A']"),
        ({"labels": [{"name": "A"}, {"name": " "}]}, "a label name is empty"),
        ({"labels": [{"name": "A"}]}, "at least two labels"),
        (
            {"labels": [{"name": "A"}, {"name": "B"}], "examples": [{"text": "t", "label": "C"}]},
            "label 'C' (example 0) is not in the label set ['A', 'B']",
        ),
        (
            {"labels": [{"name": "A"}, {"name": "B"}], "negative_examples": [{"text": "t", "label": "C"}]},
            "label 'C' (negative example 0) is not in the label set",
        ),
        ({"labels": [{"name": "A", "examples": ["ok", ""]}, {"name": "B"}]}, "example of 'A' 1 has an empty"),
        ({"labels": [{"name": "A", "aliases": ["b"]}, {"name": "B"}]}, "alias 'B' matches both 'A' and 'B'"),
        ({"labels": [{"name": "A"}, {"name": "B"}], "instruction": "typo"}, "instruction"),
    ],
)
def test_a_bad_task_says_what_is_wrong(tmp_path, data, message):
    with pytest.raises(ValidationError) as raised:
        Task.model_validate(data)
    assert message in str(raised.value)
    path = tmp_path / "bad.json"
    path.write_text(json.dumps(data))
    with pytest.raises(ConfigError) as raised:
        Task.load(path)
    assert str(raised.value).startswith(f"{path}: ") and message in str(raised.value)
    assert len(str(raised.value).splitlines()) == 1


def test_unreadable_task_files(tmp_path):
    (tmp_path / "t.yaml").write_text("labels: [unclosed\n")
    with pytest.raises(ConfigError, match="not valid YAML"):
        Task.load(tmp_path / "t.yaml")
    with pytest.raises(FileNotFoundError, match="does not exist"):
        Task.load(tmp_path / "missing.json")
    with pytest.raises(ConfigError, match="ends in .json, .yaml or .yml"):
        Task.load(tmp_path / "t.txt")


def chat(server) -> str:
    return f"openai-compatible:gpt-test@{server.base_url}"


@pytest.mark.parametrize("n_examples", [6, 40])  # all shown / sampled per class: both keep the keyword identity
def test_task_of_keeps_the_keyword_forms_identity(tmp_path, server_factory, sample_rows, n_examples):
    server = server_factory()
    keywords = dict(
        descriptions=DESCRIPTIONS,
        aliases=ALIASES,
        examples=examples(sample_rows, n_examples),
        negative_examples=[{"text": sample_rows[0]["text"], "label": "Sports"}],
        instructions="Headlines only.",
    )
    old = Classifier(LABELS, chat(server), cache=False, **keywords)
    task = Task.of(LABELS, **keywords)
    saved = Task.load(task.save(tmp_path / "task.yaml"))
    for form in (task, saved, tmp_path / "task.yaml", str(tmp_path / "task.yaml")):
        new = Classifier(form, chat(server), cache=False)
        assert new.method.identity == old.method.identity
        assert new.labels == old.labels and new.options["examples"] == old.options["examples"]
    other = Classifier(Task.of(LABELS, **{**keywords, "instructions": "Other."}), chat(server), cache=False)
    assert other.method.identity != old.method.identity  # the identity does see the task


def test_answers_cached_under_the_keyword_form_serve_the_task(tmp_path, server_factory, sample_rows):
    server = server_factory()
    texts = [r["text"] for r in sample_rows[:8]]
    keywords = dict(descriptions=DESCRIPTIONS, examples=examples(sample_rows, 4), instructions="Be brief.")
    first = Classifier(LABELS, chat(server), cache=tmp_path / "c", **keywords).classify(texts)
    asked = server.log.chat_requests
    assert first == [r["label"] for r in sample_rows[:8]] and asked > 0
    again = Classifier(Task.of(LABELS, **keywords), chat(server), cache=tmp_path / "c").classify(texts)
    assert again == first and server.log.chat_requests == asked


def test_each_labels_examples_reach_the_prompt_after_the_task_wide_ones(server_factory):
    server = server_factory()
    task = Task(
        labels=[
            {"name": "World", "examples": ["Talks in Geneva"], "negative_examples": ["Cup final"]},
            {"name": "Sports", "examples": ["Cup final"]},
        ],
        examples=[{"text": "Summit ends", "label": "World"}],
    )
    flat = Classifier(
        ["World", "Sports"],
        chat(server),
        cache=False,
        examples=[
            {"text": "Summit ends", "label": "World"},
            {"text": "Talks in Geneva", "label": "World"},
            {"text": "Cup final", "label": "Sports"},
        ],
        negative_examples=[{"text": "Cup final", "label": "World"}],
    )
    assert Classifier(task, chat(server), cache=False).method.identity == flat.method.identity


@pytest.mark.parametrize(
    "template",
    ["../outside.jinja", "{outside}", "link.jinja", "sub/../../outside.jinja", "{from_the_packaged_templates}"],
)
def test_a_task_files_template_stays_in_its_directory(tmp_path, monkeypatch, template):
    """A task file may name a template beside it or below it, never any other file the process can read."""
    outside = tmp_path / "outside.jinja"
    outside.write_text("SECRET {{ items }}")
    folder = tmp_path / "task"
    folder.mkdir()
    (folder / "link.jinja").symlink_to(outside)
    monkeypatch.chdir(tmp_path)  # where a path relative to the working directory would find the file
    from importlib import resources

    packaged = str(resources.files("promptclf.templates"))  # a name is looked up there, with .jinja added
    written = template.format(
        outside=outside, from_the_packaged_templates=os.path.relpath(outside.with_suffix(""), packaged)
    )
    (folder / "task.yaml").write_text(f"labels: [{{name: A}}, {{name: B}}]\ntemplate: {json.dumps(written)}\n")
    with pytest.raises(ConfigError, match="task file's directory"):
        Task.load(folder / "task.yaml")


def test_a_task_files_template_is_read_beside_it(tmp_path, monkeypatch):
    folder = tmp_path / "task"
    (folder / "prompts").mkdir(parents=True)
    (folder / "prompts" / "mine.jinja").write_text("MINE {% for i in items %}{{ i.text }}{% endfor %}")
    (folder / "task.yaml").write_text("labels: [{name: A}, {name: B}]\ntemplate: prompts/mine.jinja\n")
    monkeypatch.chdir(tmp_path)  # not the task file's directory
    method = Classifier(folder / "task.yaml", "openai-compatible:m@http://127.0.0.1:9/v1", cache=False).method
    assert method.prompt.user_template.startswith("MINE")
    Task.load(folder / "task.yaml").save(folder / "copy.yaml")  # saved beside its template: still relative
    assert "template: prompts/mine.jinja" in (folder / "copy.yaml").read_text()


def test_a_template_the_user_names_in_code_may_be_anywhere(tmp_path):
    outside = tmp_path / "outside.jinja"
    outside.write_text("MINE {% for i in items %}{{ i.text }}{% endfor %}")
    method = Classifier(
        Task.of(["A", "B"], template=outside), "openai-compatible:m@http://127.0.0.1:9/v1", cache=False
    ).method
    assert method.prompt.user_template.startswith("MINE")


@pytest.mark.parametrize(
    "option, value",
    [("examples", []), ("instructions", "x"), ("descriptions", {"a": "b"}), ("aliases", {}), ("negative_examples", [])],
)
def test_a_task_and_a_task_keyword_together_is_an_error(server_factory, option, value):
    server = server_factory()
    with pytest.raises(ConfigError, match=f"^{option}= given with a Task"):
        Classifier(Task.of(LABELS), chat(server), cache=False, **{option: value})


def test_prompt_is_a_conflict_only_where_the_task_names_a_template(server_factory):
    server = server_factory()
    with pytest.raises(ConfigError, match="^prompt= given with a Task"):
        Classifier(Task.of(LABELS, template="few_shot"), chat(server), cache=False, prompt="zero_shot")
    with_prompt = Classifier(Task.of(LABELS), chat(server), cache=False, prompt="few_shot")
    assert (
        with_prompt.method.identity
        == Classifier(Task.of(LABELS, template="few_shot"), chat(server), cache=False).method.identity
    )


def test_classify_takes_a_task_as_its_labels(tmp_path, server_factory, sample_rows):
    server = server_factory()
    texts = [r["text"] for r in sample_rows[:6]]
    path = Task.of(LABELS, aliases=ALIASES).save(tmp_path / "task.json")
    for labels in (Task.of(LABELS), path):
        assert classify(texts, labels=labels, model=chat(server), cache=False) == [r["label"] for r in sample_rows[:6]]


# --- the command line ---------------------------------------------------------------------------------------


def _input(tmp_path, rows):
    src = tmp_path / "in.csv"
    pd.DataFrame({"text": [r["text"] for r in rows]}).to_csv(src, index=False)
    return ["classify", "--input", str(src), "--output", str(tmp_path / "out.csv")]


def test_cli_classify_with_a_task_file(tmp_path, server_factory, sample_rows):
    server = server_factory()
    task = Task.of(LABELS, descriptions=DESCRIPTIONS, examples=examples(sample_rows, 4)).save(tmp_path / "t.yaml")
    code = main(_input(tmp_path, sample_rows[:5]) + ["--task", str(task), "--model", chat(server), "--no-cache"])
    assert code == 0
    assert list(pd.read_csv(tmp_path / "out.csv")["predicted_label"]) == [r["label"] for r in sample_rows[:5]]


@pytest.mark.parametrize(
    "extra, message",
    [
        ([], "--labels or --task is required"),
        (["--labels", "A,B", "--task", "t.yaml"], "--labels and --task both given"),
        (["--task", "{tmp}/missing.yaml"], "missing.yaml does not exist"),
        (["--task", "{tmp}/bad.yaml"], "duplicate labels in the label set: ['A']"),
        (["--task", "{tmp}/ok.yaml", "--instructions", "x"], "instructions= given with a Task"),
    ],
)
def test_cli_task_errors_exit_2(tmp_path, server_factory, sample_rows, capsys, extra, message):
    (tmp_path / "bad.yaml").write_text("labels: [{name: A}, {name: A}]\n")
    Task.of(["A", "B"]).save(tmp_path / "ok.yaml")
    argv = _input(tmp_path, sample_rows[:2]) + [a.format(tmp=tmp_path) for a in extra]
    code = main(argv + ["--model", chat(server_factory()), "--no-cache"])
    err = capsys.readouterr().err.strip()
    assert code == 2 and message in err and len(err.splitlines()) == 1


def test_cli_evaluate_with_a_task_file(tmp_path, server_factory, sample_rows, capsys):
    server = server_factory()
    data = tmp_path / "gold.csv"
    pd.DataFrame({"text": [r["text"] for r in sample_rows[:6]], "label": [r["label"] for r in sample_rows[:6]]}).to_csv(
        data, index=False
    )
    task = Task.of(LABELS).save(tmp_path / "t.json")
    assert main(["evaluate", "--data", str(data), "--task", str(task), "--model", chat(server), "--no-cache"]) == 0
    assert "accuracy 1.0000" in capsys.readouterr().out
