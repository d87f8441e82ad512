"""Which API key goes to which host, and keeping keys and URL credentials out of every text."""

from __future__ import annotations

import os
import re
import threading
from typing import TYPE_CHECKING
from urllib.parse import parse_qsl, unquote_plus, urlsplit, urlunsplit

from promptclf.core.errors import MissingAPIKeyError
from promptclf.core.hashing import fingerprint

if TYPE_CHECKING:
    from promptclf.core.model_spec import ModelSpec


API_KEY_VARS = {"together": "TOGETHER_API_KEY", "openai": "OPENAI_API_KEY"}
SERVER_KEY_VAR = "OPENAI_COMPATIBLE_API_KEY"  # any other server's key: OpenAI's own key stays with OpenAI
OPENAI_HOST = "api.openai.com"
SHORTEST_SECRET = 8  # shorter strings ("x", "none") would scrub ordinary words, and no real key is that short

# Keys given in code (api_key=, a chat model's own key): scrubbed like those read from the environment.
_GIVEN_KEYS: set[str] = set()
_GIVEN_KEYS_LOCK = threading.Lock()


def remember_secret(secret: str | None) -> None:
    """Have `scrub` hide this key from every text from now on (for the life of the process)."""
    if secret and len(secret) >= SHORTEST_SECRET:
        with _GIVEN_KEYS_LOCK:
            _GIVEN_KEYS.add(secret)


def _secrets() -> list[str]:
    """Every key to hide, longest first (a key that contains another is hidden whole)."""
    from_environment = {os.environ.get(var) for var in {*API_KEY_VARS.values(), SERVER_KEY_VAR}}
    with _GIVEN_KEYS_LOCK:
        found = {s for s in from_environment | _GIVEN_KEYS if s and len(s) >= SHORTEST_SECRET}
    return sorted(found, key=len, reverse=True)


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


# Query parameters whose values are credentials (api-key, access_token, sig, X-Amz-Signature, password, ...).
_SECRET_PARAMETER = re.compile(r"key|token|sig|secret|passw|pwd|auth|credential", re.I)


def keyed_url(url: str | None) -> str | None:
    """A base URL as cache keys and reports name it: the whole URL (scheme, host, port, path, query; IPv6 hosts
    in their brackets) with only its credentials, the userinfo and the values of key/token/sig/secret/password/
    auth-like query parameters, each replaced by a short hash of it: other credentials, or another deployment
    or API version, key other answers, and no credential is shown."""
    if not url:
        return url
    try:
        parts = urlsplit(url)
        host, port = parts.hostname or "", parts.port
    except ValueError:  # not a URL we can take apart: key on all of it, show none of it
        return f"<url {_hidden(url)}>"
    userinfo = parts.netloc.rpartition("@")[0]
    netloc = (
        (f"{_hidden(userinfo)}@" if userinfo else "")
        + (f"[{host}]" if ":" in host else host)
        + (f":{port}" if port else "")
    )
    query = "&".join(_keyed_parameter(p) for p in parts.query.split("&")) if parts.query else ""
    return urlunsplit((parts.scheme, netloc, parts.path, query, ""))


def _keyed_parameter(parameter: str) -> str:
    name, equals, value = parameter.partition("=")
    return f"{name}={_hidden(value)}" if value and _SECRET_PARAMETER.search(unquote_plus(name)) else parameter


def _hidden(secret: str) -> str:
    return f"***{fingerprint('url credential', secret)[:8]}"


_URL = re.compile(r"https?://[^\s'\"<>]+")


def scrub(text: str) -> str:
    """Text for an error message or a log: URLs redacted, and no API key (from the environment or given in
    code, see remember_secret) in it."""
    text = _URL.sub(lambda m: redact_url(m.group()), text)
    for secret in _secrets():
        text = text.replace(secret, "***")
    return text


def key_variable(model_id: str) -> str:
    """The environment variable that holds the key for a model string (ModelSpec.id): OpenAI's key goes
    only to OpenAI's host, Together's to Together, any other server's comes from OPENAI_COMPATIBLE_API_KEY."""
    provider, _, rest = model_id.partition(":")
    if provider in API_KEY_VARS:
        return API_KEY_VARS[provider]
    base_url = re.search(r"@(https?://.*)", rest)  # the first "@http", as parse_model reads it: a URL may hold "@"
    return "OPENAI_API_KEY" if base_url and is_openai(base_url.group(1)) else SERVER_KEY_VAR


def is_openai(url: str | None) -> bool:
    try:
        parts = urlsplit(url or "")
        return parts.scheme == "https" and parts.hostname == OPENAI_HOST
    except ValueError:
        return False


def api_key(spec: ModelSpec, given: str | None = None) -> str:
    if given:
        remember_secret(given)
        return given
    var = key_variable(spec.id)
    key = os.environ.get(var)
    if not key and spec.provider in API_KEY_VARS:
        raise MissingAPIKeyError(f"{var} is not set: export {var}=... to use model {spec.id!r}")
    return key or "not-needed"  # most self-hosted servers need no key
