"""The labelling pipeline: rows in, one Prediction per row out, in input order, a bounded window of rows at a
time: input checks, then the cache, the method, the fallback and the run report. `Classifier` builds the method
and the pipeline; the pipeline runs it the same way for any method.

Nothing is lost: a row that cannot be labelled comes out as a failed Prediction with its reason, and a run that
must stop (a server that stopped answering, a configuration the server refuses) marks every row it did not ask
"not asked: run stopped (...)" instead of dropping them."""

from __future__ import annotations

import itertools
import logging
import sys
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, replace
from typing import Any

from tqdm.auto import tqdm

from promptclf.cache.answering import answer
from promptclf.cache.store import CacheBackend, CacheError
from promptclf.core import telemetry
from promptclf.core.breaker import CircuitBreaker
from promptclf.core.errors import ConfigError, InputError
from promptclf.core.labels import LabelSet
from promptclf.core.methods import NOT_ASKED, Failure, Method, Prediction
from promptclf.core.usage import Usage

log = logging.getLogger("promptclf")

EMPTY = object()  # an empty row left unlabelled (skip_empty): None in the output, never asked


@dataclass
class ItemCheck:
    """Each item checked before it is asked: a string, not empty (or None under `skip_empty`), cut to
    `max_item_tokens` (by `scorer`'s tokenizer where the method has one, else ~4 characters a token) as
    `truncate` says ("warn", "error", "silent"). An item that cannot be labelled raises InputError."""

    max_item_tokens: int = 2000
    truncate: str = "warn"
    skip_empty: bool = False
    scorer: Any = None

    def all(self, texts) -> list[str | None]:
        """Every item checked (and cut to length) before anything is asked: an InputError names the first that
        cannot be labelled."""
        if isinstance(texts, str):
            raise InputError("texts must be a list of strings, not one string: wrap it as [text]")
        return [self.item(i, text) for i, text in enumerate(texts)]

    def item(self, i: int, text) -> str | None:
        if not isinstance(text, str):
            reason = f"{type(text).__name__} ({text!r:.40}), not a string"
            raise InputError(f"item {i} is {reason}", reason)
        if not text.strip():
            if self.skip_empty:
                return None
            reason = "empty or whitespace-only (pass skip_empty=True to get None for it)"
            raise InputError(f"item {i} is {reason}", reason)
        return self._limit(i, text)

    def row(self, i: int, text):
        """`item` as the pipeline's `prepare`: EMPTY for an item left unlabelled."""
        prepared = self.item(i, text)
        return EMPTY if prepared is None else prepared

    def _limit(self, i: int, text: str) -> str:
        limit, scorer = self.max_item_tokens, self.scorer
        if hasattr(scorer, "count_tokens"):
            over = len(text) > limit and scorer.count_tokens(text) > limit
            cut = (lambda: scorer.truncate(text, limit)) if over else None
        else:
            over = len(text) > 4 * limit
            cut = lambda: text[: 4 * limit]  # noqa: E731
        if not over:
            return text
        if self.truncate == "error":
            reason = f"longer than max_item_tokens={limit}"
            raise InputError(f"item {i} is {reason}", reason)
        if self.truncate == "warn":
            log.warning("promptclf: item %d is longer than %d tokens; truncated", i, limit)
        return cut()


@dataclass
class RunState:
    """Why the run stopped asking, if it did: `reason` for the rows' error column, `error` the exception that
    stopped it (a ConfigError, a CacheError), where one did."""

    breaker: CircuitBreaker
    reason: str | None = None
    error: BaseException | None = None

    def stop(self, reason: str, error: BaseException | None = None) -> None:
        if self.reason is None:
            self.reason, self.error = reason, error
            log.info("promptclf: the run stopped asking: %s", reason)  # callers say it: Classifier.stopped

    @property
    def not_asked(self) -> Failure:
        return Failure(f"not asked: run stopped ({self.reason})")


def _drain(outcomes, interrupt: BaseException) -> None:
    """Throw `interrupt` into the outcomes, and take what they still yield (what is in flight), until it comes back
    out or they end."""
    try:
        outcomes.throw(interrupt)
        for _ in outcomes:
            pass
    except (StopIteration, type(interrupt)):
        pass


class Pipeline:
    """Runs `method` over rows a window at a time."""

    def __init__(
        self,
        method: Method,
        labels: LabelSet,
        cache: CacheBackend | None,
        *,
        fallback: Method | None = None,
        fallback_below: float | None = None,
        window: int = 2000,
        breaker_after: int = 20,
        progress: bool | None = None,
        name: str = "",
    ):
        if window < 1:
            raise ValueError(f"window={window}: at least 1 row")
        self.method, self.labels, self.cache = method, labels, cache
        self.fallback, self.fallback_below = fallback, fallback_below
        self.window, self.breaker_after, self.progress, self.name = window, breaker_after, progress, name
        self.state: RunState | None = None

    def run(
        self, rows: Iterable, usage: Usage, prepare: Callable[[int, object], object], total: int | None = None
    ) -> Iterator[Prediction | None]:
        """One Prediction (or None for an empty row under skip_empty) per row, in order, as windows finish.
        `prepare(i, row)` gives the text to label (cut to length), EMPTY for a row to leave unlabelled, or raises
        InputError for a row that cannot be labelled."""
        self.state = state = RunState(CircuitBreaker(self.breaker_after))
        usage.on_request = state.breaker.record
        usage.span = telemetry.start("promptclf.run", gen_ai__request__model=usage.model)
        if total is None and hasattr(rows, "__len__"):
            total = len(rows)
        bar = tqdm(total=total, disable=not self._show_progress(total), unit="row", desc=self.name, file=sys.stderr)
        failed = rows_done = 0
        try:
            it = iter(rows)
            start = 0
            while window := list(itertools.islice(it, self.window)):
                answered = []  # the bar moves as each answer arrives (a local model's pass takes minutes)
                predictions = self._window(
                    start,
                    window,
                    usage,
                    state,
                    prepare,
                    tick=lambda answered=answered: (answered.append(1), bar.update(1)),
                )
                bar.update(len(window) - len(answered))
                for prediction in predictions:
                    if prediction is not None and prediction.error is not None:
                        failed += 1
                        bar.set_postfix(failed=failed, refresh=False)
                    rows_done += 1
                    yield prediction
                start += len(window)
        finally:
            usage.on_request = None
            bar.close()
            telemetry.end(
                usage.span,
                promptclf__items=rows_done,
                promptclf__cache_hits=usage.cache_hits,
                promptclf__failed=failed,
                promptclf__requests=usage.requests,
                promptclf__retries=usage.retries,
                promptclf__reasks=usage.reasks,
                gen_ai__usage__input_tokens=usage.prompt_tokens,
                gen_ai__usage__output_tokens=usage.completion_tokens,
                promptclf__stopped=state.reason,
            )

    def _window(self, start: int, rows: list, usage: Usage, state: RunState, prepare, tick) -> list[Prediction | None]:
        prepared, bad = [], {}
        for offset, row in enumerate(rows):
            try:
                prepared.append(prepare(start + offset, row))
            except InputError as exc:
                prepared.append(EMPTY)
                bad[offset] = f"input: {exc.reason}"
        unique = list(dict.fromkeys(t for t in prepared if t is not EMPTY))
        results = self._answer(unique, usage, state, tick)
        out: list[Prediction | None] = []
        for offset, text in enumerate(prepared):
            if offset in bad:
                out.append(Prediction.failed(bad[offset]))
            elif text is EMPTY:
                out.append(None)
            else:
                outcome = results[text]
                out.append(outcome if isinstance(outcome, Prediction) else Prediction.failed(outcome.reason))
        return out

    def _answer(self, unique: list[str], usage: Usage, state: RunState, tick) -> dict:
        """Each text's outcome: cache, method, then the fallback for what failed or was below fallback_below;
        `tick()` as each answer arrives."""
        results = self._ask(unique, usage, state, tick) if state.reason is None else {}
        for text in unique:
            results.setdefault(text, state.not_asked)
        if self.fallback_below is not None:
            for text, outcome in results.items():
                if (
                    isinstance(outcome, Prediction)
                    and outcome.confidence is not None
                    and outcome.confidence < self.fallback_below
                ):
                    results[text] = Failure(f"confidence {outcome.confidence:.2f} below {self.fallback_below}")
        failed = [text for text, outcome in results.items() if isinstance(outcome, Failure)]
        if failed and self.fallback is not None:
            results.update(self._fall_back(failed, usage))
        return results

    def _ask(self, unique: list[str], usage: Usage, state: RunState, tick) -> dict:
        results: dict = {}
        outcomes = answer(self.method, unique, usage, self.cache, self.labels)
        try:
            for pos, outcome in outcomes:  # a tripped breaker stops the method asking; what is in flight lands
                results[unique[pos]] = outcome
                tick()
            if state.breaker.tripped:
                state.stop(state.breaker.reason)
        except (ConfigError, CacheError) as exc:  # the method cannot go on; the rows not answered say why
            state.stop(str(exc), exc)
        except KeyboardInterrupt as interrupt:  # Ctrl-C landed here, not in the method: it lands its requests
            _drain(outcomes, interrupt)  # in flight (cached as they come) before the run stops
            raise
        finally:
            outcomes.close()  # a stopped run asks nothing more; what came back is cached
        if state.reason is not None:  # a method stopped by the breaker says "not asked"; here it says why
            results = {
                t: state.not_asked if isinstance(o, Failure) and o.reason == NOT_ASKED else o
                for t, o in results.items()
            }
        elif len(results) < len(unique):
            raise RuntimeError(
                f"{type(self.method).__name__} gave no outcome for {len(unique) - len(results)} of "
                f"{len(unique)} items: every item must get a Prediction or a Failure"
            )
        return results

    def _fall_back(self, texts: list[str], usage: Usage) -> dict[str, Prediction]:
        routed = {}
        for pos, outcome in self.fallback.predict(texts, Usage()):
            if isinstance(outcome, Prediction):
                routed[texts[pos]] = replace(outcome, source="fallback")
        usage.add(fallback=len(routed))
        return routed

    def _show_progress(self, total: int | None) -> bool:
        if self.progress is not None:
            return bool(self.progress) and total != 0
        return (total is None or total >= 20) and sys.stderr.isatty()
