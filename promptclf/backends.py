"""Model strings -> backends (LangChain chat models, the embedded local model), and the retry policy."""

from __future__ import annotations

import os
from dataclasses import dataclass
from urllib.parse import urlsplit, urlunsplit

import httpx
import openai
from tenacity import (
    Retrying,
    retry_if_exception,
    stop_after_attempt,
    wait_exponential_jitter,
)

PROVIDERS = {
    "offline": "offline (default): the embedded LLM, embeddings and, with examples, SetFit, combined",
    "embed": "embed: embedding similarity to the labels (packaged MiniLM), or embed:/path/to/an/encoder",
    "local": "the embedded Gemma 3 270M, or local:/path/to/a/transformers/causal-lm",
    "together": "together:<model>, key in TOGETHER_API_KEY",
    "openai": "openai:<model>, key in OPENAI_API_KEY, base URL from OPENAI_BASE_URL if set",
    "openai-compatible": "openai-compatible:<model>@<base-url> (vLLM, Ollama, llama.cpp, ...)",
    "completions": "completions:<model>@<base-url>: label scoring by logprobs on a completions endpoint",
    "finetuned": "finetuned:<dir> written by promptclf finetune",
}
API_KEY_VARS = {"together": "TOGETHER_API_KEY", "openai": "OPENAI_API_KEY"}


class ConfigError(ValueError):
    """The configuration cannot work (unknown model string, missing key); raised before any call is made."""


class MissingAPIKeyError(ConfigError):
    pass


class UnknownModelError(ConfigError):
    pass


def redact_url(url: str | None) -> str | None:
    """A base URL without user:password, for reports and errors."""
    if not url:
        return url
    parts = urlsplit(url)
    host = parts.hostname or ""
    netloc = host + (f":{parts.port}" if parts.port else "")
    return urlunsplit((parts.scheme, netloc, parts.path, parts.query, parts.fragment))


@dataclass(frozen=True)
class ModelSpec:
    provider: str
    name: str
    base_url: str | None = None

    @property
    def id(self) -> str:
        """The model string as reports and cache keys show it (no credentials)."""
        if (self.provider, self.name) in (("local", "gemma3-270m"), ("offline", "default"), ("embed", "minilm")):
            return self.provider
        suffix = f"@{redact_url(self.base_url)}" if self.base_url and self.provider != "openai" else ""
        return f"{self.provider}:{self.name}{suffix}"

    @property
    def is_api(self) -> bool:
        return self.provider in {"together", "openai", "openai-compatible", "completions"}


def parse_model(model: str | None) -> ModelSpec:
    """Parse a model string such as "openai:gpt-4o-mini" or "openai-compatible:llama3@http://host:8000/v1"."""
    if model is None or model == "offline":
        return ModelSpec("offline", "default")
    if model == "local":
        return ModelSpec("local", "gemma3-270m")
    if model == "embed":
        return ModelSpec("embed", "minilm")
    if not isinstance(model, str) or ":" not in model:
        raise UnknownModelError(_unknown(model))
    provider, _, name = model.partition(":")
    if provider not in PROVIDERS or not name:
        raise UnknownModelError(_unknown(model))
    if provider in {"openai-compatible", "completions"}:
        name, sep, base_url = name.rpartition("@")
        if not sep or not name or not base_url.startswith(("http://", "https://")):
            raise UnknownModelError(f"model {model!r}: expected {provider}:<model>@<http(s)://base-url>")
        return ModelSpec(provider, name, base_url)
    if provider == "openai":
        return ModelSpec(provider, name, os.environ.get("OPENAI_BASE_URL") or None)
    return ModelSpec(provider, name)


def _unknown(model) -> str:
    forms = "; ".join(PROVIDERS.values())
    return f"unknown model {model!r}: use one of: {forms}"


def api_key(spec: ModelSpec, given: str | None = None) -> str:
    if given:
        return given
    var = API_KEY_VARS.get(spec.provider)
    if var is None:  # OpenAI-compatible servers often need no key; send OPENAI_API_KEY if the user set one
        return os.environ.get("OPENAI_API_KEY") or "not-needed"
    key = os.environ.get(var)
    if not key:
        raise MissingAPIKeyError(f"{var} is not set: export {var}=... to use model {spec.id!r}")
    return key


def chat_model(spec: ModelSpec, *, timeout: float = 60.0, temperature: float = 0.0, key: str | None = None, **kwargs):
    """A LangChain chat model for an API backend. Retries are ours (tenacity), so the client's are off."""
    common = dict(model=spec.name, temperature=temperature, timeout=timeout, max_retries=0, **kwargs)
    if spec.provider == "together":
        from langchain_together import ChatTogether

        return ChatTogether(api_key=api_key(spec, key), **common)
    if spec.provider in {"openai", "openai-compatible"}:
        from langchain_openai import ChatOpenAI

        return ChatOpenAI(api_key=api_key(spec, key), base_url=spec.base_url, **common)
    raise ConfigError(f"model {spec.id!r} is not a chat model")


# --- retries ---------------------------------------------------------------------------------------

def is_transient(exc: BaseException) -> bool:
    """Rate limits, server errors, timeouts and dropped connections are worth another attempt."""
    if isinstance(exc, (openai.RateLimitError, openai.APITimeoutError, openai.APIConnectionError)):
        return True
    if isinstance(exc, openai.APIStatusError):
        return exc.status_code >= 500 or exc.status_code in (408, 409)
    return isinstance(exc, (httpx.TimeoutException, httpx.TransportError, TimeoutError, ConnectionError))


def is_request_error(exc: BaseException) -> bool:
    """400-type errors about one request (context too long, content filtered): its items fail, the run goes on."""
    return isinstance(exc, (openai.BadRequestError, openai.UnprocessableEntityError))


def retry_after_seconds(exc: BaseException | None) -> float | None:
    response = getattr(exc, "response", None)
    headers = getattr(response, "headers", None) or {}
    value = headers.get("retry-after-ms")
    if value is not None:
        try:
            return float(value) / 1000
        except ValueError:
            pass
    value = headers.get("retry-after")
    try:
        return float(value) if value is not None else None
    except ValueError:
        return None


class wait_retry_after:
    """Wait what the server's Retry-After says (capped), else exponential backoff with jitter."""

    def __init__(self, initial: float = 0.5, maximum: float = 30.0):
        self.backoff = wait_exponential_jitter(multiplier=initial, max=maximum)
        self.maximum = maximum

    def __call__(self, retry_state) -> float:
        hinted = retry_after_seconds(retry_state.outcome.exception())
        if hinted is not None:
            return min(hinted, self.maximum)
        return self.backoff(retry_state)


def retrying(max_attempts: int = 6, initial_wait: float = 0.5, max_wait: float = 30.0, on_retry=None) -> Retrying:
    return Retrying(
        retry=retry_if_exception(is_transient),
        wait=wait_retry_after(initial_wait, max_wait),
        stop=stop_after_attempt(max_attempts),
        before_sleep=on_retry,
        reraise=True,
    )


def describe_error(exc: BaseException) -> str:
    """A one-line reason for a failed call, without request headers (so no key can leak)."""
    status = getattr(exc, "status_code", None)
    text = str(exc).splitlines()[0][:200] if str(exc) else ""
    return f"{type(exc).__name__}{f' {status}' if status else ''}: {text}"
