"""A parsed model string: provider, model name and base URL (the registry parses them)."""

from __future__ import annotations

from dataclasses import dataclass

from promptclf.core.credentials import keyed_url, redact_url


@dataclass(frozen=True)
class ModelSpec:
    provider: str
    name: str
    base_url: str | None = None

    def __repr__(self) -> str:
        return f"ModelSpec(provider={self.provider!r}, name={self.name!r}, base_url={redact_url(self.base_url)!r})"

    @property
    def id(self) -> str:
        """The model string as reports and cache keys show it: its base URL whole, credentials hashed."""
        if (self.provider, self.name) in (("local", "gemma3-270m"), ("offline", "default"), ("embed", "minilm")):
            return self.provider
        suffix = f"@{keyed_url(self.base_url)}" if self.base_url else ""  # openai: with OPENAI_BASE_URL too
        return f"{self.provider}:{self.name}{suffix}"

    @property
    def is_api(self) -> bool:
        return self.provider in {"together", "openai", "openai-compatible", "completions"}
