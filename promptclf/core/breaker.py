"""The run's circuit breaker: it stops asking a server that has stopped answering (a bad key, a model gone, a
server down, an endpoint that answers nothing usable), so a long run ends with a reason instead of paying for
or waiting on requests that all fail the same way."""

from __future__ import annotations

import threading
from collections import deque


class CircuitBreaker:
    """Trips after `after` consecutive failed requests, or when more than half of the last `recent` requests
    failed (once that many were made). A failed request is one whose retries were spent, that was refused, or
    whose answers were all unusable: a single 429 that a retry got past is not one. `after=0` never trips."""

    def __init__(self, after: int = 20, recent: int = 100):
        if after < 0 or recent < 1:
            raise ValueError("breaker: after must be 0 or more, recent at least 1")
        self.after, self.recent = after, recent
        self._outcomes: deque[bool] = deque(maxlen=recent)
        self._consecutive = 0
        self._last_reason: str | None = None
        self._lock = threading.Lock()
        self.reason: str | None = None

    def record(self, ok: bool, reason: str | None = None) -> bool:
        """Count one request's outcome; True once the breaker has tripped."""
        with self._lock:
            self._outcomes.append(ok)
            self._consecutive = 0 if ok else self._consecutive + 1
            if not ok and reason:
                self._last_reason = reason
            if self.after and self.reason is None:
                self.reason = self._verdict()
            return self.reason is not None

    @property
    def tripped(self) -> bool:
        return self.reason is not None

    def _verdict(self) -> str | None:
        last = f" (last: {self._last_reason})" if self._last_reason else ""
        if self._consecutive >= self.after:
            return f"{self._consecutive} requests in a row failed{last}"
        failed = self._outcomes.count(False)
        if len(self._outcomes) == self.recent and failed * 2 > self.recent:
            return f"{failed} of the last {self.recent} requests failed{last}"
        return None
