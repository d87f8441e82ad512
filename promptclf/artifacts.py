"""An optimised prompt as a file: the instructions and demonstrations `optimize` found, the labels they were
found for, and where they came from (optimiser, metric, dev score, versions). `classify(prompt=path)` loads it."""

from __future__ import annotations

import json
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path

from .backends import ConfigError
from .labels import LabelSet

ARTIFACT_VERSION = 1


@dataclass
class PromptArtifact:
    """An optimised prompt: instruction text + demonstrations for the Jinja few-shot template."""

    instructions: str
    demos: list[dict]
    labels: list[dict]
    model: str
    optimizer: str
    metric: str
    dev_score: float
    dspy_version: str
    usage: dict = field(default_factory=dict)
    version: int = ARTIFACT_VERSION
    created: str = field(default_factory=lambda: time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()))

    def save(self, path: str | Path) -> Path:
        path = Path(path)
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(json.dumps(asdict(self), indent=2, ensure_ascii=False))
        return path

    @classmethod
    def load(cls, path: str | Path, labels: LabelSet | None = None) -> "PromptArtifact":
        path = Path(path)
        if not path.exists():
            raise FileNotFoundError(f"prompt artifact {str(path)!r} does not exist")
        data = json.loads(path.read_text())
        if data.get("version") != ARTIFACT_VERSION:
            raise ConfigError(f"prompt artifact {str(path)!r} has version {data.get('version')}, "
                              f"this promptclf reads version {ARTIFACT_VERSION}")
        artifact = cls(**data)
        saved = LabelSet.from_json(artifact.labels).names
        if labels is not None and saved != labels.names:
            raise ConfigError(f"prompt artifact {str(path)!r} was optimised for labels {saved}, not {labels.names}")
        return artifact
