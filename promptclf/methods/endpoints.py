"""What each server was found to take, remembered for the life of the process (not on disk: a server can
be upgraded or restarted with other options between runs), so a refused form is sent once, not per batch."""

from __future__ import annotations

import threading
from dataclasses import dataclass, field


@dataclass
class Endpoint:
    """Findings about one endpoint (one model at one base URL). Read and update them under `lock`."""

    refused_modes: set = field(default_factory=set)  # structured-output modes the server refused
    settled: bool = False  # a request in the current form has come back
    logprobs_refused: bool = False  # the server refused `logprobs` on chat requests
    logprobs_missing_said: bool = False  # the "no logprobs, no confidence" warning was given
    prompt_lists: bool | None = None  # completions: takes a list of prompts per request (None: not known yet)
    served_models: list | None = None  # the ids GET /models listed (None: not asked yet)
    lock: threading.Lock = field(default_factory=threading.Lock, repr=False)


_ENDPOINTS: dict[str, Endpoint] = {}
_LOCK = threading.Lock()


def endpoint(key: str) -> Endpoint:
    """The findings for an endpoint key (a model string with its base URL, as ModelSpec.id gives it)."""
    with _LOCK:
        return _ENDPOINTS.setdefault(key, Endpoint())


# Statuses that say nothing about the listing: the server is down, busy or still loading its model.
_TRANSIENT_STATUSES = {408, 429}


def served_models(base_url: str, api_key: str | None, found: Endpoint, timeout: float = 5.0) -> list[str]:
    """The model ids an OpenAI-compatible server lists at GET {base_url}/models, remembered per endpoint once
    the server has answered: [] when it answers without a listing (a 404, a body that is not one).
    Where it did not (no connection, a timeout, a 5xx, a 408 or 429) a ConnectionError, which is not
    remembered: retries and reports take it as a transient failure of the request it came before."""
    with found.lock:
        if found.served_models is not None:
            return found.served_models
    import httpx

    url = base_url.rstrip("/") + "/models"
    headers = {"Authorization": f"Bearer {api_key}"} if api_key else {}
    try:
        response = httpx.get(url, headers=headers, timeout=timeout)
    except httpx.HTTPError as exc:
        raise _unavailable(url, type(exc).__name__) from None
    if response.status_code >= 500 or response.status_code in _TRANSIENT_STATUSES:
        raise _unavailable(url, str(response.status_code))
    try:
        ids = [str(m.get("id", "")) for m in response.json().get("data", [])] if response.is_success else []
    except (ValueError, AttributeError, TypeError):
        ids = []
    with found.lock:
        found.served_models = ids
    return ids


def _unavailable(url: str, reason: str) -> ConnectionError:
    from promptclf.core.credentials import redact_url

    return ConnectionError(
        f"GET {redact_url(url)}: {reason} (system_in_user='auto' reads the server's model "
        "listing to know where the system text goes; system_in_user=True or False does without it)"
    )
