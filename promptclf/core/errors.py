"""The errors promptclf raises to its users, each a one-line reason."""

from __future__ import annotations

from collections.abc import Sequence


class ConfigError(ValueError):
    """The configuration cannot work (unknown model string, missing key); raised before any call is made."""


class MissingAPIKeyError(ConfigError):
    pass


class UnknownModelError(ConfigError):
    pass


class InputError(ValueError):
    """An input item cannot be labelled as given (not a string, empty): the message names the item, `reason`
    says what is wrong with it without the position (for a per-row error column)."""

    def __init__(self, message: str, reason: str | None = None):
        super().__init__(message)
        self.reason = reason or message


class MissingFileError(InputError, FileNotFoundError):
    """A file the user named does not exist."""


class ColumnError(InputError, KeyError):
    """A file lacks a column the user named; the message names the columns it has."""

    def __str__(self) -> str:  # a KeyError would show its message quoted
        return str(self.args[0]) if self.args else ""


class LabellingError(RuntimeError):
    """Some items could not be labelled after retries and re-asks, and no fallback took them.

    `failures` maps item position -> reason; `predictions` holds everything that was labelled (and cached).
    """

    def __init__(self, failures: dict[int, str], texts: Sequence[str], predictions: list):
        self.failures, self.predictions = failures, predictions
        shown = "; ".join(f"item {i} ({texts[i][:40]!r}): {why}" for i, why in list(failures.items())[:5])
        more = f"; and {len(failures) - 5} more" if len(failures) > 5 else ""
        super().__init__(f"{len(failures)} of {len(texts)} items could not be labelled: {shown}{more}")
