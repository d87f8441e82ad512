"""The provider registry: for each backend, the model string that selects it, the options it takes (a
dataclass: their defaults, and the "auto" rules resolved in one place) and how it builds a labelling Method.

`Classifier` parses the model string here, checks every option it was given against the chosen provider (one
that does not apply is a ConfigError naming the providers that take it) and builds the method through it.
Adding a backend is one `register(Provider(...))` here: a prefix, an options dataclass and a build function.
"""

from __future__ import annotations

import os
import re
import sys
from collections.abc import Callable
from dataclasses import dataclass, field, fields, replace
from pathlib import Path
from typing import Any

from promptclf.core.credentials import scrub
from promptclf.core.errors import ConfigError, UnknownModelError
from promptclf.core.labels import LabelSet
from promptclf.core.methods import Method
from promptclf.core.model_spec import ModelSpec

# --- options ------------------------------------------------------------------------------------------


@dataclass
class Options:
    """What every backend gets: the seed, whether to show progress, and the unlabelled texts a method may
    self-train on (classify() passes the texts being labelled to every backend; only embed and offline use
    them)."""

    seed: int = 0
    progress: bool | None = None
    unlabeled: list[str] = field(default_factory=list)
    # A set of labels per item: chat models answer sets; label scoring and embed threshold their per-label scores
    # (promptclf.core.multilabel.Thresholded), built zero-shot: the examples choose the threshold; offline trains
    # a probability per label on them (methods/offline_multilabel.py).
    multi_label: bool = False
    # Multi-label: an item may get no label (else the thresholded methods give it its most probable one).
    allow_empty: bool = False

    def resolved(self, spec: ModelSpec, labels: LabelSet) -> Options:
        """These options with every "auto" decided for this model and label set."""
        return self


@dataclass
class PromptOptions(Options):
    """A prompt with demonstrations: chat models and label scoring."""

    examples: list[dict] = field(default_factory=list)
    example_selection: str = "auto"
    k: int | None = None
    prompt: str | Path | None = None
    instructions: str = ""

    def resolved(self, spec: ModelSpec, labels: LabelSet) -> PromptOptions:
        self = self.with_artifact(labels)
        if self.example_selection not in ("auto", "all", "per-class", "similar"):
            raise ValueError(f"example_selection={self.example_selection!r}: choose auto, all, per-class or similar")
        scoring = isinstance(self, ScoringOptions)
        # Local scoring with the nearest demonstrations: measured on AG News (1,000 items), 1 nearest 0.843 at
        # 11.4 items/s, 4 nearest 0.841 at 6.9 items/s; chat models get 4.
        k = self.k if self.k is not None else (1 if scoring else 4)
        selection = self.example_selection
        if selection == "auto":  # local scorers: nearest demos; chat: all, or k per class from a big pool
            selection = "similar" if scoring else ("all" if len(self.examples) <= k * len(labels) else "per-class")
        return replace(self, k=k, example_selection=selection)

    def with_artifact(self, labels: LabelSet) -> PromptOptions:
        """prompt=<artifact>.json: the optimised instructions and demonstrations, all shown, in its order.
        Examples, instructions or a selection given with it would change the prompt its dev score was
        measured for, so they are an error rather than dropped or merged."""
        from promptclf.task.artifacts import PromptArtifact, is_artifact

        if not is_artifact(self.prompt):
            return self

        artifact = PromptArtifact.load(self.prompt, labels)
        given = [
            name
            for name, unset in (
                ("examples", not self.examples),
                ("instructions", not self.instructions),
                ("example_selection", self.example_selection == "auto"),
                ("k", self.k is None),
            )
            if not unset
        ]
        if given:
            raise ConfigError(
                f"{', '.join(f'{name}=' for name in given)} given with prompt={str(self.prompt)!r}: "
                "an optimised prompt artifact holds its own instructions and demonstrations; "
                "drop them, or optimise again with these examples"
            )
        return replace(
            self,
            prompt="few_shot",
            instructions=artifact.instructions,
            examples=artifact.demos,
            example_selection="all",
        )

    def demonstrations(self, labels: LabelSet):
        """(fixed demonstrations, per-item selector or None) as example_selection says."""
        from promptclf.methods.similar_examples import SimilarExamples
        from promptclf.task.examples import sample_per_class

        if self.examples and self.example_selection == "similar":
            return [], SimilarExamples(self.examples, k=self.k)
        if self.examples and self.example_selection == "per-class":
            return sample_per_class(self.examples, labels, self.k, self.seed), None
        return self.examples, None


@dataclass
class ChatOptions(PromptOptions):
    """Chat models (LangChain): batched prompts, structured output, retries."""

    descriptions: dict | None = None
    negative_examples: list[dict] = field(default_factory=list)
    batch_size: int = 10
    concurrency: int = 4
    max_attempts: int = 6
    max_wait: float = 30.0
    max_reasks: int = 4  # an item is asked at most 1 + this many times (the run's re-ask budget bounds the cost)
    timeout: float = 60.0
    structured: str = "auto"
    system_in_user: bool | str = "auto"
    logprobs: bool = True  # False: no confidence, but llama-cpp-python answers far faster (README)
    llm: Any = None


@dataclass
class ScoringOptions(PromptOptions):
    """Label scoring (the likelihood of each label after the prompt)."""

    calibrate: str = "auto"
    demo_words: int | None = 12
    item_words: int | None = None
    local_batch_size: int = 16

    @property
    def demos(self) -> list[dict]:
        """The examples the prompt shows: none for a multi-label task, whose examples choose the threshold."""
        return [] if self.multi_label else self.examples

    def resolved(self, spec: ModelSpec, labels: LabelSet) -> ScoringOptions:
        options = super().resolved(spec, labels)
        if options.calibrate not in ("auto", "none", "content-free"):
            raise ValueError(f"calibrate={options.calibrate!r}: choose 'auto', 'none' or 'content-free'")
        if options.calibrate == "auto":  # measured: per-item demos gain nothing from it, at three forwards an item
            per_item = options.demos and options.example_selection == "similar"
            options = replace(options, calibrate="none" if per_item else "content-free")
        return options


@dataclass
class LocalOptions(ScoringOptions):
    """A local causal LM (the embedded Gemma, or a transformers directory) scoring labels on this machine."""

    threads: int | None = None
    quantize: str | None = "auto"
    max_length: int = 1024

    def resolved(self, spec: ModelSpec, labels: LabelSet) -> LocalOptions:
        options = super().resolved(spec, labels)
        if options.quantize == "auto":  # int8 only where it was measured to cost nothing (see local.py)
            nearest = options.demos and options.example_selection == "similar"
            options = replace(options, quantize="int8" if nearest else None)
        return options


@dataclass
class CompletionsOptions(ScoringOptions):
    """Label scoring by logprobs on an OpenAI-compatible completions endpoint."""

    timeout: float = 60.0
    max_attempts: int = 6


@dataclass
class EmbedOptions(Options):
    descriptions: dict | None = None
    examples: list[dict] = field(default_factory=list)


@dataclass
class OfflineOptions(Options):
    descriptions: dict | None = None
    examples: list[dict] = field(default_factory=list)
    offline: Any = None  # an OfflineConfig, or a dict of its options
    # Given here, they replace the OfflineConfig's: [{"text", "label"}] rows to choose on (never trained on),
    # and the seconds of training SetFit is cut to fit (offline_budget.py).
    validation: list[dict] = field(default_factory=list)
    time_budget: float | None = None

    def resolved(self, spec: ModelSpec, labels: LabelSet) -> OfflineOptions:
        from promptclf.methods.offline import OfflineConfig

        if self.multi_label:  # its own method and options (methods/offline_multilabel.py)
            from promptclf.methods.offline_multilabel import MultiLabelConfig

            if isinstance(self.offline, MultiLabelConfig):
                return self
            given = {"seed": self.seed, "allow_empty": self.allow_empty, **(self.offline or {})}
            if self.validation:
                given["validation"] = list(self.validation)
            return replace(self, offline=MultiLabelConfig.of(given))
        config = self.offline
        if not isinstance(config, OfflineConfig):
            config = OfflineConfig(**{"seed": self.seed, **(config or {})})
        if self.validation:
            config = replace(config, validation=list(self.validation))
        if self.time_budget is not None:
            config = replace(config, time_budget=self.time_budget)
        return replace(self, offline=config)


@dataclass
class FinetunedOptions(Options):
    """A model `promptclf finetune` trained: its labels and weights are fixed, so it takes no prompt options."""


# --- providers ----------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Provider:
    """One backend. `name` is the model-string prefix ("openai" in "openai:gpt-4o-mini"); `default` the model
    the bare prefix names ("local": the embedded Gemma), None where a name is required; `needs_url`: the form
    is <prefix>:<model>@<base-url>; `base_url_env`: a variable that sets the base URL otherwise; `gives_scores`:
    its answers carry a probability per label (Prediction.scores; the sklearn wrapper's predict_proba);
    `batch_dialect`: the form of its batch API ("openai", "together"; promptclf/workflows/batch_api.py), None
    where it has none."""

    name: str
    form: str
    options: type[Options]
    build: Callable[[ModelSpec, LabelSet, Options], Method]
    default: str | None = None
    needs_url: bool = False
    base_url_env: str | None = None
    gives_scores: bool = True
    batch_dialect: str | None = None


REGISTRY: dict[str, Provider] = {}


def register(provider: Provider) -> Provider:
    REGISTRY[provider.name] = provider
    return provider


def provider_of(spec: ModelSpec) -> Provider:
    return REGISTRY[spec.provider]


def parse_model(model: str | None, prompt: str | Path | None = None) -> ModelSpec:
    """Parse a model string such as "openai:gpt-4o-mini" or "openai-compatible:llama3@http://host:8000/v1".
    No model (None) is the one a prompt artifact (`prompt`, a .json file) was optimised for, since its dev score
    holds for that model alone; with no artifact, the offline default."""
    if model is None:
        model = _artifact_model(prompt) or "offline"
    found = REGISTRY.get(model) if isinstance(model, str) else None
    if found is not None and found.default is not None:
        return ModelSpec(found.name, found.default)
    if not isinstance(model, str) or ":" not in model:
        raise UnknownModelError(_unknown(model))
    prefix, _, name = model.partition(":")
    provider = REGISTRY.get(prefix)
    if provider is None or not name:
        raise UnknownModelError(_unknown(model))
    if provider.needs_url:
        found = re.match(r"(.+?)@(https?://.+)", name)  # the first "@http": a URL may hold user:pw@host
        if not found:
            raise UnknownModelError(f"model {scrub(model)!r}: expected {prefix}:<model>@<http(s)://base-url>")
        return ModelSpec(prefix, *found.groups())
    base_url = os.environ.get(provider.base_url_env) if provider.base_url_env else None
    return ModelSpec(prefix, name, base_url or None)


def _artifact_model(prompt) -> str | None:
    from promptclf.task.artifacts import PromptArtifact, is_artifact

    return PromptArtifact.load(prompt).model if is_artifact(prompt) else None


def _unknown(model) -> str:
    """Three lines: what was given, the accepted forms (by prefix), where the full table is."""
    prefixes = ", ".join(
        name if p.default is not None else f"{name}:<model>@<url>" if p.needs_url else f"{name}:<name>"
        for name, p in REGISTRY.items()
    )
    return (
        f"unknown model {scrub(str(model))[:80]!r}\n  accepted: {prefixes}\n"
        "  each form and its key: the model-string table in README.md, or docs/guides/api-models.md"
    )


# --- options given to Classifier ------------------------------------------------------------------------


def option_names() -> set[str]:
    return {f.name for p in REGISTRY.values() for f in fields(p.options)}


def option_default(name: str):
    for provider in REGISTRY.values():
        for f in fields(provider.options):
            if f.name == name:
                return f.default_factory() if callable(f.default_factory) else f.default
    raise KeyError(name)


def is_unset(name: str, value) -> bool:
    """Whether an option is at its default: given so (the CLI and the sklearn wrapper pass every option they
    have), it says nothing a backend could ignore. None and an empty list or dict count as unset."""
    if value is None or (isinstance(value, (list, tuple, dict, str)) and len(value) == 0):
        return option_default(name) in (None, "", [], {})
    try:
        return bool(value == option_default(name))
    except Exception:  # a value that cannot be compared (an array) is set
        return False


def takers(name: str) -> list[str]:
    return [p.name for p in REGISTRY.values() if name in {f.name for f in fields(p.options)}]


def check_options(spec: ModelSpec, given: dict) -> None:
    """Every option set (not at its default) must be one the model's provider takes: TypeError for a name no
    provider knows, ConfigError for one that does not apply to this model."""
    unknown = sorted(set(given) - option_names())
    if unknown:
        raise TypeError(f"Classifier got an unknown option {unknown[0]!r}")
    taken = {f.name for f in fields(provider_of(spec).options)}
    for name, value in given.items():
        if name not in taken and not is_unset(name, value):
            raise ConfigError(
                f"option {name} does not apply to model {spec.id}; it is taken by: {', '.join(takers(name))}"
            )


def options_for(spec: ModelSpec, labels: LabelSet, values: dict) -> Options:
    """The provider's options from `values` (those it does not take are left out), "auto" resolved."""
    cls = provider_of(spec).options
    taken = {f.name for f in fields(cls)}
    return cls(**{k: v for k, v in values.items() if k in taken}).resolved(spec, labels)


def generates(spec: ModelSpec) -> bool:
    """Whether the backend writes answers (a chat model, which DSPy can drive) rather than scoring labels."""
    return issubclass(provider_of(spec).options, ChatOptions)


def scores_labels(spec: ModelSpec) -> bool:
    return issubclass(provider_of(spec).options, ScoringOptions)


def build(spec: ModelSpec, labels: LabelSet, options: Options) -> Method:
    return provider_of(spec).build(spec, labels, options)


# --- how each backend builds its method -------------------------------------------------------------------


def _thresholded(build_single: Callable[[ModelSpec, LabelSet, Options], Method]):
    """A backend with per-label scores, made multi-label (promptclf.core.multilabel.Thresholded): the method is
    built without the examples (offline and embed would train on them, label scoring would show them) and the
    examples (their `labels` sets, or single `label`s) choose the threshold on its scores."""

    def build_method(spec: ModelSpec, labels: LabelSet, options: Options) -> Method:
        if not options.multi_label:
            return build_single(spec, labels, options)
        from promptclf.core.multilabel import Thresholded

        inner = build_single(spec, labels, replace(options, examples=[]))
        return Thresholded(inner, options.examples, keep_top=not options.allow_empty)

    return build_method


def _build_chat(spec: ModelSpec, labels: LabelSet, options: ChatOptions) -> Method:
    from promptclf.methods.chat import ChatLabeler
    from promptclf.providers.chat_models import chat_model, llm_fingerprint, remember_keys_of
    from promptclf.task.prompts import ChatPrompt

    if any("labels" in r for r in options.examples):
        raise ConfigError(
            f"{spec.id}: examples with a set of 'labels' choose the threshold of label scoring, embed "
            "and offline; a chat model's demonstrations take one 'label' each"
        )

    fixed, selector = options.demonstrations(labels)
    if options.llm is not None:
        remember_keys_of(options.llm)
    llm = options.llm or chat_model(spec, timeout=options.timeout)
    model_id = spec.id if options.llm is None else f"{spec.id}|llm={llm_fingerprint(llm)}"
    template = options.prompt or ("few_shot" if selector else None)  # demos chosen per batch need its loop
    multi = {"multi_label": True} if options.multi_label else {}  # the single-label prompt stays as it was
    prompt = ChatPrompt.build(
        labels,
        template,
        examples=fixed,
        negative_examples=options.negative_examples,
        instructions=options.instructions,
        **({"system_template": "system_multi"} if multi else {}),
    )
    return ChatLabeler(
        llm,
        labels,
        prompt,
        model_id=model_id,
        example_selector=selector,
        batch_size=options.batch_size,
        concurrency=options.concurrency,
        max_attempts=options.max_attempts,
        max_wait=options.max_wait,
        max_reasks=options.max_reasks,
        structured=options.structured,
        system_in_user=options.system_in_user,
        logprobs=options.logprobs,
        **multi,
    )


def _build_scoring(scorer: Callable[[ModelSpec, ScoringOptions], Any]):
    def build_method(spec: ModelSpec, labels: LabelSet, options: ScoringOptions) -> Method:
        from promptclf.methods.scoring import LabelScorer, ScoringPrompt

        fixed, selector = options.demonstrations(labels)
        template = options.prompt if options.prompt and str(options.prompt).endswith(".jinja") else None
        prompt = ScoringPrompt.build(
            template, instructions=options.instructions, demo_words=options.demo_words, item_words=options.item_words
        )
        return LabelScorer(
            scorer(spec, options),
            labels,
            prompt=prompt,
            examples=fixed,
            selector=selector,
            calibrate=options.calibrate,
            batch_size=options.local_batch_size,
        )

    return build_method


def _local_scorer(spec: ModelSpec, options: LocalOptions):
    from promptclf.methods.local import local_scorer

    return local_scorer(spec.name, max_length=options.max_length, threads=options.threads, quantize=options.quantize)


def _completions_scorer(spec: ModelSpec, options: CompletionsOptions):
    from promptclf.methods.completions import CompletionsScorer

    return CompletionsScorer(spec, timeout=options.timeout, max_attempts=options.max_attempts)


def _build_embed(spec: ModelSpec, labels: LabelSet, options: EmbedOptions) -> Method:
    from promptclf.methods.label_similarity import LabelSimilarity

    encoder = None
    if spec.name != "minilm":
        from promptclf.methods.embeddings import Encoder

        if not Path(spec.name).expanduser().is_dir():
            raise ConfigError(f"embed:{spec.name}: no such encoder directory")
        encoder = Encoder(spec.name)
    return LabelSimilarity(labels, encoder=encoder, unlabeled=options.unlabeled, examples=options.examples)


def _build_offline(spec: ModelSpec, labels: LabelSet, options: OfflineOptions) -> Method:
    from promptclf.methods.offline import OfflineClassifier

    progress = options.progress if options.progress is not None else sys.stderr.isatty()
    if options.multi_label:  # trained on the examples' label sets, a probability per label
        from promptclf.methods.offline_multilabel import OfflineMultiLabel

        return OfflineMultiLabel(labels, options.examples, options.offline, options.unlabeled, progress)
    return OfflineClassifier(labels, options.examples, options.offline, progress=progress, unlabeled=options.unlabeled)


def _build_finetuned(spec: ModelSpec, labels: LabelSet, options: FinetunedOptions) -> Method:
    from promptclf.core.multilabel import same_kind
    from promptclf.methods.finetune import load_finetuned

    return same_kind(load_finetuned(spec.name, labels), options.multi_label, spec.id)


register(
    Provider(
        "offline",
        "offline (default): the embedded LLM, embeddings and, with examples, SetFit, combined",
        OfflineOptions,
        _build_offline,
        default="default",
    )
)
register(
    Provider(
        "embed",
        "embed: embedding similarity to the labels (packaged MiniLM), or embed:/path/to/an/encoder",
        EmbedOptions,
        _thresholded(_build_embed),
        default="minilm",
    )
)
register(
    Provider(
        "local",
        "the embedded Gemma 3 270M, or local:/path/to/a/transformers/causal-lm",
        LocalOptions,
        _thresholded(_build_scoring(_local_scorer)),
        default="gemma3-270m",
    )
)
register(
    Provider(
        "together",
        "together:<model>, key in TOGETHER_API_KEY",
        ChatOptions,
        _build_chat,
        gives_scores=False,
        batch_dialect="together",
    )
)
register(
    Provider(
        "openai",
        "openai:<model>, key in OPENAI_API_KEY, base URL from OPENAI_BASE_URL if set",
        ChatOptions,
        _build_chat,
        base_url_env="OPENAI_BASE_URL",
        gives_scores=False,
        batch_dialect="openai",
    )
)
register(
    Provider(
        "openai-compatible",
        "openai-compatible:<model>@<base-url> (vLLM, Ollama, llama.cpp, ...), key in "
        "OPENAI_COMPATIBLE_API_KEY if the server needs one",
        ChatOptions,
        _build_chat,
        needs_url=True,
        gives_scores=False,
        batch_dialect="openai",  # where the server implements /v1/files and /v1/batches
    )
)
register(
    Provider(
        "completions",
        "completions:<model>@<base-url>: label scoring by logprobs on a completions "
        "endpoint, key in OPENAI_COMPATIBLE_API_KEY if the server needs one",
        CompletionsOptions,
        _thresholded(_build_scoring(_completions_scorer)),
        needs_url=True,
    )
)
register(Provider("finetuned", "finetuned:<dir> written by promptclf finetune", FinetunedOptions, _build_finetuned))
