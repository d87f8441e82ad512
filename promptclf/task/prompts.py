"""Jinja prompt templates (in `prompts/`), rendered through LangChain's ChatPromptTemplate."""

from __future__ import annotations

import html
import re
from dataclasses import dataclass, field
from importlib import resources
from pathlib import Path

from langchain_core.prompts import ChatPromptTemplate

from promptclf.core.errors import MissingFileError
from promptclf.core.hashing import fingerprint
from promptclf.core.labels import LabelSet

# Items may contain our own delimiters; defuse them so an item cannot close its tag and speak as another.
# A model reads `< /item>` and `&lt;/item&gt;` as the tag too: a tag's start may be written with whitespace
# and HTML entities (named, numeric, or the legacy `&lt` without its semicolon).
# A run of whitespace is one part, taken whole (a part ending before more whitespace is no part: backtracking
# cannot split a run into many).
_TAG_CHARACTER = r"&[a-zA-Z]{1,31};|&(?:lt|LT)|&#[0-9]{1,7};?|&#[xX][0-9a-fA-F]{1,6};?|\s+(?!\s)|[</]"
_TAG_PART = re.compile(_TAG_CHARACTER)
# From a `<` (as itself or an entity), at most 16 more parts before the name: the bound keeps a long run of
# `<`s or entities from costing quadratic time.
_TAG_NAME = re.compile(rf"((?:<|&lt;?|&#0*60;?|&#x0*3c;?)(?:{_TAG_CHARACTER}){{0,16}})(item|example)\b", re.I)


def defuse(text: str) -> str:
    return _TAG_NAME.sub(_defuse_tag, text)


def _defuse_tag(found: re.Match) -> str:
    """`<`, an optional `/` and whitespace before our tag name (each maybe an HTML entity) become `‹` or `‹/`;
    the characters before that `<` are kept, and anything else is left as it was."""
    before, name = found.group(1), found.group(2)
    closing = False
    for part in reversed(list(_TAG_PART.finditer(before))):
        character = html.unescape(part.group())
        if character == "<":
            return f"{before[: part.start()]}‹{'/' if closing else ''}{name}"
        if character == "/" and not closing:
            closing = True
        elif not character.isspace():
            break
    return found.group()


_PACKAGED_NAME = re.compile(r"\w+")


def is_packaged_name(name_or_path: str | Path) -> bool:
    """Whether a template is named as a packaged one is (`few_shot`): a bare word, which cannot lead out of
    the package's templates (a path with `..` or `/` joined there could)."""
    return isinstance(name_or_path, str) and _PACKAGED_NAME.fullmatch(name_or_path) is not None


def template_text(name_or_path: str | Path) -> str:
    """A packaged template by name (`zero_shot`, `few_shot`, `system`, `scoring`) or a path to a file."""
    path = Path(name_or_path)
    if path.suffix and path.exists():
        return path.read_text()
    resource = resources.files("promptclf.templates").joinpath(f"{name_or_path}.jinja")
    if not is_packaged_name(name_or_path) or not resource.is_file():
        raise MissingFileError(f"no prompt template {str(name_or_path)!r} (not a file, not a packaged template)")
    return resource.read_text()


@dataclass
class ChatPrompt:
    """A system + user prompt pair for batch labelling, with the variables shared by every batch."""

    labels: LabelSet
    user_template: str
    system_template: str
    variables: dict = field(default_factory=dict)

    @classmethod
    def build(
        cls,
        labels: LabelSet,
        template: str | Path | None = None,
        *,
        examples=(),
        negative_examples=(),
        instructions: str = "",
        system_template: str | Path = "system",
    ) -> ChatPrompt:
        if template is None:
            template = "few_shot" if examples or negative_examples else "zero_shot"
        variables = {
            "labels": labels.to_json(),
            "instructions": instructions,
            "examples": [{"text": defuse(e["text"]), "label": e["label"]} for e in examples],
            "negative_examples": [{"text": defuse(e["text"]), "label": e["label"]} for e in negative_examples],
        }
        return cls(labels, template_text(template), template_text(system_template), variables)

    @property
    def fingerprint(self) -> str:
        return fingerprint(self.system_template, self.user_template, self.variables)

    def chat_template(self, with_format_instructions: bool = False) -> ChatPromptTemplate:
        """The prompt as LangChain's ChatPromptTemplate (jinja2): the reference for `runnable`."""
        return ChatPromptTemplate.from_messages(self._templates(with_format_instructions), template_format="jinja2")

    def runnable(self, with_format_instructions: bool = False, system_in_user: bool = False):
        """variables -> ChatPromptValue, the same messages as `chat_template`, with the Jinja templates compiled
        once: ChatPromptTemplate compiles them on every call (~8 ms), which capped throughput at 16 requests
        in flight. `system_in_user`: one user message, the system text at its top, for chat templates that
        drop a system message (llama.cpp's gemma format; Gemma models have no system role)."""
        from jinja2.sandbox import SandboxedEnvironment
        from langchain_core.messages import HumanMessage, SystemMessage
        from langchain_core.prompt_values import ChatPromptValue
        from langchain_core.runnables import RunnableLambda

        env = SandboxedEnvironment()  # as LangChain's jinja2 formatter: templates are trusted, items are data
        (_, system), (_, human) = self._templates(with_format_instructions)
        system, human = env.from_string(system), env.from_string(human)

        def render(variables: dict) -> ChatPromptValue:
            if system_in_user:
                return ChatPromptValue(
                    messages=[HumanMessage(system.render(**variables).rstrip() + "\n\n" + human.render(**variables))]
                )
            return ChatPromptValue(
                messages=[SystemMessage(system.render(**variables)), HumanMessage(human.render(**variables))]
            )

        return RunnableLambda(render, name="ChatPrompt")

    def _templates(self, with_format_instructions: bool) -> list[tuple[str, str]]:
        # Format instructions go in as a variable: their JSON braces must not be read as template syntax.
        system = self.system_template + ("\n{{ format_instructions }}" if with_format_instructions else "")
        return [("system", system), ("human", self.user_template)]

    def variables_for(self, items: list[tuple[int, str]], examples=None) -> dict:
        """Variables for one batch of (id, text) items; `examples` overrides the shared ones (per-batch selection)."""
        variables = dict(self.variables)
        if examples is not None:
            variables["examples"] = [{"text": defuse(e["text"]), "label": e["label"]} for e in examples]
        variables["items"] = [{"index": i, "text": defuse(t)} for i, t in items]
        # An example that is one of the items would hand the model its answer: drop it from this batch.
        texts = {item["text"] for item in variables["items"]}
        variables["examples"] = [e for e in variables["examples"] if e["text"] not in texts]
        return variables

    def messages(self, items: list[tuple[int, str]], examples=None):
        return self.runnable().invoke(self.variables_for(items, examples)).to_messages()
