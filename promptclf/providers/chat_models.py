"""LangChain chat models for the API backends, and the fingerprint of a user's own."""

from __future__ import annotations

from promptclf.core.credentials import api_key, remember_secret
from promptclf.core.errors import ConfigError
from promptclf.core.hashing import digest
from promptclf.core.model_spec import ModelSpec


def llm_fingerprint(llm) -> str:
    """A user-supplied chat model's answers depend on its class, model, parameters and endpoint: the string
    LangChain's own LLM cache keys on (secrets appear in it by name, never by value)."""
    described = llm._get_llm_string() if hasattr(llm, "_get_llm_string") else ""
    return digest(f"{type(llm).__qualname__}|{described}", 16)


def remember_keys_of(llm) -> None:
    """A user's own chat model carries its key (a pydantic SecretStr field, e.g. ChatOpenAI's
    openai_api_key): scrub hides it from errors as it hides keys from the environment."""
    from pydantic import SecretStr

    for value in getattr(llm, "__dict__", {}).values():
        if isinstance(value, SecretStr):
            remember_secret(value.get_secret_value())


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
