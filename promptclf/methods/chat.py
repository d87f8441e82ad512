"""Batch labelling with a chat model: several items per request, many requests in flight, retries,
and re-asking (in smaller batches, down to single items) whatever an answer got wrong."""

from __future__ import annotations

import logging
import re
import threading
from collections.abc import Iterator, Sequence
from concurrent.futures import ThreadPoolExecutor, as_completed

from langchain_core.exceptions import OutputParserException
from langchain_core.language_models import BaseChatModel
from langchain_core.output_parsers import PydanticOutputParser

from promptclf.core import telemetry
from promptclf.core.credentials import is_openai
from promptclf.core.identity import method_identity
from promptclf.core.labels import LabelSet
from promptclf.core.methods import NOT_ASKED, Failure, Outcome, Prediction
from promptclf.core.usage import Usage
from promptclf.methods.chat_logprobs import label_confidences
from promptclf.methods.chat_requests import answer_of, request_body, send, sends_directly
from promptclf.methods.endpoints import endpoint, served_models
from promptclf.methods.requests import (
    Refusal,
    RefusedRequest,
    call,
    describe_error,
    is_request_error,
    is_transient,
    retrying,
)
from promptclf.task.prompts import ChatPrompt
from promptclf.task.schemas import BatchResult, batch_schema, item_ids, read_batch

log = logging.getLogger("promptclf")

STRUCTURED_MODES = ("auto", "json_schema", "function_calling", "json_mode", "parser")
FALLBACK_ORDER = ("json_schema", "function_calling", "json_mode", "parser")  # what "auto" tries, in order
# Models whose chat template has no system role: Gemma's drops it (llama.cpp's gemma format silently).
NO_SYSTEM_ROLE = re.compile(r"gemma", re.I)
# Reasoning models spend hidden tokens from the same budget: a bound sized for the answer would starve them.
REASONING = re.compile(r"^(o\d|gpt-5)", re.I)


def answer_budget(batch_size: int, labels: LabelSet, multi_label: bool = False) -> int:
    """max_tokens for a batch's answer: about 30 tokens per answer object (its id, keys, punctuation and the
    whitespace of pretty-printed JSON) plus one per character of the longest label, and 50 for the rest;
    430 for 10 items with AG News labels. Without a bound llama.cpp writes until its context is full.
    Multi-label: room for every label in every answer (each name, its quotes and comma)."""
    if multi_label:
        return 50 + batch_size * (30 + sum(len(name) + 4 for name in labels.names))
    return 50 + batch_size * (30 + max(len(name) for name in labels.names))


def _openai_family(llm) -> bool:
    from langchain_openai.chat_models.base import BaseChatOpenAI

    return isinstance(llm, BaseChatOpenAI)


class ChatLabeler:
    """Zero-shot, few-shot or optimised-prompt labelling through a LangChain chain: prompt | chat model.

    `structured`: "json_schema" / "function_calling" / "json_mode" use the backend's native structured
    output (`with_structured_output`); "parser" puts a PydanticOutputParser's format instructions in the
    prompt; "auto" tries them in that order (FALLBACK_ORDER) on OpenAI-compatible backends, moving to the
    next once a server refuses one (a 400/422 about it, or a 500 validation error as llama.cpp gives) and
    remembering that for the endpoint while the process lives; any other chat model gets the parser. Either
    way an off-schema answer is repaired (aliases) or re-asked, never guessed.

    `system_in_user`: put the system text at the top of the user turn (True), keep a system message
    (False), or "auto": True where the model's name, or a model the server lists at /models, is a Gemma.
    `logprobs`: ask OpenAI-compatible backends for token logprobs and give each answer the probability of
    its label's tokens as its confidence (see chat_logprobs); where none come back, say so once and leave it
    empty. Every request carries max_tokens (answer_budget) unless the chat model sets its own.
    """

    cacheable = True

    def __init__(
        self,
        llm: BaseChatModel,
        labels: LabelSet,
        prompt: ChatPrompt,
        *,
        model_id: str,
        example_selector=None,
        batch_size: int = 10,
        concurrency: int = 4,
        max_attempts: int = 6,
        max_wait: float = 30.0,
        max_reasks: int = 4,
        structured: str = "auto",
        system_in_user: bool | str = "auto",
        logprobs: bool = True,
        multi_label: bool = False,
    ):
        if structured not in STRUCTURED_MODES:
            raise ValueError(f"structured={structured!r}: choose one of {STRUCTURED_MODES}")
        if system_in_user not in (True, False, "auto"):
            raise ValueError(f"system_in_user={system_in_user!r}: choose True, False or 'auto'")
        if batch_size < 1 or concurrency < 1:
            raise ValueError("batch_size and concurrency must be at least 1")
        self.llm, self.labels, self.prompt, self.model_id = llm, labels, prompt, model_id
        self.example_selector = example_selector
        self.batch_size, self.concurrency = batch_size, concurrency
        self.max_attempts, self.max_wait, self.max_reasks = max_attempts, max_wait, max_reasks
        self.requested = structured
        if structured != "auto":
            self.candidates: tuple[str, ...] = (structured,)
        elif _openai_family(llm):
            self.candidates = FALLBACK_ORDER
        else:
            self.candidates = ("parser",)  # a chat model of another kind may take none of these natively
        self.multi_label = multi_label
        # Multi-label answers carry no confidence: a label set's is not one token's probability.
        self.logprobs = logprobs and _openai_family(llm) and not multi_label
        # answers cached without logprobs carry no confidence: not the same answers as those asked with them
        self._without_logprobs = ("no-logprobs",) if not logprobs and _openai_family(llm) and not multi_label else ()
        self._system_in_user = system_in_user
        self.max_tokens = answer_budget(batch_size, labels, multi_label)
        self.endpoint = endpoint(f"chat|{model_id}")
        self.schema = batch_schema(labels, multi_label)
        self.parser = PydanticOutputParser(pydantic_object=self.schema)
        self._chains: dict = {}
        if structured not in ("auto", "parser"):  # a mode this chat model cannot take is an error now, not mid-run
            llm.with_structured_output(self.schema.model_json_schema(), method=structured, include_raw=True)

    @property
    def structured(self) -> str:
        """The structured-output mode requests use now: the first candidate this endpoint has not refused."""
        with self.endpoint.lock:
            left = [m for m in self.candidates if m not in self.endpoint.refused_modes]
        return left[0] if left else self.candidates[-1]

    @property
    def system_in_user(self) -> bool:
        """Whether requests put the system text at the top of the user turn. "auto": where the model's name
        is a Gemma's (NO_SYSTEM_ROLE); else, on a self-hosted server, where the one model it lists at /models
        is (asked at the first request, see _listed_without_system_role)."""
        if self._system_in_user != "auto":
            return self._system_in_user
        return self._named_without_system_role() or (
            self._listing_base() is not None and self._listed_without_system_role()
        )

    def _layout_key(self) -> tuple:
        """What the cache key says of system_in_user, from the option, the model's name and the capability table
        alone (no request): answers must never move to another key because a listing did or did not come back.
        Where the server's listing decides the layout, the key names that rule; the same server lists the same
        model, so the rule gives the same layout every time it is applied."""
        if self._system_in_user != "auto":
            return ("system-in-user",) if self._system_in_user else ()
        if self._named_without_system_role():
            return ("system-in-user",)
        return ("system-in-user-if-listed",) if self._listing_base() is not None else ()

    def _named_without_system_role(self) -> bool:
        name = str(getattr(self.llm, "model_name", None) or getattr(self.llm, "model", None) or "")
        return NO_SYSTEM_ROLE.search(name) is not None

    def _listing_base(self) -> str | None:
        """The base URL of a self-hosted server whose /models listing can name the model that answers (a
        llama.cpp server answers to any model name; its listing names the GGUF file); None elsewhere."""
        from langchain_openai import ChatOpenAI

        base = getattr(self.llm, "openai_api_base", None)
        return base if type(self.llm) is ChatOpenAI and base and not is_openai(base) else None

    def _listed_without_system_role(self) -> bool:
        """Whether the one model the server lists is a Gemma. One model listed is the one that answers
        (llama.cpp serves one, whatever name is asked for); a server listing many (vLLM, Ollama) answers only to
        the name asked. A listing that does not come back is retried as a request would be, then fails the
        request it came before (a ConnectionError): no answer is rendered on a guess."""
        secret = getattr(self.llm, "openai_api_key", None)
        key = secret.get_secret_value() if hasattr(secret, "get_secret_value") else None
        for attempt in retrying(self.max_attempts, max_wait=self.max_wait):
            with attempt:
                served = served_models(self._listing_base(), key, self.endpoint)
        return len(served) == 1 and NO_SYSTEM_ROLE.search(served[0]) is not None

    def _chain(self, mode: str, logprobs: bool):
        """prompt | chat model for a structured mode, built once per (mode, logprobs)."""
        key = (mode, logprobs)
        if key not in self._chains:
            llm = self._configured(logprobs)
            prompt = self.prompt.runnable(with_format_instructions=mode == "parser", system_in_user=self.system_in_user)
            # A JSON-schema dict, not the Pydantic class: the client would raise on an off-set label before we
            # could repair or re-ask it; we validate the payload ourselves (schemas.read_batch).
            self._chains[key] = (
                prompt | llm
                if mode == "parser"
                else prompt | llm.with_structured_output(self.schema.model_json_schema(), method=mode, include_raw=True)
            )
        return self._chains[key]

    def _configured(self, logprobs: bool):
        """The chat model with a bounded answer length and, if asked, token logprobs (OpenAI-compatible
        backends only; another chat model is used as it was given)."""
        llm = self.llm
        if not _openai_family(llm):
            return llm
        from langchain_openai import ChatOpenAI

        update: dict = {}
        if logprobs:
            update.update(logprobs=True, top_logprobs=min(20, max(5, len(self.labels) + 1)))
        if llm.max_tokens is None and not REASONING.match(str(llm.model_name)):
            base = getattr(llm, "openai_api_base", None)
            if type(llm) is ChatOpenAI and base and not is_openai(base):
                # ChatOpenAI sends the bound as max_completion_tokens, which llama-cpp-python's server ignores
                update["extra_body"] = {**(llm.extra_body or {}), "max_tokens": self.max_tokens}
            else:
                update["max_tokens"] = self.max_tokens
        return llm.model_copy(update=update) if update else llm

    @property
    def identity(self) -> str:
        return self._identity(self._without_logprobs)

    @property
    def identity_without_confidence(self) -> str | None:
        """Where an answer that came back without logprobs is cached, when logprobs were asked for: under the
        key of answers asked without them, not under the one that promises a confidence."""
        return self._identity(("no-logprobs",)) if self.logprobs else None

    def _identity(self, logprobs_key: tuple) -> str:
        selector = self.example_selector.fingerprint() if self.example_selector else None
        # "auto" is keyed by the first mode it tries: what it falls back to is fixed by the server it asks.
        multi = ("multi-label",) if self.multi_label else ()
        return method_identity(
            "chat",
            self.model_id,
            self.prompt.fingerprint,
            selector,
            self.candidates[0],
            *self._layout_key(),
            *multi,
            *logprobs_key,
        )

    # --- one request --------------------------------------------------------------------------------

    def _variables(self, batch: list[tuple[int, str]], mode: str) -> dict:
        examples = self.example_selector.select([t for _, t in batch]) if self.example_selector else None
        variables = self.prompt.variables_for(batch, examples)
        if mode == "parser":
            variables["format_instructions"] = self.parser.get_format_instructions()
        return variables

    def _ask(self, batch: list[tuple[int, str]], usage: Usage, stop: threading.Event) -> BatchResult:
        """One request for a batch of (item id, text); retried on transient errors, and asked again in
        another form once if the server refuses this one and another can be tried."""
        with telemetry.span(
            f"chat {self.model_id}",
            parent=usage.span,
            gen_ai__operation__name="chat",
            gen_ai__request__model=self.model_id,
            promptclf__items=len(batch),
        ) as span:
            response, mode, logprobs = self._send(batch, usage, stop)
            payload, tokens, counts = self._read(response, mode)
            usage.add(**counts)
            result = read_batch(payload, self.labels, [i for i, _ in batch], self.multi_label)
            usage.add(repaired=result.repaired)
            if logprobs and result.labels:
                self._add_confidence(result, tokens, mode)
            telemetry.set_attributes(
                span,
                gen_ai__usage__input_tokens=counts["prompt_tokens"],
                gen_ai__usage__output_tokens=counts["completion_tokens"],
                promptclf__answered=len(result.labels),
                promptclf__structured=mode,
            )
        return result

    def _send(self, batch: list[tuple[int, str]], usage: Usage, stop: threading.Event):
        """(response, structured mode, logprobs asked) of the request that got through."""
        while True:
            mode, logprobs = self.structured, self.logprobs and not self.endpoint.logprobs_refused
            request = self._request(batch, mode, logprobs)
            if stop.is_set():  # stopped while the request was built (a first request may list /models first)
                raise StoppedBeforeAsking
            try:
                response = call(
                    request,
                    usage,
                    where=self.model_id,
                    max_attempts=self.max_attempts,
                    max_wait=self.max_wait,
                    stop=stop,
                    unsupported_hint=self._hint(mode),
                )
                break
            except RefusedRequest as refused:
                if not self._adapt(refused.refusal, mode, logprobs):
                    raise
        with self.endpoint.lock:
            self.endpoint.settled = True
        return response, mode, logprobs

    def request_body(self, batch: list[tuple[int, str]], mode: str, logprobs: bool) -> dict:
        """The JSON body of the request for a batch of (item id, text), for an OpenAI-style chat model (see
        chat_requests): what the interactive path sends, and what a batch API's request file holds."""
        prompt = self.prompt.runnable(with_format_instructions=mode == "parser", system_in_user=self.system_in_user)
        messages = prompt.invoke(self._variables(batch, mode)).to_messages()
        top = min(20, max(5, len(self.labels) + 1)) if logprobs else None
        bound = None if REASONING.match(str(self.llm.model_name)) else self.max_tokens
        return request_body(
            self.llm, messages, mode, self.schema.model_json_schema(), top_logprobs=top, max_tokens=bound
        )

    def _request(self, batch: list[tuple[int, str]], mode: str, logprobs: bool):
        """The call that asks for a batch: straight through the chat model's openai client where it has one,
        else through the LangChain chain."""
        if sends_directly(self.llm):
            body = self.request_body(batch, mode, logprobs)
            return lambda: send(self.llm, body)
        chain, variables = self._chain(mode, logprobs), self._variables(batch, mode)
        return lambda: chain.invoke(variables)

    def _read(self, response, mode: str) -> tuple[object, list | None, dict]:
        """(payload to read answers from, the answer's token logprobs, token counts) of either kind of response."""
        if isinstance(response, dict):  # the openai client's JSON (chat_requests.send)
            payload, tokens, used = answer_of(response)
            return (
                payload,
                tokens,
                {
                    "prompt_tokens": used.get("prompt_tokens") or 0,
                    "completion_tokens": used.get("completion_tokens") or 0,
                },
            )
        raw, payload = self._unpack(response, mode)
        meta = getattr(raw, "usage_metadata", None) or {}
        tokens = ((getattr(raw, "response_metadata", None) or {}).get("logprobs") or {}).get("content")
        return (
            payload,
            tokens,
            {"prompt_tokens": meta.get("input_tokens", 0), "completion_tokens": meta.get("output_tokens", 0)},
        )

    def _hint(self, mode: str) -> str:
        if self.requested == "auto" and mode == self.candidates[-1]:
            return "the server refused every structured-output mode: see its log for why"
        return (
            f"structured={mode!r} asks for what this server does not take: try structured='auto', which "
            f"falls back through {', '.join(FALLBACK_ORDER)}, or structured='parser'"
        )

    def _adapt(self, refused: Refusal, mode: str, asked_logprobs: bool) -> bool:
        """After a refusal, stop asking for what was refused if something else can be asked: logprobs, or
        (with "auto") the structured mode. Remembered for the endpoint; False when nothing is left to try."""
        with self.endpoint.lock:
            if asked_logprobs and refused.feature == "logprobs":
                said, self.endpoint.logprobs_missing_said = self.endpoint.logprobs_missing_said, True
                self.endpoint.logprobs_refused = True
                if not said:
                    log.warning(
                        "promptclf: %s refused token logprobs (%s %s): its answers carry no confidence "
                        "and fallback_below does not apply to them",
                        self.model_id,
                        refused.status,
                        refused.reason,
                    )
                return True
            if self.requested != "auto":
                return False
            left = [m for m in self.candidates if m not in self.endpoint.refused_modes and m != mode]
            if not left:
                return False
            first = mode not in self.endpoint.refused_modes
            self.endpoint.refused_modes.add(mode)
        if first:
            log.warning(
                "promptclf: %s refused structured=%r (%s %s); using structured=%r for this server from now on",
                self.model_id,
                mode,
                refused.status,
                refused.reason,
                left[0],
            )
        return True

    def _add_confidence(self, result: BatchResult, content: list | None, mode: str) -> None:
        if not content:
            with self.endpoint.lock:
                said, self.endpoint.logprobs_missing_said = self.endpoint.logprobs_missing_said, True
            if not said:
                log.warning(
                    "promptclf: %s returned no token logprobs with structured=%r: its answers carry no "
                    "confidence and fallback_below does not apply to them",
                    self.model_id,
                    mode,
                )
            return
        for item, (confidence, scores) in label_confidences(content, self.labels, result.labels).items():
            result.confidence[item], result.scores[item] = confidence, scores

    def _unpack(self, response, mode: str):
        """(raw message, best payload to read answers from) for either chain shape."""
        if mode == "parser":
            try:
                return response, self.parser.parse(response.content)
            except OutputParserException:
                return response, response.content
        raw = response["raw"]
        if response.get("parsed") is not None:
            return raw, response["parsed"]
        if getattr(raw, "tool_calls", None):
            return raw, raw.tool_calls[0]["args"]
        return raw, raw.content

    # --- a chunk, with re-asks ----------------------------------------------------------------------

    def _label_chunk(
        self, chunk: list[tuple[int, str]], usage: Usage, stop: threading.Event, budget: ReaskBudget, asks: int = 0
    ) -> list[tuple[int, Outcome]]:
        """Label a chunk of (position, text), its items asked `asks` times before. What the answer got wrong is
        asked again, in halves, until each item was asked 1 + max_reasks times or the run's re-ask budget is spent.
        Once `stop` is set nothing is asked: the chunk's items fail as not asked."""
        if stop.is_set():
            return [(pos, Failure(NOT_ASKED)) for pos, _ in chunk]
        by_id = dict(zip(item_ids(len(chunk)), chunk))
        try:
            result = self._ask([(i, text) for i, (_, text) in by_id.items()], usage, stop)
        except StoppedBeforeAsking:
            return [(pos, Failure(NOT_ASKED)) for pos, _ in chunk]
        except Exception as exc:  # noqa: BLE001
            if stop.is_set() and is_transient(exc):  # interrupted while waiting to retry
                return [(pos, Failure(NOT_ASKED)) for pos, _ in chunk]
            if usage.request_done(False, describe_error(exc)):
                stop.set()  # the run's breaker tripped: nothing more is asked
            if is_transient(exc):  # retries are spent: the backend is down, splitting would not help
                return [
                    (pos, Failure(f"no answer after {self.max_attempts} attempts: {describe_error(exc)}"))
                    for pos, _ in chunk
                ]
            if not is_request_error(exc):
                raise
            result = BatchResult(failed={i: describe_error(exc) for i in by_id})
        else:
            if usage.request_done(
                bool(result.labels), None if result.labels else next(iter(result.failed.values()), None)
            ):
                stop.set()
        outcomes = [(by_id[i][0], self._prediction(label, result, i)) for i, label in result.labels.items()]
        failed = [(item, result.failed[i]) for i, item in by_id.items() if i in result.failed]
        if not failed:
            return outcomes
        asks += 1
        halves = (
            [failed]
            if asks == 1 or len(failed) == 1
            else [failed[: (len(failed) + 1) // 2], failed[(len(failed) + 1) // 2 :]]
        )
        for part in halves:
            if asks > self.max_reasks or (not stop.is_set() and not budget.take()):
                outcomes += [(pos, Failure(f"no answer after {asks} asks: {why}")) for (pos, _), why in part]
            elif stop.is_set():
                outcomes += [(pos, Failure(NOT_ASKED)) for (pos, _), _ in part]
            else:
                usage.add(reasks=len(part))
                outcomes += self._label_chunk([item for item, _ in part], usage, stop, budget, asks)
        return outcomes

    def _prediction(self, label, result: BatchResult, i: int) -> Prediction:
        if self.multi_label:
            from promptclf.core.multilabel import multi_prediction

            return multi_prediction(label, source="api")
        return Prediction(label, result.confidence.get(i), "api", scores=result.scores.get(i))

    def predict(self, texts: Sequence[str], usage: Usage) -> Iterator[tuple[int, Outcome]]:
        items = list(enumerate(texts))
        chunks = [items[s : s + self.batch_size] for s in range(0, len(items), self.batch_size)]
        stop = threading.Event()
        budget = ReaskBudget(first_requests=len(chunks))
        if self.concurrency == 1 or len(chunks) == 1:
            try:
                for chunk in chunks:
                    yield from self._label_chunk(chunk, usage, stop, budget)
            finally:
                stop.set()
            return
        yield from self._in_parallel(chunks, usage, stop, budget)

    def _in_parallel(
        self, chunks, usage: Usage, stop: threading.Event, budget: ReaskBudget
    ) -> Iterator[tuple[int, Outcome]]:
        """Chunks on `concurrency` threads. On Ctrl-C or an error no request starts any more; the ones in
        flight finish and their answers are handed on (and so cached) before the exception is. A server not
        asked yet gets the first chunk alone: what it refuses is learnt on one request, not on `concurrency`."""
        pool = ThreadPoolExecutor(max_workers=self.concurrency, thread_name_prefix="promptclf")
        labelled: dict[int, list] = {}  # chunk number -> its outcomes, kept by the thread that labelled it

        def run(k: int, chunk) -> int:
            try:
                labelled[k] = self._label_chunk(chunk, usage, stop, budget)
                return k
            except BaseException:
                stop.set()  # before this thread takes the next chunk
                raise

        numbered = list(enumerate(chunks))
        waves = [numbered[:1], numbered[1:]] if not self.endpoint.settled else [numbered]
        handed: dict[int, int] = {}  # chunk number -> how many of its outcomes the caller has had
        try:
            for wave in waves:
                started = [pool.submit(run, k, chunk) for k, chunk in wave]
                for future in as_completed(started):
                    k = future.result()
                    handed[k] = 0
                    for outcome in labelled[k]:
                        try:
                            yield outcome
                        finally:  # counted once the caller has it: Ctrl-C thrown in at the yield included
                            handed[k] += 1
        except GeneratorExit:  # the caller stopped listening: nothing more can be handed on
            raise
        except BaseException:
            # Ctrl-C or an error, wherever it landed: no chunk starts any more, the ones running finish, and
            # what they answered reaches the caller (the cache) before the exception goes on. The threads keep
            # their chunks' outcomes themselves, so no answer depends on where the main thread was.
            stop.set()
            pool.shutdown(wait=True, cancel_futures=True)
            yield from _answers_not_handed(labelled, handed)
            raise
        finally:
            stop.set()
            pool.shutdown(wait=False, cancel_futures=True)


class StoppedBeforeAsking(Exception):
    """The run stopped (Ctrl-C, the breaker) after a request was built and before it was sent."""


class ReaskBudget:
    """Re-asks for one `predict`: at most as many re-ask requests as first requests, plus FLOOR so that a small
    run can still mend its answers on a flaky server. On a big run, a server that answers nothing usable costs at
    most about twice the requests a good one does, instead of halving every batch down to single items."""

    FLOOR = 16

    def __init__(self, first_requests: int):
        self.left = first_requests + self.FLOOR
        self._lock = threading.Lock()

    def take(self) -> bool:
        with self._lock:
            if self.left <= 0:
                return False
            self.left -= 1
            return True


def _answers_not_handed(labelled: dict[int, list], handed: dict[int, int]) -> Iterator[tuple[int, Outcome]]:
    """The labels the caller has not had yet when the run stopped: of chunks that were running, and the rest of a
    chunk it was being handed."""
    for k in sorted(labelled):
        yield from ((pos, o) for pos, o in labelled[k][handed.get(k, 0) :] if isinstance(o, Prediction))
