"""The labelling task as one piece of data: labels (with descriptions, aliases, positive and negative example
texts), instructions and the prompt template, loaded from and saved to JSON or YAML.

    labels:
      - name: Sports
        description: games, athletes, teams
        aliases: [sport]
        examples: ["Bayern wins the cup final"]
        negative_examples: ["Stocks rally after the rate cut"]
      - name: Business
    instructions: Label the headline by its main topic.

`Classifier(task, model=...)` takes one (or the path of its file) where it takes `labels`; `Task.of(...)` builds one
from the keyword form (labels, descriptions=, aliases=, examples=, ...) and keeps the same Classifier identity, so
answers cached under one form are found under the other.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from pathlib import Path

from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator

from promptclf.core.errors import ConfigError, MissingFileError
from promptclf.core.labels import Label, LabelSet
from promptclf.task.examples import check_examples

# The Classifier keywords a Task replaces; giving one of them with a Task is an error (see keyword_options).
TASK_KEYWORDS = ("descriptions", "aliases", "examples", "negative_examples", "instructions")
TASK_SUFFIXES = (".json", ".yaml", ".yml")


class TaskLabel(BaseModel):
    """One label: its name, what it means, other names a model may answer with, and example texts that are
    (examples) and are not (negative_examples) this label."""

    model_config = ConfigDict(extra="forbid")

    name: str
    description: str = ""
    aliases: list[str] = Field(default_factory=list)
    examples: list[str] = Field(default_factory=list)
    negative_examples: list[str] = Field(default_factory=list)


class Example(BaseModel):
    model_config = ConfigDict(extra="forbid")

    text: str
    label: str


class Task(BaseModel):
    """A labelling task. Examples may sit with their label (`labels[i].examples`) or, where their order
    matters (it is the order a prompt shows them in), in the task-wide `examples` list of {text, label};
    the prompt gets the task-wide ones first, then each label's in label order."""

    model_config = ConfigDict(extra="forbid")

    labels: list[TaskLabel]
    instructions: str = ""
    template: str | None = Field(
        default=None,
        description="a template name (zero_shot, few_shot, ...), a Jinja file, or an optimised prompt artifact (.json)",
    )
    multi_label: bool = False
    examples: list[Example] = Field(default_factory=list)
    negative_examples: list[Example] = Field(default_factory=list)

    @model_validator(mode="after")
    def _check(self) -> Task:
        """Label names, aliases and example labels are checked by LabelSet and check_examples, the same checks
        the keyword form gets; example labels given as aliases become the label's name."""
        labels = self.label_set()
        self.examples = [Example(**row) for row in check_examples(_dump(self.examples), labels)]
        self.negative_examples = [
            Example(**row) for row in check_examples(_dump(self.negative_examples), labels, "negative example")
        ]
        for label in self.labels:
            check_examples(
                [{"text": t, "label": label.name} for t in label.examples], labels, f"example of {label.name!r}"
            )
            check_examples(
                [{"text": t, "label": label.name} for t in label.negative_examples],
                labels,
                f"negative example of {label.name!r}",
            )
        return self

    # --- building one -------------------------------------------------------------------------------------

    @classmethod
    def of(
        cls,
        labels,
        descriptions: Mapping[str, str] | None = None,
        aliases: Mapping[str, Iterable[str]] | None = None,
        examples: Iterable[dict] | None = None,
        negative_examples: Iterable[dict] | None = None,
        instructions: str = "",
        template: str | Path | None = None,
        multi_label: bool = False,
    ) -> Task:
        """The Task that Classifier's keyword form describes: `labels` as LabelSet.of takes them (names, a
        comma-separated string, a {name: description} dict, a LabelSet), examples as [{"text", "label"}]."""
        if isinstance(labels, Task):
            return labels
        label_set = LabelSet.of(labels, descriptions, aliases)
        return cls(
            labels=[
                TaskLabel(name=lab.name, description=lab.description, aliases=list(lab.aliases))
                for lab in label_set.labels
            ],
            examples=check_examples(examples, label_set),
            negative_examples=check_examples(negative_examples, label_set, "negative example"),
            instructions=instructions,
            template=None if template is None else str(template),
            multi_label=multi_label,
        )

    @classmethod
    def coerce(cls, task: Task | str | Path) -> Task:
        return task if isinstance(task, Task) else cls.load(task)

    # --- files --------------------------------------------------------------------------------------------

    @classmethod
    def load(cls, path: str | Path) -> Task:
        """A task from a .json, .yaml or .yml file; a bad one raises ConfigError naming the file and the field."""
        path = Path(path).expanduser()
        if path.suffix not in TASK_SUFFIXES:
            raise ConfigError(f"{path}: a task file ends in .json, .yaml or .yml")
        if not path.exists():
            raise MissingFileError(f"task file {path} does not exist")
        data = _read(path)
        try:
            task = cls.model_validate(data)
        except ValidationError as exc:
            raise ConfigError(f"{path}: {_describe(exc)}") from None
        task.template = _template_beside(task.template, path)
        return task

    def save(self, path: str | Path) -> Path:
        """Write the task as JSON or YAML (by the file's suffix); fields at their defaults are left out."""
        path = Path(path).expanduser()
        data = self.model_dump(mode="json", exclude_defaults=True)
        if self.template is not None and Path(self.template).is_absolute():  # as a loaded task file's template is
            beside = Path(self.template).resolve()
            if beside.is_relative_to(path.parent.resolve()):
                data["template"] = beside.relative_to(path.parent.resolve()).as_posix()
        data["labels"] = [label.model_dump(mode="json", exclude_defaults=True) for label in self.labels]
        if path.suffix == ".json":
            import json

            text = json.dumps(data, indent=2, ensure_ascii=False) + "\n"
        elif path.suffix in (".yaml", ".yml"):
            import yaml

            text = yaml.safe_dump(data, sort_keys=False, allow_unicode=True)
        else:
            raise ConfigError(f"{path}: a task file ends in .json, .yaml or .yml")
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text, encoding="utf-8")
        return path

    # --- what Classifier reads ----------------------------------------------------------------------------

    def label_set(self) -> LabelSet:
        return LabelSet.of([Label(lab.name, lab.description, tuple(lab.aliases)) for lab in self.labels])

    def all_examples(self) -> list[dict]:
        return _dump(self.examples) + [{"text": t, "label": lab.name} for lab in self.labels for t in lab.examples]

    def all_negative_examples(self) -> list[dict]:
        return _dump(self.negative_examples) + [
            {"text": t, "label": lab.name} for lab in self.labels for t in lab.negative_examples
        ]

    def keyword_options(self, given: Mapping[str, object], prompt=None) -> dict:
        """Classifier's keyword form of this task. `given` holds the task keywords the caller also passed
        (descriptions=, aliases=, ...): any that is set is an error, since the task already says it."""
        duplicated = [name for name in TASK_KEYWORDS if given.get(name) not in (None, "")]
        if prompt is not None and self.template is not None:
            duplicated.append("prompt")
        if duplicated:
            raise ConfigError(
                f"{', '.join(f'{name}=' for name in duplicated)} given with a Task: the task "
                "already defines it; set it in the task instead"
            )
        return dict(
            labels=self.label_set(),
            examples=self.all_examples(),
            negative_examples=self.all_negative_examples(),
            instructions=self.instructions,
            prompt=self.template if self.template is not None else prompt,
            multi_label=self.multi_label,
        )


def is_task(labels) -> bool:
    """Whether Classifier's first argument is a Task, or the path of a task file, rather than labels."""
    if isinstance(labels, Task):
        return True
    if isinstance(labels, Path):
        return True
    return isinstance(labels, str) and "," not in labels and labels.strip().lower().endswith(TASK_SUFFIXES)


def _template_beside(template: str | None, task_file: Path) -> str | None:
    """A task file's template: a packaged template's name, or the path of a file in the task file's directory
    or below it (read relative to that directory). Any other file (an absolute path, `..`, a symlink leading
    out) is refused: a task file must not make promptclf read whatever the user can. A template the user names
    in code or with --prompt may be anywhere."""
    from promptclf.task.prompts import is_packaged_name

    if template is None or is_packaged_name(template):
        return template
    directory = task_file.parent.resolve()
    resolved = (directory / template).resolve()  # follows symlinks and `..`; an absolute template stays itself
    if not resolved.is_relative_to(directory):
        raise ConfigError(
            f"{task_file}: template {template!r} is outside the task file's directory {directory}: "
            "put it beside the task file, or name it yourself (--prompt, prompt=)"
        )
    return str(resolved)


def _dump(rows) -> list[dict]:
    return [row.model_dump() if isinstance(row, BaseModel) else row for row in rows]


def _read(path: Path):
    text = path.read_text(encoding="utf-8")
    try:
        if path.suffix == ".json":
            import json

            return json.loads(text)
        import yaml

        return yaml.safe_load(text)
    except ValueError as exc:  # json.JSONDecodeError
        raise ConfigError(f"{path}: not valid JSON: {exc}") from None
    except Exception as exc:  # yaml.YAMLError
        raise ConfigError(f"{path}: not valid YAML: {' '.join(str(exc).split())}") from None


def _describe(exc: ValidationError) -> str:
    """pydantic's errors on one line: where each is (labels.2.name) and what is wrong."""
    parts = []
    for error in exc.errors():
        where = ".".join(str(part) for part in error["loc"])
        message = error["msg"].removeprefix("Value error, ")
        parts.append(f"{where}: {message}" if where else message)
    return "; ".join(parts)
