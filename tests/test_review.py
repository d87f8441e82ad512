"""Review in Label Studio (`promptclf review export` / `import`): the tasks and config written, checked against
Label Studio's formats, and its JSON export read back as gold rows. The export fixture
(tests/data/label_studio_export.json) was written by a real Label Studio (see test_real_label_studio_round_trip,
which produces it again)."""

from __future__ import annotations

import json
import os
import shutil
import socket
import subprocess
import time
import xml.etree.ElementTree as ET
from pathlib import Path

import pandas as pd
import pytest

from promptclf.cli import main

from .conftest import DATA, LABELS

EXPORT = DATA / "label_studio_export.json"
LABELS_ARG = ",".join(LABELS)


def classify_output(tmp_path, accepted=None, name="out.csv") -> Path:
    """A `promptclf classify` output of five rows: one failed, the others answered with a confidence."""
    frame = pd.DataFrame(
        {
            "id": [10, 11, 12, 13, 14],
            "text": ["oil prices rise", "a late goal", "new phone chip", "talks in Geneva", "market falls"],
            "predicted_label": ["Business", "Sports", "Sci/Tech", None, "Business"],
            "confidence": [0.97, 0.55, 0.81, None, 0.42],
            "source": ["embedding", "embedding", "setfit", "failed", "embedding"],
            "error": [None, None, None, "timeout after 6 attempts", None],
        }
    )
    if accepted is not None:
        frame["accepted"] = accepted
    path = tmp_path / name
    frame.to_csv(path, index=False)
    return path


def export(tmp_path, source, *options) -> tuple[list[dict], ET.Element]:
    tasks = tmp_path / "tasks.json"
    assert main(["review", "export", "--input", str(source), "--output", str(tasks), *options]) == 0
    return json.loads(tasks.read_text()), ET.parse(tmp_path / "tasks.config.xml").getroot()


def test_export_writes_the_rows_not_accepted_with_the_answer_and_score_prefilled(tmp_path, capsys):
    source = classify_output(tmp_path, accepted=[True, False, True, False, False])
    tasks, config = export(tmp_path, source, "--labels", LABELS_ARG)
    assert [t["data"] for t in tasks] == [
        {"text": "a late goal", "row": 2},
        {"text": "talks in Geneva", "row": 4},
        {"text": "market falls", "row": 5},
    ]
    assert tasks[0]["predictions"] == [
        {
            "model_version": "embedding",
            "score": 0.55,
            "result": [{"from_name": "label", "to_name": "text", "type": "choices", "value": {"choices": ["Sports"]}}],
        }
    ]
    assert "predictions" not in tasks[1]  # it could not be labelled: nothing to pre-fill
    assert "3 of 5 rows (not accepted)" in capsys.readouterr().err
    # The config names what the tasks use: $text, a Choices tag "label" over the text, every label a choice.
    text, choices = config.find("Text"), config.find("Choices")
    assert (text.get("name"), text.get("value")) == ("text", "$text")
    assert (choices.get("name"), choices.get("toName"), choices.get("choice")) == ("label", "text", "single")
    assert [c.get("value") for c in choices.findall("Choice")] == LABELS


def test_export_takes_the_rows_below_a_confidence_or_every_row(tmp_path, capsys):
    source = classify_output(tmp_path, accepted=[True, True, True, True, True])
    tasks, _ = export(tmp_path, source, "--labels", LABELS_ARG, "--below", "0.8")
    assert [t["data"]["row"] for t in tasks] == [2, 4, 5]  # 0.55, no confidence, 0.42: --below wins
    tasks, _ = export(tmp_path, classify_output(tmp_path), "--labels", LABELS_ARG, "--model-version", "v1")
    assert [t["data"]["row"] for t in tasks] == [1, 2, 3, 4, 5]
    assert {p["model_version"] for t in tasks for p in t.get("predictions", [])} == {"v1"}
    assert "every row (the file has no `accepted` column" in capsys.readouterr().err


@pytest.mark.parametrize("suffix", [".parquet", ".jsonl"])
def test_export_reads_classify_outputs_in_every_format(tmp_path, suffix):
    """classify writes nullable columns (promptclf.cli.with_predictions): missing values come back as NA or null."""
    from promptclf.cli import with_predictions
    from promptclf.core.data import write_table
    from promptclf.core.methods import Prediction

    frame = pd.DataFrame({"text": ["oil prices rise", "a late goal", "talks in Geneva"]})
    predictions = [Prediction("Business", 0.97, "embedding"), Prediction("Sports", None, "chat"), None]
    output = with_predictions(frame, predictions)
    output["accepted"] = pd.array([True, False, None], dtype="boolean")
    source = write_table(output, tmp_path / f"out{suffix}")
    tasks, _ = export(tmp_path, source, "--labels", LABELS_ARG)
    assert [t["data"]["row"] for t in tasks] == [2, 3]
    assert tasks[0]["predictions"][0]["result"][0]["value"] == {"choices": ["Sports"]}
    assert "score" not in tasks[0]["predictions"][0]  # no confidence: no score
    assert "predictions" not in tasks[1]


def test_multi_label_tasks_take_several_choices(tmp_path):
    frame = pd.DataFrame(
        {"text": ["so happy and scared"], "predicted_label": ["fear;joy"], "confidence": [0.6], "accepted": [False]}
    )
    frame.to_csv(tmp_path / "out.csv", index=False)
    tasks, config = export(tmp_path, tmp_path / "out.csv", "--labels", "joy,fear,anger", "--multi-label")
    assert tasks[0]["predictions"][0]["result"][0]["value"] == {"choices": ["fear", "joy"]}
    assert config.find("Choices").get("choice") == "multiple"


def test_label_names_are_escaped_in_the_config(tmp_path):
    from promptclf.workflows.review import label_config

    root = ET.fromstring(label_config(["Q&A", 'say "no"', "<other>"]))
    assert [c.get("value") for c in root.iter("Choice")] == ["Q&A", 'say "no"', "<other>"]


@pytest.mark.parametrize(
    "frame, options, message",
    [
        (pd.DataFrame({"text": ["a"], "confidence": [0.5]}), ["--labels", LABELS_ARG], "no column 'predicted_label'"),
        (
            pd.DataFrame({"text": ["a"], "predicted_label": ["Weather"], "confidence": [0.5]}),
            ["--labels", LABELS_ARG],
            "'Weather' (predicted_label of row 1)",
        ),
        (
            pd.DataFrame({"text": ["a"], "predicted_label": ["World"], "confidence": [0.5], "accepted": ["maybe"]}),
            ["--labels", LABELS_ARG],
            "row 1: `accepted` is 'maybe'",
        ),
        (pd.DataFrame({"text": ["a"], "predicted_label": ["World"], "confidence": [0.5]}), [], "--labels or --task"),
    ],
)
def test_export_refuses_what_it_cannot_write_naming_it(tmp_path, capsys, frame, options, message):
    frame.to_csv(tmp_path / "out.csv", index=False)
    argv = ["review", "export", "--input", str(tmp_path / "out.csv"), "--output", str(tmp_path / "t.json")]
    assert main([*argv, *options]) == 2
    assert message in capsys.readouterr().err
    assert not (tmp_path / "t.json").exists()


# --- import: Label Studio's JSON export ----------------------------------------------------------------------


def test_import_reads_label_studios_export_as_gold_rows(tmp_path, capsys):
    """The fixture, as Label Studio wrote it: task 1 annotated twice (Business, then World: the latest wins),
    task 2 annotated once, task 3 skipped (a cancelled annotation), task 4 not annotated."""
    gold = tmp_path / "gold.csv"
    assert main(["review", "import", str(EXPORT), "--output", str(gold), "--labels", LABELS_ARG]) == 0
    rows = pd.read_csv(gold)
    tasks = {t["id"]: t for t in json.loads(EXPORT.read_text())}
    first, second = sorted(tasks)[:2]
    assert list(rows.columns) == ["text", "label"]
    assert rows.to_dict("records") == [
        {"text": tasks[first]["data"]["text"], "label": "World"},
        {"text": tasks[second]["data"]["text"], "label": "Sports"},
    ]
    err = capsys.readouterr().err
    assert "2 gold rows from 4 tasks; 2 tasks without an annotation left out; 1 skipped annotations ignored" in err
    assert f"1 tasks with several annotations, 1 disagreeing (tasks {first}): the latest annotation taken" in err


def test_import_can_leave_out_the_tasks_whose_annotators_disagree(tmp_path):
    gold = tmp_path / "gold.jsonl"
    argv = ["review", "import", str(EXPORT), "--output", str(gold), "--conflicts", "skip"]
    assert main(argv) == 0
    assert pd.read_json(gold, lines=True)["label"].tolist() == ["Sports"]


def test_the_latest_annotation_is_the_latest_updated_whatever_its_place_in_the_list():
    from promptclf.workflows.review import gold_from_tasks

    tasks = json.loads(EXPORT.read_text())
    several = next(t for t in tasks if len(t["annotations"]) > 1)
    several["annotations"].reverse()
    assert gold_from_tasks([several]).rows[0]["label"] == "World"


def test_gold_rows_are_examples_a_classifier_reads(tmp_path):
    from promptclf.core.data import rows_from_file
    from promptclf.core.labels import LabelSet
    from promptclf.task.examples import check_examples

    gold = tmp_path / "gold.csv"
    assert main(["review", "import", str(EXPORT), "--output", str(gold)]) == 0
    examples = check_examples(rows_from_file(gold, "text", "label"), LabelSet.of(LABELS))  # what --examples does
    assert [r["label"] for r in examples] == ["World", "Sports"]


@pytest.mark.parametrize(
    "content, message",
    [
        ('[{"text": "a", "label": "World"}]', "not Label Studio's JSON export"),
        ("text,label\na,World\n", "is not JSON"),
        (
            '[{"id": 7, "data": {"text": "a"}, "annotations": [{"result": [{"type": "choices", "from_name": "label",'
            ' "value": {"choices": ["World", "Sports"]}}]}]}]',
            "task 7: the annotation chose ['World', 'Sports']",
        ),
        (
            '[{"id": 8, "data": {"body": "a"}, "annotations": [{"result": [{"type": "choices", "from_name": "label",'
            ' "value": {"choices": ["World"]}}]}]}]',
            "task 8: its data has no 'text' (it has ['body'])",
        ),
    ],
)
def test_import_refuses_what_is_not_a_single_label_export_naming_it(tmp_path, capsys, content, message):
    path = tmp_path / "export.json"
    path.write_text(content)
    assert main(["review", "import", str(path), "--output", str(tmp_path / "gold.csv")]) == 2
    assert message in capsys.readouterr().err
    assert not (tmp_path / "gold.csv").exists()


# --- a real Label Studio (pytest -m labelstudio) --------------------------------------------------------------

LS_TOKEN = "promptclf-test-token-0123456789"


def label_studio_binary() -> str | None:
    """LABEL_STUDIO_BIN, else label-studio on PATH (it is heavy: install it in a virtual environment of its own,
    python -m venv /tmp/lsvenv && /tmp/lsvenv/bin/pip install label-studio "sentry-sdk<3" (Label Studio 1.23.2 stops
    at start with sentry-sdk 3.0: "Unknown option 'send_default_pii'"), then LABEL_STUDIO_BIN=/tmp/lsvenv/bin/
    label-studio)."""
    return os.environ.get("LABEL_STUDIO_BIN") or shutil.which("label-studio")


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class LabelStudioAPI:
    def __init__(self, base: str, token: str):
        self.base, self.token = base, token

    def call(self, method: str, path: str, body=None):
        import urllib.request

        request = urllib.request.Request(
            f"{self.base}{path}",
            data=None if body is None else json.dumps(body).encode(),
            method=method,
            headers={"Authorization": f"Token {self.token}", "Content-Type": "application/json"},
        )
        with urllib.request.urlopen(request, timeout=120) as answer:
            return json.loads(answer.read() or b"null")

    def wait_until_up(self, process, seconds: float) -> None:
        import urllib.request

        deadline = time.monotonic() + seconds
        while time.monotonic() < deadline:
            if process.poll() is not None:
                raise RuntimeError(f"label-studio exited with {process.returncode}")
            try:
                with urllib.request.urlopen(f"{self.base}/health", timeout=5) as answer:
                    if json.loads(answer.read()).get("status") == "UP":
                        return
            except OSError:
                pass
            time.sleep(2)
        raise RuntimeError(f"label-studio did not answer /health within {seconds} s")


@pytest.fixture(scope="module")
def label_studio(tmp_path_factory):
    """A Label Studio of its own: a temporary data directory, a user and a legacy API token from the environment."""
    binary = label_studio_binary()
    if not binary:
        pytest.skip("Label Studio is not installed (set LABEL_STUDIO_BIN, or put label-studio on PATH)")
    data = tmp_path_factory.mktemp("label-studio")
    port = free_port()
    env = {
        **os.environ,
        "LABEL_STUDIO_BASE_DATA_DIR": str(data),
        "LABEL_STUDIO_USERNAME": "reviewer@example.com",
        "LABEL_STUDIO_PASSWORD": "promptclf-test",
        "LABEL_STUDIO_USER_TOKEN": LS_TOKEN,
        "LABEL_STUDIO_ENABLE_LEGACY_API_TOKEN": "true",  # the user token above is a legacy token
        "LABEL_STUDIO_DISABLE_SIGNUP_WITHOUT_LINK": "true",
    }
    log = open(data / "label-studio.log", "w")
    process = subprocess.Popen(
        [binary, "start", "--no-browser", "--internal-host", "127.0.0.1", "--port", str(port)],
        env=env,
        stdout=log,
        stderr=subprocess.STDOUT,
        start_new_session=True,
    )
    api = LabelStudioAPI(f"http://127.0.0.1:{port}", LS_TOKEN)
    try:
        api.wait_until_up(process, float(os.environ.get("LABEL_STUDIO_START_S", "900")))  # migrations on a first start
        yield api
    finally:
        process.terminate()
        try:
            process.wait(30)
        except subprocess.TimeoutExpired:
            process.kill()
        log.close()


def choices(label: str) -> list[dict]:
    return [{"from_name": "label", "to_name": "text", "type": "choices", "value": {"choices": [label]}}]


@pytest.mark.labelstudio
def test_real_label_studio_round_trip(tmp_path, label_studio, capsys):
    """Export promptclf's tasks, create a project with its config, import the tasks through the API, annotate as
    the fixture says (task 1 twice, task 2 once, task 3 skipped, task 4 left), export as JSON and import back.
    With LABEL_STUDIO_EXPORT_TO set, the export is also written there: tests/data/label_studio_export.json is one."""
    source = classify_output(tmp_path, accepted=[False, False, False, True, False])
    tasks_file = tmp_path / "tasks.json"
    argv = ["review", "export", "--input", str(source), "--output", str(tasks_file), "--labels", LABELS_ARG]
    assert main(argv) == 0
    config = (tmp_path / "tasks.config.xml").read_text()
    project = label_studio.call("POST", "/api/projects/", {"title": "promptclf review", "label_config": config})
    imported = label_studio.call("POST", f"/api/projects/{project['id']}/import", json.loads(tasks_file.read_text()))
    assert imported["task_count"] == 4 and imported["prediction_count"] == 4
    tasks = sorted(
        label_studio.call("GET", f"/api/tasks/?project={project['id']}&fields=all")["tasks"], key=lambda t: t["id"]
    )
    assert [t["data"]["row"] for t in tasks] == [1, 2, 3, 5]
    first, second, third = (t["id"] for t in tasks[:3])
    label_studio.call("POST", f"/api/tasks/{first}/annotations/", {"result": choices("Business")})
    time.sleep(1.1)  # the second annotation is the later one
    label_studio.call("POST", f"/api/tasks/{first}/annotations/", {"result": choices("World")})
    label_studio.call("POST", f"/api/tasks/{second}/annotations/", {"result": choices("Sports")})
    label_studio.call("POST", f"/api/tasks/{third}/annotations/", {"result": [], "was_cancelled": True})
    exported = label_studio.call("GET", f"/api/projects/{project['id']}/export?exportType=JSON&download_all_tasks=true")
    export_file = tmp_path / "export.json"
    export_file.write_text(json.dumps(exported, indent=2))
    if os.environ.get("LABEL_STUDIO_EXPORT_TO"):
        Path(os.environ["LABEL_STUDIO_EXPORT_TO"]).write_text(json.dumps(exported, indent=2) + "\n")
    # What Label Studio kept of the prediction is what promptclf wrote (its export lists predictions by id).
    (prediction,) = label_studio.call("GET", f"/api/predictions/?task={second}")
    assert prediction["result"][0]["value"] == {"choices": ["Sports"]}
    assert prediction["score"] == pytest.approx(0.55) and prediction["model_version"] == "embedding"
    gold = tmp_path / "gold.csv"
    capsys.readouterr()
    assert main(["review", "import", str(export_file), "--output", str(gold), "--labels", LABELS_ARG]) == 0
    assert pd.read_csv(gold).to_dict("records") == [
        {"text": "oil prices rise", "label": "World"},
        {"text": "a late goal", "label": "Sports"},
    ]
    assert "2 gold rows from 4 tasks; 2 tasks without an annotation left out" in capsys.readouterr().err


@pytest.mark.labelstudio
def test_real_label_studio_takes_multi_label_tasks(tmp_path, label_studio):
    """A multi-label config (choice="multiple") and tasks whose prediction chooses two labels: Label Studio takes
    both, and an annotation choosing two comes back as both, joined by ';'."""
    frame = pd.DataFrame({"text": ["so happy and scared"], "predicted_label": ["fear;joy"], "confidence": [0.6]})
    frame.to_csv(tmp_path / "out.csv", index=False)
    tasks_file = tmp_path / "tasks.json"
    argv = ["review", "export", "--input", str(tmp_path / "out.csv"), "--output", str(tasks_file)]
    assert main([*argv, "--labels", "joy,fear,anger", "--multi-label"]) == 0
    config = (tmp_path / "tasks.config.xml").read_text()
    project = label_studio.call("POST", "/api/projects/", {"title": "multi-label", "label_config": config})
    imported = label_studio.call("POST", f"/api/projects/{project['id']}/import", json.loads(tasks_file.read_text()))
    assert imported["task_count"] == 1 and imported["prediction_count"] == 1
    (task,) = label_studio.call("GET", f"/api/tasks/?project={project['id']}")["tasks"]
    (prediction,) = label_studio.call("GET", f"/api/predictions/?task={task['id']}")
    assert prediction["result"][0]["value"] == {"choices": ["fear", "joy"]}
    result = [{"from_name": "label", "to_name": "text", "type": "choices", "value": {"choices": ["joy", "anger"]}}]
    label_studio.call("POST", f"/api/tasks/{task['id']}/annotations/", {"result": result})
    exported = label_studio.call("GET", f"/api/projects/{project['id']}/export?exportType=JSON")
    (tmp_path / "export.json").write_text(json.dumps(exported))
    gold = tmp_path / "gold.csv"
    argv = ["review", "import", str(tmp_path / "export.json"), "--output", str(gold)]
    assert main([*argv, "--labels", "joy,fear,anger", "--multi-label"]) == 0
    assert pd.read_csv(gold)["label"].tolist() == ["joy;anger"]
