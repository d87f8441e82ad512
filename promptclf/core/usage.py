"""Usage accounting: calls, tokens, cost, retries and time for one run, and the price table."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field, fields
from typing import Any

# USD per 1M tokens (input, output). Extend with `register_price` or `Classifier(prices=...)`.
PRICES: dict[str, tuple[float, float]] = {
    "openai:gpt-4o-mini": (0.15, 0.60),
    "openai:gpt-4o": (2.50, 10.00),
    "openai:gpt-4.1-mini": (0.40, 1.60),
    "openai:gpt-4.1-nano": (0.10, 0.40),
    "openai:gpt-4.1": (2.00, 8.00),
    "together:meta-llama/Llama-3-70b-chat-hf": (0.88, 0.88),
    "together:meta-llama/Meta-Llama-3.1-8B-Instruct-Turbo": (0.18, 0.18),
    "together:meta-llama/Llama-3.3-70B-Instruct-Turbo": (0.88, 0.88),
}


def register_price(model: str, input_per_million: float, output_per_million: float) -> None:
    """Add or override the price of a model string (e.g. "openai:gpt-4o-mini"), in USD per 1M tokens."""
    PRICES[model] = (float(input_per_million), float(output_per_million))


def price_of(model: str, prices: dict | None = None) -> tuple[float, float] | None:
    """The price of a model string as reports show it. A price is for one endpoint: "openai:gpt-4o-mini" at
    another OPENAI_BASE_URL is not OpenAI's. A price registered without a URL for openai-compatible: or
    completions: holds for that model at any URL (those servers are the user's own)."""
    table = {**PRICES, **(prices or {})}
    if model in table:
        return table[model]
    provider = model.split(":", 1)[0]
    if provider in ("openai-compatible", "completions"):
        return table.get(model.rsplit("@", 1)[0])
    return None


# What a run spends and meets, added up when one run's Usage is absorbed into another's (not `items`: who absorbs
# counts its own; not `wall_s`: runs overlap).
SPENT = (
    "requests",
    "retries",
    "reasks",
    "repaired",
    "prompt_tokens",
    "completion_tokens",
    "cache_hits",
    "fallback",
    "failed",
    "failed_requests",
    "answered_locally",
    "escalated",
    "compute_s",
)


@dataclass
class Usage:
    """Counters for one run. Thread-safe: batches running in parallel add to the same object."""

    model: str = ""
    items: int = 0
    requests: int = 0
    retries: int = 0
    reasks: int = 0
    repaired: int = 0
    prompt_tokens: int = 0
    completion_tokens: int = 0
    cache_hits: int = 0
    fallback: int = 0
    failed: int = 0
    failed_requests: int = 0  # requests that got no usable answer (retries spent, refused, or all off-schema)
    answered_locally: int = 0  # a cascade's items its local stage answered
    escalated: int = 0  # a cascade's items sent on to its API stage
    compute_s: float = 0.0
    wall_s: float = 0.0
    estimate: str = ""  # what an offline classifier chose, and its estimated accuracy
    trust: str = ""  # what a validation sample says of the answers (promptclf.core.trust), or that none was given
    prices: dict = field(default_factory=dict, repr=False)
    # Told of every request's outcome (ok, reason): the run's circuit breaker listens here (core/breaker.py).
    on_request: Callable[[bool, str | None], bool] | None = field(default=None, repr=False, compare=False)
    span: Any = field(default=None, repr=False, compare=False)  # the run's telemetry span: requests' parent
    _lock: threading.Lock = field(default_factory=threading.Lock, repr=False, compare=False)

    def __deepcopy__(self, memo):
        return self  # a meter is shared by whoever copies the program that reports into it (e.g. DSPy)

    def add(self, **counts) -> None:
        with self._lock:
            for name, value in counts.items():
                setattr(self, name, getattr(self, name) + value)

    def request_done(self, ok: bool, reason: str | None = None) -> bool:
        """A request ended: with a usable answer (ok) or without one (its retries spent, refused, or every
        answer in it off-schema). Methods that call servers say so once per request; True means the run's
        circuit breaker has tripped, and the method should ask nothing more."""
        if not ok:
            self.add(failed_requests=1)
        return bool(self.on_request(ok, reason)) if self.on_request is not None else False

    def absorb(self, other: Usage) -> None:
        """Add the calls, tokens and compute of another run (e.g. one Classifier.predict) to this one."""
        self.add(**{name: getattr(other, name) for name in SPENT})

    @property
    def cost_usd(self) -> float | None:
        """Estimated dollars from the price table; None where the model has no price (local models)."""
        price = price_of(self.model, self.prices)
        if price is None:
            return None
        return (self.prompt_tokens * price[0] + self.completion_tokens * price[1]) / 1e6

    def as_dict(self) -> dict:
        data = {
            f.name: getattr(self, f.name)
            for f in fields(self)
            if not f.name.startswith("_") and f.name not in ("prices", "on_request", "span")
        }
        data["cost_usd"] = self.cost_usd
        return data

    def summary(self) -> str:
        if self.cost_usd is not None:
            cost = f"${self.cost_usd:.4f}"
        elif self.compute_s:
            cost = f"{self.compute_s:.1f}s local compute"
        else:
            cost = "unknown (no price for this model: register_price)"
        return (
            (
                f"{self.items} items | {self.requests} calls ({self.retries} retries, {self.reasks} re-asks) | "
                f"{self.prompt_tokens} prompt + {self.completion_tokens} completion tokens | cost {cost} | "
                f"{self.cache_hits} from cache, {self.fallback} by fallback, {self.failed} failed | "
                f"wall {self.wall_s:.1f}s"
            )
            + self._cascade()
            + (f"\n{self.estimate}" if self.estimate else "")
            + (f"\n{self.trust}" if self.trust else "")
        )

    def _cascade(self) -> str:
        if not (self.answered_locally or self.escalated):
            return ""
        return f" | cascade: {self.answered_locally} answered locally, {self.escalated} sent to the API"


class Stopwatch:
    """`with Stopwatch() as sw:` ... `sw.seconds`."""

    def __enter__(self):
        self.start = time.perf_counter()
        self.seconds = 0.0
        return self

    def __exit__(self, *exc):
        self.seconds = time.perf_counter() - self.start
        return False
