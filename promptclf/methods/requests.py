"""Calling a server: which errors are transient, refusals of a request's form, retries and the one-line reasons."""

from __future__ import annotations

import re
import threading
from dataclasses import dataclass

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

from promptclf.core.credentials import key_variable, scrub
from promptclf.core.errors import ConfigError


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
    """Errors about one request, whose items fail while the run goes on: a 400-type error (context too long,
    content filtered), or an answer cut at its token bound, which the openai client's parse of a
    `response_format` answer raises (a batch's items are then asked again in smaller batches)."""
    return isinstance(exc, (openai.BadRequestError, openai.UnprocessableEntityError, openai.LengthFinishReasonError))


# Request parameters a server may not take: a 400 about one of them fails every request alike, whatever its size.
_UNSUPPORTED_PARAMS = {
    "response_format",
    "tools",
    "tool_choice",
    "functions",
    "function_call",
    "logprobs",
    "echo",
    "max_tokens",
    "temperature",
    "model",
    "top_logprobs",
    "prompt",
}
_UNSUPPORTED = re.compile(
    r"response_format|json_schema|tool.?choice|tool.?call|logprobs|\becho\b|not supported|"
    r"unsupported|unrecognized|unknown (?:parameter|field|argument)|extra (?:inputs|fields)",
    re.I,
)
# How a server says the request itself is malformed (pydantic / FastAPI validation, a failed assertion): the
# same request fails the same way every time. llama-cpp-python's server answers these with a 500.
_INVALID = re.compile(
    r"validation error|literal_error|Input should be|Field required|AssertionError|"
    r"\bassert(?:ion)?\b|'loc':",
    re.I,
)
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
    hints = {
        401: f"the server refused the API key: check {key_var}",
        403: f"the key in {key_var} may not use this model or endpoint",
        404: "no such model or endpoint: check the model name and the base URL",
    }
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


def retrying(
    max_attempts: int = 6,
    initial_wait: float = 0.5,
    max_wait: float = 30.0,
    on_retry=None,
    stop: threading.Event | None = None,
) -> Retrying:
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


def call(
    request,
    usage,
    *,
    where: str,
    max_attempts: int = 6,
    max_wait: float = 30.0,
    stop: threading.Event | None = None,
    unsupported_hint: str = "the server does not take this request",
):
    """request() with retries on transient errors, each attempt and retry counted in `usage`. A configuration
    error (see configuration_problem) is raised at once as a one-line ConfigError naming the model `where`,
    a refusal of the request's form as its subclass RefusedRequest."""
    try:
        for attempt in retrying(
            max_attempts, max_wait=max_wait, on_retry=lambda state: usage.add(retries=1), stop=stop
        ):
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
