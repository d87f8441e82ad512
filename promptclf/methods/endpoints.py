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


def served_models(base_url: str, api_key: str | None, found: Endpoint, timeout: float = 5.0) -> list[str]:
    """The model ids an OpenAI-compatible server lists at GET {base_url}/models, asked once per endpoint;
    [] when it lists none or does not answer (the listing only informs a default)."""
    with found.lock:
        if found.served_models is not None:
            return found.served_models
    import httpx

    headers = {"Authorization": f"Bearer {api_key}"} if api_key else {}
    try:
        response = httpx.get(base_url.rstrip("/") + "/models", headers=headers, timeout=timeout)
        ids = [str(m.get("id", "")) for m in response.json().get("data", [])] if response.is_success else []
    except (httpx.HTTPError, ValueError, AttributeError):
        ids = []
    with found.lock:
        found.served_models = ids
    return ids
