"""The provider registry: an option the chosen backend does not take is an error that names the backends
that do (in Python and through the CLI, exit 2); options at their defaults pass; a new backend is one
`register`; optimised prompt artifacts are a Task plus provenance and old files still load."""

import json
import logging
from dataclasses import dataclass

import pytest

from promptclf import Classifier, ConfigError, Task
from promptclf.cli import main
from promptclf.core.methods import Prediction
from promptclf.providers.registry import REGISTRY, Options, Provider, parse_model
from promptclf.task.artifacts import PromptArtifact

LABELS = ["World", "Sports", "Business", "Sci/Tech"]
SERVER = "http://127.0.0.1:9/v1"  # nothing listens: these configurations fail before any call
ROWS = [{"text": "Striker scores twice", "label": "Sports"}, {"text": "Shares fall", "label": "Business"}]
CHAT = "together, openai, openai-compatible"


@pytest.mark.parametrize(
    "model, option, takers",
    [
        ("local", dict(negative_examples=ROWS), CHAT),
        ("local", dict(descriptions={"World": "news from abroad"}), f"offline, embed, {CHAT}"),
        (f"completions:m@{SERVER}", dict(batch_size=20), CHAT),
        ("embed", dict(prompt="few_shot"), f"local, {CHAT}, completions"),
        ("offline", dict(calibrate="none"), "local, completions"),
        (f"openai-compatible:m@{SERVER}", dict(quantize="int8"), "local"),
        (f"openai-compatible:m@{SERVER}", dict(offline={"folds": 2}), "offline"),
        ("finetuned:/nowhere", dict(examples=ROWS), f"offline, embed, local, {CHAT}, completions"),
        ("finetuned:/nowhere", dict(instructions="Be brief."), f"local, {CHAT}, completions"),
    ],
)
def test_an_option_the_backend_does_not_take_is_an_error_naming_those_that_do(model, option, takers):
    ((name, _),) = option.items()
    with pytest.raises(ConfigError) as raised:
        Classifier(LABELS, model, cache=False, **option)
    assert (
        str(raised.value) == f"option {name} does not apply to model {parse_model(model).id}; it is taken by: {takers}"
    )


def test_options_at_their_defaults_apply_to_any_backend():
    """The CLI and the sklearn wrapper pass every option they have, at its default where not set."""
    clf = Classifier(
        LABELS,
        "embed",
        cache=False,
        batch_size=10,
        structured="auto",
        calibrate="auto",
        demo_words=12,
        quantize="auto",
        timeout=60.0,
        k=None,
        prompt=None,
        instructions="",
        negative_examples=[],
        descriptions=None,
        offline=None,
        unlabeled=[],
    )
    assert clf.spec.provider == "embed"


def test_an_option_no_backend_takes_is_a_type_error():
    with pytest.raises(TypeError, match="unknown option 'batchsize'"):
        Classifier(LABELS, "embed", batchsize=4)


def test_a_ready_made_method_takes_no_backend_options():
    method = Classifier(LABELS, "embed", cache=False).method
    with pytest.raises(ConfigError, match="option batch_size does not apply to method=LabelSimilarity"):
        Classifier(LABELS, method=method, batch_size=4)


def test_the_cli_says_in_one_line_which_backends_take_an_option(tmp_path, capsys):
    data = tmp_path / "in.csv"
    data.write_text("text\nStriker scores twice\n")
    code = main(
        [
            "classify",
            "--input",
            str(data),
            "--output",
            str(tmp_path / "out.csv"),
            "--labels",
            ",".join(LABELS),
            "--model",
            "local",
            "--batch-size",
            "20",
            "--no-cache",
        ]
    )
    err = capsys.readouterr().err.strip()
    assert code == 2 and len(err.splitlines()) == 1
    assert f"option batch_size does not apply to model local; it is taken by: {CHAT}" in err


def test_a_task_the_backend_uses_only_in_part_is_said_not_refused(caplog):
    task = Task.of(LABELS, descriptions={"World": "news from abroad"}, negative_examples=ROWS)
    with caplog.at_level(logging.WARNING, logger="promptclf"):
        clf = Classifier(task, f"completions:m@{SERVER}", cache=False)
    assert clf.spec.provider == "completions"
    assert (
        "model completions:m@http://127.0.0.1:9/v1 does not use the task's negative_examples, descriptions"
        in caplog.text
    )


def test_a_backend_is_one_register_call(monkeypatch):
    @dataclass
    class EchoOptions(Options):
        answer: str = "World"

    class Echo:
        cacheable, identity = False, "echo"

        def __init__(self, labels, answer):
            self.labels, self.answer = labels, answer

        def predict(self, texts, usage):
            for i, _ in enumerate(texts):
                yield i, Prediction(self.answer, 1.0)

    # what register(Provider(...)) does, undone after the test
    monkeypatch.setitem(
        REGISTRY,
        "echo",
        Provider("echo", "echo:<anything>", EchoOptions, lambda spec, labels, options: Echo(labels, options.answer)),
    )
    assert Classifier(LABELS, "echo:x", answer="Sports", cache=False).classify(["a", "b"]) == ["Sports", "Sports"]
    with pytest.raises(ConfigError, match="option answer does not apply to model embed; it is taken by: echo"):
        Classifier(LABELS, "embed", answer="Sports")
    with pytest.raises(ConfigError, match="option batch_size does not apply to model echo:x"):
        Classifier(LABELS, "echo:x", batch_size=3)


# --- optimised prompt artifacts ---------------------------------------------------------------------------


def old_artifact(path):
    """The format `promptclf optimize` wrote before the artifact held a Task (version 1)."""
    path.write_text(
        json.dumps(
            {
                "instructions": "Label the headline.",
                "demos": ROWS,
                "labels": [{"name": n, "description": "", "aliases": []} for n in LABELS],
                "model": "local",
                "optimizer": "bootstrap",
                "metric": "accuracy",
                "dev_score": 0.75,
                "dspy_version": "3.0.0",
                "usage": {},
                "version": 1,
                "created": "2025-01-01T00:00:00Z",
            }
        )
    )
    return path


def test_an_old_artifact_loads_as_a_task_with_its_provenance(tmp_path):
    artifact = PromptArtifact.load(old_artifact(tmp_path / "old.json"))
    assert artifact.task.label_set().names == LABELS and artifact.task.template == "few_shot"
    assert artifact.instructions == "Label the headline." and artifact.demos == ROWS  # in their order
    assert (artifact.optimizer, artifact.dev_score, artifact.versions) == ("bootstrap", 0.75, {"dspy": "3.0.0"})
    again = PromptArtifact.load(artifact.save(tmp_path / "new.json"))
    assert again == artifact and json.loads((tmp_path / "new.json").read_text())["version"] == 2


def test_an_artifact_and_the_prompt_it_replaces_build_the_same_method(tmp_path):
    path = old_artifact(tmp_path / "old.json")
    chat = f"openai-compatible:m@{SERVER}"
    from_file = Classifier(LABELS, chat, prompt=str(path), system_in_user=False, cache=False)
    by_hand = Classifier(
        LABELS,
        chat,
        prompt="few_shot",
        instructions="Label the headline.",
        examples=ROWS,
        example_selection="all",
        system_in_user=False,
        cache=False,
    )
    assert from_file.method.identity == by_hand.method.identity


@pytest.mark.parametrize("extra", [dict(examples=ROWS), dict(instructions="Other."), dict(k=2)])
def test_examples_or_instructions_with_an_artifact_are_an_error_not_dropped(tmp_path, extra):
    path = old_artifact(tmp_path / "old.json")
    ((name, _),) = extra.items()
    with pytest.raises(ConfigError, match=f"{name}= given with prompt=.*holds its own instructions and demonstrations"):
        Classifier(LABELS, f"openai-compatible:m@{SERVER}", prompt=str(path), **extra)


def test_unknown_artifact_versions_are_refused(tmp_path):
    path = tmp_path / "future.json"
    path.write_text(json.dumps({"version": 9}))
    with pytest.raises(ConfigError, match="has version 9, this promptclf reads versions 1, 2"):
        PromptArtifact.load(path)


def test_an_option_has_one_default_whichever_backend_takes_it():
    """Whether an option counts as given is judged against its default; two backends must not disagree on it."""
    from dataclasses import MISSING, fields

    defaults: dict = {}
    for provider in REGISTRY.values():
        for f in fields(provider.options):
            value = f.default_factory() if f.default_factory is not MISSING else f.default
            defaults.setdefault(f.name, value)
            assert defaults[f.name] == value, f"{provider.name} gives {f.name} another default"
