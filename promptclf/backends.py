"""Model specs, API keys and chat models for the API backends, and the retry policy. Which model strings
exist, and what each backend takes and builds, is the provider registry's (promptclf.providers)."""

from __future__ import annotations

import hashlib
import os
import re
import threading
from dataclasses import dataclass
from urllib.parse import parse_qsl, urlsplit, urlunsplit

import httpx
import openai
from tenacity import (
    Retrying,
    retry_if_exception,
    sleep_using_event,
    stop_after_attempt,
    stop_when_event_set,
    wait_exponential_jitter,
)

API_KEY_VARS = {"together": "TOGETHER_API_KEY", "openai": "OPENAI_API_KEY"}
SERVER_KEY_VAR = "OPENAI_COMPATIBLE_API_KEY"  # any other server's key: OpenAI's own key stays with OpenAI
OPENAI_HOST = "api.openai.com"


class ConfigError(ValueError):
    """The configuration cannot work (unknown model string, missing key); raised before any call is made."""


class MissingAPIKeyError(ConfigError):
    pass


class UnknownModelError(ConfigError):
    pass


def redact_url(url: str | None) -> str | None:
    """A base URL without user:password and with its query's values hidden, for reports and errors."""
    if not url:
        return url
    try:
        parts = urlsplit(url)
        netloc = (parts.hostname or "") + (f":{parts.port}" if parts.port else "")
    except ValueError:  # not a URL we can take apart: show none of it
        return "<url>"
    query = "&".join(f"{name}=***" for name, _ in parse_qsl(parts.query, keep_blank_values=True))
    return urlunsplit((parts.scheme, netloc, parts.path, query, ""))


_URL = re.compile(r"https?://[^\s'\"<>]+")


def scrub(text: str) -> str:
    """Text for an error message or a log: URLs redacted, and no API key from the environment in it."""
    text = _URL.sub(lambda m: redact_url(m.group()), text)
    for var in {*API_KEY_VARS.values(), SERVER_KEY_VAR}:
        secret = os.environ.get(var)
        if secret and len(secret) >= 8:
            text = text.replace(secret, "***")
    return text


@dataclass(frozen=True)
class ModelSpec:
    provider: str
    name: str
    base_url: str | None = None

    def __repr__(self) -> str:
        return f"ModelSpec(provider={self.provider!r}, name={self.name!r}, base_url={redact_url(self.base_url)!r})"

    @property
    def id(self) -> str:
        """The model string as reports and cache keys show it (no credentials)."""
        if (self.provider, self.name) in (("local", "gemma3-270m"), ("offline", "default"), ("embed", "minilm")):
            return self.provider
        suffix = f"@{redact_url(self.base_url)}" if self.base_url else ""  # openai: with OPENAI_BASE_URL too
        return f"{self.provider}:{self.name}{suffix}"

    @property
    def is_api(self) -> bool:
        return self.provider in {"together", "openai", "openai-compatible", "completions"}


def key_variable(model_id: str) -> str:
    """The environment variable that holds the key for a model string (ModelSpec.id): OpenAI's key goes
    only to OpenAI's host, Together's to Together, any other server's comes from OPENAI_COMPATIBLE_API_KEY."""
    provider, _, rest = model_id.partition(":")
    if provider in API_KEY_VARS:
        return API_KEY_VARS[provider]
    return "OPENAI_API_KEY" if is_openai(rest.rpartition("@")[2]) else SERVER_KEY_VAR


def is_openai(url: str | None) -> bool:
    try:
        parts = urlsplit(url or "")
        return parts.scheme == "https" and parts.hostname == OPENAI_HOST
    except ValueError:
        return False


def api_key(spec: ModelSpec, given: str | None = None) -> str:
    if given:
        return given
    var = key_variable(spec.id)
    key = os.environ.get(var)
    if not key and spec.provider in API_KEY_VARS:
        raise MissingAPIKeyError(f"{var} is not set: export {var}=... to use model {spec.id!r}")
    return key or "not-needed"  # most self-hosted servers need no key


def llm_fingerprint(llm) -> str:
    """A user-supplied chat model's answers depend on its class, model, parameters and endpoint: the string
    LangChain's own LLM cache keys on (secrets appear in it by name, never by value)."""
    described = llm._get_llm_string() if hasattr(llm, "_get_llm_string") else ""
    return hashlib.sha256(f"{type(llm).__qualname__}|{described}".encode()).hexdigest()[:16]


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
    """Rate limits, server errors, timeouts and dropped connections are worth another attempt; a 500 that
    says the request is invalid (see refusal) is not."""
    if isinstance(exc, (openai.RateLimitError, openai.APITimeoutError, openai.APIConnectionError)):
        return True
    if isinstance(exc, openai.APIStatusError):
        if refusal(exc) is not None:
            return False
        return exc.status_code >= 500 or exc.status_code in (408, 409)
    return isinstance(exc, (httpx.TimeoutException, httpx.TransportError, TimeoutError, ConnectionError))


def is_request_error(exc: BaseException) -> bool:
    """400-type errors about one request (context too long, content filtered): its items fail, the run goes on."""
    return isinstance(exc, (openai.BadRequestError, openai.UnprocessableEntityError))


# Request parameters a server may not take: a 400 about one of them fails every request alike, whatever its size.
_UNSUPPORTED_PARAMS = {"response_format", "tools", "tool_choice", "functions", "function_call", "logprobs", "echo",
                       "max_tokens", "temperature", "model", "top_logprobs", "prompt"}
_UNSUPPORTED = re.compile(r"response_format|json_schema|tool.?choice|tool.?call|logprobs|\becho\b|not supported|"
                          r"unsupported|unrecognized|unknown (?:parameter|field|argument)|extra (?:inputs|fields)", re.I)
# How a server says the request itself is malformed (pydantic / FastAPI validation, a failed assertion): the
# same request fails the same way every time. llama-cpp-python's server answers these with a 500.
_INVALID = re.compile(r"validation error|literal_error|Input should be|Field required|AssertionError|"
                      r"\bassert(?:ion)?\b|'loc':", re.I)
_STRUCTURED_PARAMS = {"response_format", "tools", "tool_choice", "functions", "function_call"}
_STRUCTURED = re.compile(r"response_format|json_schema|json_object|tool|function", re.I)


@dataclass(frozen=True)
class Refusal:
    """A server's refusal of a request's form: `feature` is "logprobs", "structured" or None (unknown)."""

    status: int
    reason: str
    feature: str | None


def refusal(exc: BaseException) -> Refusal | None:
    """The refusal a failed call reports, if it is one: a 400/422 about a parameter the server does not take
    or a malformed request, or a 500 whose body is a validation or assertion error. None for anything an
    identical request might get through (rate limits, crashes, a context too long)."""
    if not isinstance(exc, openai.APIStatusError):
        return None
    status, param, text = exc.status_code, getattr(exc, "param", None), _server_text(exc)
    if status in (400, 422):
        refused = param in _UNSUPPORTED_PARAMS or _UNSUPPORTED.search(text) or _INVALID.search(text)
    else:
        refused = status == 500 and (_INVALID.search(text) or _UNSUPPORTED.search(text))
    if not refused:
        return None
    if param in ("logprobs", "top_logprobs") or re.search(r"logprob", text, re.I):
        feature = "logprobs"
    elif param in _STRUCTURED_PARAMS or _STRUCTURED.search(text):
        feature = "structured"
    else:
        feature = None
    return Refusal(status, server_message(exc), feature)


class RefusedRequest(ConfigError):
    """A server refused the form of a request (see `refusal`): sending it again would fail again."""

    def __init__(self, message: str, refused: Refusal):
        super().__init__(message)
        self.refusal = refused


def configuration_problem(exc: BaseException, key_var: str, unsupported_hint: str) -> str | None:
    """What is wrong with the configuration, if a failed call says so (401, 403, 404, or a refusal of the
    request's form), in one line; None for errors about the request itself."""
    status = getattr(exc, "status_code", None)
    hints = {401: f"the server refused the API key: check {key_var}",
             403: f"the key in {key_var} may not use this model or endpoint",
             404: "no such model or endpoint: check the model name and the base URL"}
    if refusal(exc) is not None:
        hints[status] = unsupported_hint
    if status not in hints:
        return None
    return f"{status} {_error_name(exc)}: {server_message(exc)} ({hints[status]})"


def _error_name(exc: BaseException) -> str:
    """The openai error's name (langchain-openai re-raises them as subclasses named OpenAI...)."""
    for cls in type(exc).__mro__:
        if cls.__module__.startswith("openai"):
            return cls.__name__
    return type(exc).__name__


def _server_text(exc: BaseException) -> str:
    body = getattr(exc, "body", None)
    message = body.get("message") if isinstance(body, dict) else None
    return str(message if message is not None else exc)


_PYDANTIC_ERROR = re.compile(r"'loc': \(([^)]*)\), 'msg': (['\"])(.*?)\2")


def server_message(exc: BaseException) -> str:
    """The server's reason in one line: a validation error as "where: what", an empty one said so."""
    text = _server_text(exc)
    found = _PYDANTIC_ERROR.search(text)
    if found:
        where = ".".join(part.strip(" '\"") for part in found.group(1).split(",") if part.strip(" '\"") != "body")
        text = f"{where}: {found.group(3)}"
    elif not text.strip():
        return "(the server gave no reason)"
    return scrub(text.strip().splitlines()[0][:200])


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


def retrying(max_attempts: int = 6, initial_wait: float = 0.5, max_wait: float = 30.0, on_retry=None,
             stop: threading.Event | None = None) -> Retrying:
    """Retries for transient errors; setting `stop` (Ctrl-C elsewhere) ends the waiting and the retrying."""
    stop = stop or threading.Event()
    return Retrying(
        retry=retry_if_exception(is_transient),
        wait=wait_retry_after(initial_wait, max_wait),
        stop=stop_after_attempt(max_attempts) | stop_when_event_set(stop),
        sleep=sleep_using_event(stop),
        before_sleep=on_retry,
        reraise=True,
    )


def call(request, usage, *, where: str, max_attempts: int = 6, max_wait: float = 30.0,
         stop: threading.Event | None = None, unsupported_hint: str = "the server does not take this request"):
    """request() with retries on transient errors, each attempt and retry counted in `usage`. A configuration
    error (see configuration_problem) is raised at once as a one-line ConfigError naming the model `where`,
    a refusal of the request's form as its subclass RefusedRequest."""
    try:
        for attempt in retrying(max_attempts, max_wait=max_wait, on_retry=lambda state: usage.add(retries=1),
                                stop=stop):
            with attempt:
                usage.add(requests=1)
                response = request()
    except openai.APIStatusError as exc:
        problem = configuration_problem(exc, key_variable(where), unsupported_hint)
        refused = refusal(exc)
        if problem and refused:
            raise RefusedRequest(f"model {where!r}: {problem}", refused) from None
        if problem:
            raise ConfigError(f"model {where!r}: {problem}") from None
        raise
    return response


def describe_error(exc: BaseException) -> str:
    """A one-line reason for a failed call, without request headers, URL credentials or keys."""
    status = getattr(exc, "status_code", None)
    text = scrub(str(exc).splitlines()[0][:200]) if str(exc) else ""
    return f"{_error_name(exc)}{f' {status}' if status else ''}: {text}"
