"""An optimised prompt as a file: the Task `optimize` found (labels, instructions, demonstrations in their
order, template few_shot) and where it came from (model, optimiser, metric, dev score, library versions, usage).
`classify(prompt=path)` loads it. Files written before the Task (version 1: instructions, demos and labels at
the top level) still load."""

from __future__ import annotations

import json
import time
from dataclasses import dataclass, field
from pathlib import Path

from promptclf.core.errors import ConfigError, MissingFileError
from promptclf.core.labels import LabelSet
from promptclf.task.definition import Task, TaskLabel

ARTIFACT_VERSION = 2
READS = (1, 2)


def is_artifact(prompt) -> bool:
    """Whether a `prompt=` option names an artifact (a .json file) rather than a template or a template's name."""
    return prompt is not None and str(prompt).endswith(".json")


@dataclass
class PromptArtifact:
    """An optimised prompt: a Task (instructions + demonstrations for the few-shot template) plus provenance."""

    task: Task
    model: str
    optimizer: str
    metric: str
    dev_score: float
    versions: dict = field(default_factory=dict)  # {"promptclf": ..., "dspy": ...}
    usage: dict = field(default_factory=dict)
    created: str = field(default_factory=lambda: time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()))

    @classmethod
    def of(cls, instructions: str, demos: list[dict], labels: LabelSet, **provenance) -> PromptArtifact:
        task = Task(
            labels=[
                TaskLabel(name=lab.name, description=lab.description, aliases=list(lab.aliases))
                for lab in labels.labels
            ],
            instructions=instructions,
            template="few_shot",
            examples=demos,
        )
        return cls(task=task, **provenance)

    @property
    def instructions(self) -> str:
        return self.task.instructions

    @property
    def demos(self) -> list[dict]:
        """The demonstrations, in the order the prompt shows them."""
        return self.task.all_examples()

    @property
    def labels(self) -> list[dict]:
        return self.task.label_set().to_json()

    def save(self, path: str | Path) -> Path:
        path = Path(path)
        path.parent.mkdir(parents=True, exist_ok=True)
        data = {
            "version": ARTIFACT_VERSION,
            "task": self.task.model_dump(mode="json"),
            "model": self.model,
            "optimizer": self.optimizer,
            "metric": self.metric,
            "dev_score": self.dev_score,
            "versions": self.versions,
            "usage": self.usage,
            "created": self.created,
        }
        path.write_text(json.dumps(data, indent=2, ensure_ascii=False))
        return path

    @classmethod
    def load(cls, path: str | Path, labels: LabelSet | None = None) -> PromptArtifact:
        path = Path(path)
        if not path.exists():
            raise MissingFileError(f"prompt artifact {str(path)!r} does not exist")
        data = json.loads(path.read_text())
        if data.get("version") not in READS:
            raise ConfigError(
                f"prompt artifact {str(path)!r} has version {data.get('version')}, "
                f"this promptclf reads versions {', '.join(map(str, READS))}"
            )
        artifact = cls._from_v1(data) if data["version"] == 1 else cls._from_v2(data)
        saved = artifact.task.label_set().names
        if labels is not None and saved != labels.names:
            raise ConfigError(f"prompt artifact {str(path)!r} was optimised for labels {saved}, not {labels.names}")
        return artifact

    @classmethod
    def _from_v2(cls, data: dict) -> PromptArtifact:
        provenance = {
            k: data[k]
            for k in ("model", "optimizer", "metric", "dev_score", "versions", "usage", "created")
            if k in data
        }
        return cls(task=Task.model_validate(data["task"]), **provenance)

    @classmethod
    def _from_v1(cls, data: dict) -> PromptArtifact:
        """Version 1 kept the instructions, demos and labels at the top level, and only dspy's version."""
        return cls.of(
            data["instructions"],
            data["demos"],
            LabelSet.from_json(data["labels"]),
            model=data["model"],
            optimizer=data["optimizer"],
            metric=data["metric"],
            dev_score=data["dev_score"],
            versions={"dspy": data.get("dspy_version")},
            usage=data.get("usage", {}),
            created=data.get("created", ""),
        )
