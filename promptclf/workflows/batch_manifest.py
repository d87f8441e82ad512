"""A batch manifest and its requests file, read as untrusted input: whoever can write them must not be able to
steer a key, a write or a cache key. Every field has a strict type, unknown fields are refused, and an error
names the file and the field. A key goes to the manifest's host only where the user named that host for it."""

from __future__ import annotations

import hmac
import os
from pathlib import Path
from typing import Annotated, Literal

from pydantic import BaseModel, ConfigDict, Field, StringConstraints, ValidationError, model_validator

from promptclf.core.credentials import is_openai, key_variable, redact_url
from promptclf.core.errors import ConfigError
from promptclf.core.model_spec import ModelSpec

VERSION = 2  # 1 held the texts and every request's items
# ends up in a URL path: no "/", "?", "#"
Identifier = Annotated[str, StringConstraints(pattern=r"^[A-Za-z0-9_-][A-Za-z0-9_.:-]{0,199}$")]
Digest = Annotated[str, StringConstraints(pattern=r"^[0-9a-f]{64}$")]


class Strict(BaseModel):
    model_config = ConfigDict(strict=True, extra="forbid")


class Model(Strict):
    provider: Literal["openai", "together", "openai-compatible"]
    name: str
    base_url: str | None = None

    @model_validator(mode="after")
    def _one_host(self):
        if self.provider == "together" and self.base_url is not None:
            raise ValueError("together: has one host; a base_url is not taken")
        if self.provider == "openai-compatible" and self.base_url is None:
            raise ValueError("openai-compatible: needs its base_url")
        return self


class Input(Strict):
    rows: int = Field(ge=0)
    sha256: Digest


class Batch(Strict):
    id: Identifier
    input_file_id: Identifier
    first: int = Field(ge=0)
    last: int = Field(ge=0)
    status: str
    output_file_id: Identifier | None = None
    error_file_id: Identifier | None = None
    counts: dict[str, int | float | None] | int | float | None = None  # OpenAI's request_counts, Together's progress


class CliOptions(Strict):
    """The options `classify --batch-api` was given, which `batch collect` labels the rest with. No output: a
    manifest never chooses where anything is written."""

    input: str
    text_column: str
    labels: str | None
    task: str | None
    model: str
    examples: str | None
    examples_text_column: str
    examples_label_column: str
    example_selection: Literal["auto", "all", "per-class", "similar"]
    k: int | None
    prompt: str | None
    instructions: str
    batch_size: int = Field(ge=1)
    structured: Literal["auto", "json_schema", "function_calling", "json_mode", "parser"]
    concurrency: int = Field(ge=1)
    max_attempts: int = Field(ge=1)
    timeout: float = Field(gt=0)
    cache: str | None
    cache_dir: str | None
    no_cache: bool
    fallback: str | None
    fallback_below: float | None
    skip_empty: bool
    no_progress: bool
    calibrate: Literal["auto", "none", "content-free"]
    demo_words: int
    item_words: int | None
    quantize: Literal["auto", "int8", "none"]
    threads: int | None
    no_logprobs: bool
    multi_label: bool


class Manifest(Strict):
    version: Literal[2]
    model: Model
    model_id: str
    identity: str
    labels: str
    input: Input
    request_count: int = Field(ge=0)
    item_count: int = Field(ge=0)
    batches: list[Batch]
    host_seal: Digest | None = None
    extra: CliOptions | None = None


class RequestRecord(Strict):
    """One line of the requests file: a request's custom_id and its items as [item id, row of the input]."""

    custom_id: str = Field(max_length=64)
    items: list[tuple[int, int]] = Field(min_length=1)


def read_manifest(path: Path) -> dict:
    """The manifest at `path` as a dict, checked; a ConfigError naming the file and the fields otherwise."""
    try:
        raw = path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        raise ConfigError(f"{path}: cannot read the batch manifest ({exc})") from None
    try:
        manifest = Manifest.model_validate_json(raw)
    except ValidationError as exc:
        version = _version(exc)
        if version is not None:
            raise ConfigError(f"{path} is not a promptclf batch manifest (version {VERSION}{version})") from None
        raise ConfigError(f"{path} is not a valid batch manifest: {_fields(exc)}") from None
    _check_batches(path, manifest)
    return manifest.model_dump(exclude_unset=True)  # as written: a batch not yet polled has no file ids


def _version(exc: ValidationError) -> str | None:
    """Why the file is not a manifest of this version at all (no version, another one, not an object)."""
    for error in exc.errors():
        if error["loc"] in ((), ("version",)):
            given = error.get("input") if error["loc"] else None
            return f"; it says version {given}" if isinstance(given, int) else ""
    return None


def _fields(exc: ValidationError) -> str:
    shown = [f"{'.'.join(str(part) for part in error['loc']) or '(top)'}: {error['msg']}" for error in exc.errors()[:5]]
    more = exc.error_count() - len(shown)
    return "; ".join(shown) + (f" (and {more} more)" if more > 0 else "")


def _check_batches(path: Path, manifest: Manifest) -> None:
    """Each batch holds the requests file's next lines: contiguous ranges from line 0, request_count in all."""
    expected = 0
    for n, batch in enumerate(manifest.batches):
        if batch.first != expected or batch.last <= batch.first:
            raise ConfigError(
                f"{path} is not a valid batch manifest: batches.{n}: lines {batch.first}-{batch.last} "
                f"do not follow line {expected}"
            )
        expected = batch.last
    if expected != manifest.request_count:
        raise ConfigError(
            f"{path} is not a valid batch manifest: request_count {manifest.request_count} is not "
            f"the {expected} requests its batches hold"
        )


# --- which host gets a key ---------------------------------------------------------------------------

SEAL_CONTEXT = b"promptclf batch manifest host\n"


def host_seal(spec: ModelSpec) -> str | None:
    """An HMAC of the spec's host keyed by the key that goes there: written at submit, it shows later that the
    user named this host for this key, without holding the key. None where no key or no base URL is used."""
    variable = key_variable(spec.id)
    key = os.environ.get(variable)
    if not key or spec.base_url is None:
        return None
    return hmac.new(key.encode(), SEAL_CONTEXT + f"{variable}\n{spec.base_url}".encode(), "sha256").hexdigest()


def check_host(path: Path, spec: ModelSpec, seal: str | None, named: ModelSpec | None = None) -> None:
    """Refuse a manifest whose host would be sent a key the user did not name that host for. Named: the
    provider's own host (Together's; OpenAI's when no base URL is set), OpenAI's key to OPENAI_BASE_URL, the
    host of the model string the user gives now (`named`), or the host sealed at submit with this same key."""
    if spec.base_url is None or named == spec:
        return
    variable = key_variable(spec.id)
    if not os.environ.get(variable):
        return  # no key is sent
    named_by_environment = is_openai(spec.base_url) or spec.base_url == os.environ.get("OPENAI_BASE_URL")
    if variable == "OPENAI_API_KEY" and named_by_environment:
        return
    expected = host_seal(spec)
    if seal is not None and expected is not None and hmac.compare_digest(seal, expected):
        return
    how = (
        "set OPENAI_BASE_URL to it"
        if spec.provider == "openai"
        else f"pass --model {spec.provider}:{spec.name}@<its base URL>"
    )
    raise ConfigError(
        f"{path} sends its requests to {redact_url(spec.base_url)}, a host not named for {variable} "
        f"(the manifest was edited, or submitted with another key): nothing sent. If you trust that "
        f"host, {how}"
    )
