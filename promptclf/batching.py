"""Batch labelling with a chat model: several items per request, many requests in flight, retries,
and re-asking (in smaller batches, down to single items) whatever an answer got wrong."""

from __future__ import annotations

import logging
import threading
from concurrent.futures import ThreadPoolExecutor, as_completed, wait
from typing import Iterator, Sequence

from langchain_core.exceptions import OutputParserException
from langchain_core.language_models import BaseChatModel
from langchain_core.output_parsers import PydanticOutputParser

from .backends import call, describe_error, is_request_error, is_transient, speaks_json_schema
from .labels import LabelSet
from .methods import Failure, Outcome, Prediction
from .prompts import ChatPrompt
from .schemas import BatchResult, batch_schema, item_ids, read_batch
from .usage import Usage

log = logging.getLogger("promptclf")

STRUCTURED_MODES = ("auto", "json_schema", "function_calling", "json_mode", "parser")


class ChatLabeler:
    """Zero-shot, few-shot or optimised-prompt labelling through a LangChain chain: prompt | chat model.

    `structured`: "json_schema" / "function_calling" / "json_mode" use the backend's native structured
    output (`with_structured_output`); "parser" puts a PydanticOutputParser's format instructions in the
    prompt; "auto" picks json_schema for OpenAI's own API and the parser for every other backend (which
    may not take a JSON-schema response_format). Either way an off-schema answer is repaired (aliases) or
    re-asked, never guessed.
    """

    cacheable = True

    def __init__(self, llm: BaseChatModel, labels: LabelSet, prompt: ChatPrompt, *, model_id: str,
                 example_selector=None, batch_size: int = 10, concurrency: int = 4, max_attempts: int = 6,
                 max_wait: float = 30.0, max_reasks: int = 2, structured: str = "auto"):
        if structured not in STRUCTURED_MODES:
            raise ValueError(f"structured={structured!r}: choose one of {STRUCTURED_MODES}")
        if batch_size < 1 or concurrency < 1:
            raise ValueError("batch_size and concurrency must be at least 1")
        self.llm, self.labels, self.prompt, self.model_id = llm, labels, prompt, model_id
        self.example_selector = example_selector
        self.batch_size, self.concurrency = batch_size, concurrency
        self.max_attempts, self.max_wait, self.max_reasks = max_attempts, max_wait, max_reasks
        if structured == "auto":
            structured = "json_schema" if speaks_json_schema(llm) else "parser"
        self.structured = structured
        self.schema = batch_schema(labels)
        self.parser = PydanticOutputParser(pydantic_object=self.schema)
        self.chain = self._chain()

    def _chain(self):
        if self.structured == "parser":
            return self.prompt.runnable(with_format_instructions=True) | self.llm
        # A JSON-schema dict, not the Pydantic class: the client would raise on an off-set label before we
        # could repair or re-ask it; we validate the payload ourselves (schemas.read_batch).
        return self.prompt.runnable() | self.llm.with_structured_output(
            self.schema.model_json_schema(), method=self.structured, include_raw=True
        )

    @property
    def identity(self) -> str:
        selector = self.example_selector.fingerprint() if self.example_selector else None
        return f"chat|{self.model_id}|{self.prompt.fingerprint}|{selector}|{self.structured}"

    # --- one request --------------------------------------------------------------------------------

    def _variables(self, batch: list[tuple[int, str]]) -> dict:
        examples = self.example_selector.select([t for _, t in batch]) if self.example_selector else None
        variables = self.prompt.variables_for(batch, examples)
        if self.structured == "parser":
            variables["format_instructions"] = self.parser.get_format_instructions()
        return variables

    def _ask(self, batch: list[tuple[int, str]], usage: Usage, stop: threading.Event) -> BatchResult:
        """One request for a batch of (item id, text); retried on transient errors."""
        ids = [i for i, _ in batch]
        variables = self._variables(batch)
        hint = f"structured={self.structured!r} asks for what this server does not take: use structured='parser'"
        response = call(lambda: self.chain.invoke(variables), usage, where=self.model_id,
                        max_attempts=self.max_attempts, max_wait=self.max_wait, stop=stop, unsupported_hint=hint)
        raw, payload = self._unpack(response)
        meta = getattr(raw, "usage_metadata", None) or {}
        usage.add(prompt_tokens=meta.get("input_tokens", 0), completion_tokens=meta.get("output_tokens", 0))
        result = read_batch(payload, self.labels, ids)
        usage.add(repaired=result.repaired)
        return result

    def _unpack(self, response):
        """(raw message, best payload to read answers from) for either chain shape."""
        if self.structured == "parser":
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

    def _label_chunk(self, chunk: list[tuple[int, str]], usage: Usage, stop: threading.Event,
                     alone: int = 0) -> list[tuple[int, Outcome]]:
        """Label a chunk of (position, text). What the answer got wrong is re-asked in halves, then alone.
        Nothing is asked once `stop` is set."""
        if stop.is_set():
            return []
        by_id = dict(zip(item_ids(len(chunk)), chunk))
        try:
            result = self._ask([(i, text) for i, (_, text) in by_id.items()], usage, stop)
        except Exception as exc:  # noqa: BLE001
            if is_transient(exc):  # retries are spent: the backend is down, splitting would not help
                return [(pos, Failure(describe_error(exc))) for pos, _ in chunk]
            if not is_request_error(exc):
                raise
            result = BatchResult(failed={i: describe_error(exc) for i in by_id})
        outcomes = [(by_id[i][0], Prediction(label)) for i, label in result.labels.items()]
        failed = [item for i, item in by_id.items() if i in result.failed]
        if not failed:
            return outcomes
        if len(chunk) == 1:
            if alone >= self.max_reasks:
                return [(chunk[0][0], Failure(next(iter(result.failed.values()))))]
            usage.add(reasks=1)
            return self._label_chunk(chunk, usage, stop, alone + 1)
        usage.add(reasks=len(failed))
        half = (len(failed) + 1) // 2
        for start in range(0, len(failed), half):
            outcomes += self._label_chunk(failed[start : start + half], usage, stop)
        return outcomes

    def predict(self, texts: Sequence[str], usage: Usage) -> Iterator[tuple[int, Outcome]]:
        items = list(enumerate(texts))
        chunks = [items[s : s + self.batch_size] for s in range(0, len(items), self.batch_size)]
        stop = threading.Event()
        if self.concurrency == 1 or len(chunks) == 1:
            for chunk in chunks:
                yield from self._label_chunk(chunk, usage, stop)
            return
        yield from self._in_parallel(chunks, usage, stop)

    def _in_parallel(self, chunks, usage: Usage, stop: threading.Event) -> Iterator[tuple[int, Outcome]]:
        """Chunks on `concurrency` threads. On Ctrl-C or an error no request starts any more; the ones in
        flight finish and their answers are handed on (and so cached) before the exception is."""
        pool = ThreadPoolExecutor(max_workers=self.concurrency, thread_name_prefix="promptclf")

        def run(chunk):
            try:
                return self._label_chunk(chunk, usage, stop)
            except BaseException:
                stop.set()  # before this thread takes the next chunk
                raise

        futures = [pool.submit(run, chunk) for chunk in chunks]
        handed = set()
        try:
            for future in as_completed(futures):
                handed.add(future)
                yield from future.result()
        except GeneratorExit:  # the caller stopped listening: nothing more can be handed on
            raise
        except BaseException:
            stop.set()
            yield from _answers_in_flight(futures, handed)
            raise
        finally:
            stop.set()
            pool.shutdown(wait=False, cancel_futures=True)


def _answers_in_flight(futures, handed) -> Iterator[tuple[int, Outcome]]:
    """The labels of chunks that were running when the run stopped, once their requests have returned."""
    for future in futures:
        future.cancel()  # those not started
    wait(futures)
    for future in futures:
        if future not in handed and not future.cancelled() and future.exception() is None:
            yield from ((pos, o) for pos, o in future.result() if isinstance(o, Prediction))
