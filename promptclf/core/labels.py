"""Label sets: names, descriptions, aliases, and mapping a model's free-text answer onto the set."""

from __future__ import annotations

import re
import unicodedata
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field

from promptclf.core.hashing import json_digest


class LabelError(ValueError):
    """A label (given by the caller or answered by a model) is not in the label set."""


FORMS = (
    "labels takes a list of names, a dict of name -> description, one string of names separated by commas, "
    "a LabelSet, or a Task or the path of its .json/.yaml file"
)


# What a model wraps an answer in ("**Sports**.", '"World"'); "+", "#" and "-" can be part of a label.
_WRAPPING = "\"'`.:;,!?()[]{}<>*_ "
# Separators between two words ("Sci/Tech", "Sci-Tech", "Sci / Tech") match each other.
_SEPARATOR = re.compile(r"(?<=\w)\s*[\s/\\&_,.·-]\s*(?=\w)")


def normalize(text: str) -> str:
    """Case- and whitespace-insensitive form of any script (NFKC + casefold), without the quotes or
    markdown an answer may be wrapped in. Never empty unless the text is: "???" stays "???"."""
    folded = " ".join(unicodedata.normalize("NFKC", str(text)).casefold().split())
    return folded.strip(_WRAPPING) or folded


def loosen(text: str) -> str:
    """normalize(), with the separators between words made one space: "Sci-Tech" -> "sci tech"."""
    return _SEPARATOR.sub(" ", normalize(text))


@dataclass(frozen=True)
class Label:
    name: str
    description: str = ""
    aliases: tuple[str, ...] = ()


@dataclass(frozen=True)
class LabelSet:
    """An ordered set of labels. Build one with `LabelSet.of(...)`."""

    labels: tuple[Label, ...]
    _lookup: Mapping[str, str] = field(init=False, repr=False, compare=False, hash=False)
    _loose: Mapping[str, str | None] = field(init=False, repr=False, compare=False, hash=False)

    def __post_init__(self):
        if not self.labels:
            raise LabelError("the label set is empty: give at least two labels")
        names = [label.name for label in self.labels]
        if len(set(names)) != len(names):
            dupes = sorted({n for n in names if names.count(n) > 1})
            raise LabelError(f"duplicate labels in the label set: {dupes}")
        lookup: dict[str, str] = {}
        loose: dict[str, str | None] = {}
        for label in self.labels:
            if not str(label.name).strip():
                raise LabelError("a label name is empty")
            for form in (label.name, *label.aliases):
                key = normalize(form)
                if not key:
                    raise LabelError(f"an alias of {label.name!r} is empty")
                if lookup.get(key, label.name) != label.name:
                    raise LabelError(f"alias {form!r} matches both {lookup[key]!r} and {label.name!r}")
                lookup[key] = label.name
                # Two labels that differ only in their separators keep their exact forms, not the loose one.
                loose[loosen(form)] = label.name if loose.get(loosen(form), label.name) == label.name else None
        object.__setattr__(self, "_lookup", lookup)
        object.__setattr__(self, "_loose", loose)

    @classmethod
    def of(
        cls,
        labels: LabelSet | Iterable[str | Label] | Mapping[str, str],
        descriptions: Mapping[str, str] | None = None,
        aliases: Mapping[str, Iterable[str]] | None = None,
    ) -> LabelSet:
        """Accepts a LabelSet, a list (or tuple) of names or Labels, one string of names separated by commas, or a
        {name: description} dict; anything else is a LabelError naming the forms."""
        if isinstance(labels, LabelSet) and not descriptions and not aliases:
            return labels
        if isinstance(labels, str):
            labels = [part.strip() for part in labels.split(",") if part.strip()]
        if isinstance(labels, Mapping):
            descriptions = {**labels, **(descriptions or {})}
            labels = list(labels)
        if isinstance(labels, (set, frozenset)):
            raise LabelError(f"labels given as a set have no order: give a list ({sorted(map(str, labels))})")
        if not isinstance(labels, Iterable):
            raise LabelError(f"labels is {type(labels).__name__} ({labels!r:.40}); {FORMS}")
        labels = list(labels)
        bad = next((item for item in labels if not isinstance(item, (str, Label))), None)
        if bad is not None:
            raise LabelError(f"label {bad!r:.40} is {type(bad).__name__}, not a name; {FORMS}")
        descriptions, aliases = descriptions or {}, aliases or {}
        built = []
        for item in labels:
            base = item if isinstance(item, Label) else Label(item)
            built.append(
                Label(
                    base.name,
                    descriptions.get(base.name, base.description),
                    tuple(base.aliases) + tuple(aliases.get(base.name, ())),
                )
            )
        if len(built) < 2:
            raise LabelError(f"a label set needs at least two labels, got {[b.name for b in built]}")
        return cls(tuple(built))

    @property
    def names(self) -> list[str]:
        return [label.name for label in self.labels]

    def __len__(self) -> int:
        return len(self.labels)

    def __iter__(self):
        return iter(self.names)

    def __contains__(self, name: object) -> bool:
        return name in self.names

    def index(self, name: str) -> int:
        return self.names.index(name)

    def resolve(self, answer: object) -> str | None:
        """Map a model's answer onto a label name via normalisation and aliases; None if it is not one."""
        if answer is None or not normalize(str(answer)):
            return None
        return self._lookup.get(normalize(str(answer))) or self._loose.get(loosen(str(answer)))

    def check(self, label: object, where: str = "") -> str:
        """Resolve a caller-given label (training data, few-shot examples) or raise naming it."""
        resolved = self.resolve(label)
        if resolved is None:
            place = f" ({where})" if where else ""
            raise LabelError(f"label {label!r}{place} is not in the label set {self.names}")
        return resolved

    def fingerprint(self) -> str:
        return json_digest([[lab.name, lab.description, list(lab.aliases)] for lab in self.labels], 16)

    def to_json(self) -> list[dict]:
        return [{"name": lab.name, "description": lab.description, "aliases": list(lab.aliases)} for lab in self.labels]

    @classmethod
    def from_json(cls, data: list[dict]) -> LabelSet:
        return cls(tuple(Label(d["name"], d.get("description", ""), tuple(d.get("aliases", ()))) for d in data))
