"""A batch manifest and its requests file, read as untrusted input: whoever can write them must not be able to
steer a key, a write or a cache key. Every field has a strict type, unknown fields are refused, and an error
names the file and the field."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Literal

from pydantic import BaseModel, ConfigDict, Field, StringConstraints, ValidationError

from promptclf.core.errors import ConfigError

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
    extra: dict[str, str | int | float | bool | None]


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
    shown = [f"{'.'.join(str(part) for part in error['loc']) or '(top)'}: {error['msg']}"
             for error in exc.errors()[:5]]
    more = exc.error_count() - len(shown)
    return "; ".join(shown) + (f" (and {more} more)" if more > 0 else "")


def _check_batches(path: Path, manifest: Manifest) -> None:
    """Each batch holds the requests file's next lines: contiguous ranges from line 0, request_count in all."""
    expected = 0
    for n, batch in enumerate(manifest.batches):
        if batch.first != expected or batch.last <= batch.first:
            raise ConfigError(f"{path} is not a valid batch manifest: batches.{n}: lines {batch.first}-{batch.last} "
                              f"do not follow line {expected}")
        expected = batch.last
    if expected != manifest.request_count:
        raise ConfigError(f"{path} is not a valid batch manifest: request_count {manifest.request_count} is not "
                          f"the {expected} requests its batches hold")
