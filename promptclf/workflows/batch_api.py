"""The providers' batch APIs (OpenAI's, Together's): the interactive path's batched prompts at half the price.

`BatchJob.submit` builds the requests the interactive ChatLabeler would send (same messages, same structured-
output parameters), uploads them as JSONL and creates the batches, writing a manifest (batch ids, and which
items each request holds) after each one, before any polling. `BatchJob.load(manifest)` resumes: `status`,
`wait`, `collect`. `collect` stores every answer that passes the interactive path's validation
(schemas.read_batch) in the answer cache, then runs `Classifier.predict`: the cache answers what the batch did,
and the interactive path re-asks the rest (failed lines, off-schema answers, an expired batch's missing lines).
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import time
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path
from typing import Sequence

import httpx
import openai

from promptclf.cache.store import answer_key, home
from promptclf.core.credentials import api_key, key_variable, redact_url
from promptclf.core.errors import ConfigError
from promptclf.core.methods import Prediction
from promptclf.core.model_spec import ModelSpec
from promptclf.core.usage import Usage
from promptclf.methods.chat_logprobs import label_confidences
from promptclf.methods.requests import configuration_problem, describe_error
from promptclf.task.schemas import item_ids, read_batch

log = logging.getLogger("promptclf")

BATCH_DISCOUNT = 0.5  # both providers bill batch tokens at half the interactive price
ENDPOINT = "/v1/chat/completions"
FINISHED = ("completed", "failed", "expired", "cancelled")
TOGETHER_URL = "https://api.together.xyz/v1"
MANIFEST_VERSION = 1


class BatchError(RuntimeError):
    """A batch API call failed for a reason that is not the configuration (see backends.configuration_problem)."""


@dataclass(frozen=True)
class Dialect:
    """What differs between providers: the line format, the upload purpose, the limits per file."""

    name: str
    purpose: str
    max_requests: int
    max_bytes: int

    def line(self, custom_id: str, body: dict) -> dict:
        if self.name == "together":
            return {"custom_id": custom_id, "body": body}
        return {"custom_id": custom_id, "method": "POST", "url": ENDPOINT, "body": body}


DIALECTS = {"openai": Dialect("openai", "batch", 50_000, 200 * 1024 * 1024),
            "together": Dialect("together", "batch-api", 50_000, 100 * 1024 * 1024)}


def dialect_of(provider: str) -> Dialect:
    return DIALECTS["together" if provider == "together" else "openai"]


def request_key(keys: list[str]) -> str:
    """A request's custom_id: its one item's answer key, or a hash of its items' keys (64 hex characters,
    within the providers' limit), so the same items asked the same way always carry the same id."""
    if len(keys) == 1:
        return keys[0]
    return hashlib.sha256(json.dumps(keys).encode()).hexdigest()


# --- the requests: the interactive path's ------------------------------------------------------------

def chat_labeler(classifier):
    """The ChatLabeler behind a Classifier, if its model has a batch API (OpenAI, Together, an OpenAI-compatible
    server that implements /v1/batches)."""
    from promptclf.methods.chat import ChatLabeler

    if not isinstance(classifier.method, ChatLabeler) or classifier.spec.provider not in (
            "openai", "together", "openai-compatible"):
        raise ConfigError(f"model {classifier.spec.id!r} has no batch API: use openai:, together: or "
                          "openai-compatible: (a server with /v1/files and /v1/batches)")
    if not hasattr(classifier.method.llm, "_get_request_payload"):
        raise ConfigError("a batch API needs an OpenAI-style chat model (ChatOpenAI, ChatTogether)")
    return classifier.method


def _chat_model(runnable) -> tuple[object, dict] | None:
    """The chat model a chain sends to, and the request parameters (response_format, tools, ...) bound to it."""
    from langchain_core.language_models import BaseChatModel

    if isinstance(runnable, BaseChatModel):
        return runnable, {}
    if isinstance(getattr(runnable, "bound", None), BaseChatModel):
        return runnable.bound, dict(runnable.kwargs)
    children = list(getattr(runnable, "steps", None) or [])
    children += list((getattr(runnable, "steps__", None) or {}).values())
    children += [getattr(runnable, name, None) for name in ("bound", "runnable")]
    for child in children:
        if child is not None and child is not runnable:
            found = _chat_model(child)
            if found is not None:
                return found
    return None


class RequestBuilder:
    """Request bodies for batches of (item id, text), as the labeler's chain would send them now (its current
    structured mode, logprobs, answer bound and system-text placement)."""

    def __init__(self, labeler):
        self.labeler, self.mode = labeler, labeler.structured
        logprobs = labeler.logprobs and not labeler.endpoint.logprobs_refused
        self.chain = labeler._chain(self.mode, logprobs)
        found = _chat_model(self.chain.last if self.mode == "parser" else self.chain)
        if found is None:
            raise ConfigError(f"structured={self.mode!r}: cannot find the request parameters it sets")
        self.llm, self.kwargs = found

    def body(self, batch: list[tuple[int, str]]) -> dict:
        variables = self.labeler._variables(batch, self.mode)  # the demos, items and format instructions
        messages = self.chain.first.invoke(variables).to_messages()  # the chain's prompt step
        payload = self.llm._get_request_payload(messages, **self.kwargs)
        payload.update(payload.pop("extra_body", None) or {})  # the client merges extra_body into the body
        # LangChain strips its ls_* tracing keys before sending; a batch line cannot stream
        return {k: v for k, v in payload.items() if not k.startswith("ls_") and not (k == "stream" and v)}


def response_payload(body: dict):
    """What to read the answers from, as ChatLabeler._unpack does: the tool call's arguments, else the content."""
    message = (body.get("choices") or [{}])[0].get("message") or {}
    calls = message.get("tool_calls")
    if calls:
        return calls[0].get("function", {}).get("arguments", "")
    return message.get("content") or ""


# --- the provider ------------------------------------------------------------------------------------

class Provider:
    """Files and batches on one host, through the `openai` client (Together's answers differ in shape)."""

    def __init__(self, spec: ModelSpec, *, timeout: float = 120.0, max_retries: int = 5):
        self.spec, self.dialect = spec, dialect_of(spec.provider)
        base_url = TOGETHER_URL if spec.provider == "together" else spec.base_url
        self.client = openai.OpenAI(api_key=api_key(spec), base_url=base_url, timeout=timeout,
                                    max_retries=max_retries)

    def _call(self, what: str, request):
        try:
            return request()
        except openai.APIStatusError as exc:
            problem = configuration_problem(exc, key_variable(self.spec.id), "this server has no batch API")
            if problem:
                raise ConfigError(f"model {self.spec.id!r}, {what}: {problem}") from None
            raise BatchError(f"{what}: {describe_error(exc)}") from None
        except openai.APIError as exc:
            raise BatchError(f"{what}: {describe_error(exc)}") from None

    def upload(self, data: bytes, name: str) -> str:
        return self._call("uploading the requests", lambda: self.client.files.create(
            file=(name, data, "application/jsonl"), purpose=self.dialect.purpose)).id

    def create(self, input_file_id: str) -> dict:
        body = {"input_file_id": input_file_id, "endpoint": ENDPOINT, "completion_window": "24h"}
        created = self._call("creating the batch", lambda: self.client.post(
            "/batches", body=body, cast_to=httpx.Response).json())
        return self._normal(created.get("job", created))  # Together wraps the new batch in {"job": ...}

    def retrieve(self, batch_id: str) -> dict:
        return self._normal(self._call(f"batch {batch_id}", lambda: self.client.get(
            f"/batches/{batch_id}", cast_to=httpx.Response).json()))

    def cancel(self, batch_id: str) -> dict:
        return self._normal(self._call(f"cancelling batch {batch_id}", lambda: self.client.post(
            f"/batches/{batch_id}/cancel", cast_to=httpx.Response).json()))

    def download(self, file_id: str) -> list[dict]:
        data = self._call(f"file {file_id}", lambda: self.client.files.content(file_id).content)
        lines = []
        for n, text in enumerate(data.decode().splitlines()):
            try:
                lines.append(json.loads(text)) if text.strip() else None
            except ValueError:
                log.warning("promptclf: line %d of result file %s is not JSON; its items are asked again", n + 1,
                            file_id)
        return lines

    @staticmethod
    def _normal(batch: dict) -> dict:
        """Statuses in OpenAI's lower case (Together's are upper case)."""
        return {**batch, "status": str(batch.get("status", "")).lower()}


# --- the report --------------------------------------------------------------------------------------

@dataclass
class BatchReport:
    """What the batches did and cost, and the interactive run that labelled what they did not."""

    model: str
    batches: int = 0
    requests: int = 0  # lines submitted
    answered: int = 0  # lines with a 200 response (billed)
    errors: int = 0  # lines in the error files
    missing: int = 0  # lines in neither file (an expired or failed batch)
    items: int = 0  # items submitted
    items_answered: int = 0  # items whose batch answer passed validation (now in the cache)
    prompt_tokens: int = 0
    completion_tokens: int = 0
    repaired: int = 0
    without_confidence: int = 0  # answers whose line carried no logprobs for them (fallback_below skips them)
    interactive: Usage | None = None
    prices: dict = field(default_factory=dict, repr=False)

    @property
    def interactive_price_usd(self) -> float | None:
        """What the batch's tokens would cost interactively."""
        return Usage(model=self.model, prompt_tokens=self.prompt_tokens, completion_tokens=self.completion_tokens,
                     prices=self.prices).cost_usd

    @property
    def cost_usd(self) -> float | None:
        full = self.interactive_price_usd
        return None if full is None else full * BATCH_DISCOUNT

    def summary(self) -> str:
        cost = (f"${self.cost_usd:.4f} (batch price, {BATCH_DISCOUNT:.0%} of ${self.interactive_price_usd:.4f})"
                if self.cost_usd is not None else "unknown (no price for this model: register_price)")
        text = (f"batch API: {self.batches} batches, {self.requests} requests ({self.answered} answered, "
                f"{self.errors} errors, {self.missing} never answered) | {self.items_answered} of {self.items} "
                f"items answered | {self.prompt_tokens} prompt + {self.completion_tokens} completion tokens | "
                f"cost {cost}")
        if self.without_confidence:
            text += (f"\n{self.without_confidence} batch answers carry no confidence (no token logprobs for them): "
                     "fallback_below and cascades do not apply to them")
        if self.interactive is not None:
            text += f"\nthen interactively (cache first, re-asks): {self.interactive.summary()}"
        return text


# --- the job -----------------------------------------------------------------------------------------

class BatchJob:
    """Batches submitted for one list of texts, recorded in a manifest (JSON) that names no credentials."""

    def __init__(self, path: str | Path, data: dict, *, poll_initial: float = 0.5, poll_max: float = 60.0):
        self.path, self.data = Path(path), data
        self.poll_initial, self.poll_max = poll_initial, poll_max
        self.report: BatchReport | None = None

    # --- submit ---

    @classmethod
    def submit(cls, classifier, texts: Sequence[str], manifest: str | Path | None = None, *,
               max_requests: int | None = None, max_bytes: int | None = None, extra: dict | None = None,
               **options) -> "BatchJob":
        """Build, upload and create the batches for what the cache does not answer; the manifest is written
        after each batch is created. `extra` is stored in the manifest as is (the CLI's options)."""
        labeler = chat_labeler(classifier)
        if classifier.cache is None:
            raise ConfigError("the batch API loads its answers into the answer cache: it needs one (not --no-cache)")
        spec = classifier.spec
        if spec.base_url and redact_url(spec.base_url) != spec.base_url:
            raise ConfigError("a base URL with credentials or a query cannot go into a batch manifest: put the key "
                              f"in {key_variable(spec.id)} instead")
        texts = list(texts)
        requests, lines = cls._requests(classifier, labeler, texts)
        path = Path(manifest) if manifest else home() / "batches" / f"{time.strftime('%Y%m%d-%H%M%S')}-" \
            f"{hashlib.sha256(json.dumps(texts).encode()).hexdigest()[:8]}.json"
        data = {"version": MANIFEST_VERSION, "model": {"provider": spec.provider, "name": spec.name,
                                                       "base_url": spec.base_url},
                "model_id": spec.id, "identity": labeler.identity, "labels": classifier.labels.fingerprint(),
                "texts": texts, "requests": requests, "batches": [], "extra": extra or {}}
        job = cls(path, data, **options)
        job.save()
        provider = Provider(spec, timeout=classifier.options["timeout"])
        dialect = provider.dialect
        for start, stop in _parts(lines, max_requests or dialect.max_requests, max_bytes or dialect.max_bytes):
            file_id = provider.upload(b"".join(lines[start:stop]), f"promptclf-{path.stem}-{start}.jsonl")
            batch = provider.create(file_id)
            data["batches"].append({"id": batch["id"], "input_file_id": file_id, "first": start, "last": stop,
                                    "status": batch["status"]})
            job.save()  # before the next upload: a batch that was created is never lost
        return job

    @staticmethod
    def _requests(classifier, labeler, texts: list[str]) -> tuple[list[dict], list[bytes]]:
        """One request per `batch_size` uncached items: (manifest entries, JSONL lines)."""
        prepared = classifier._prepare(texts)  # InputError names a bad item before anything is sent
        unique = list(dict.fromkeys(t for t in prepared if t is not None))
        identity, labels = labeler.identity, classifier.labels.fingerprint()
        keys = {t: answer_key(identity, labels, t) for t in unique}
        cached = classifier.cache.get_many(keys.values())
        misses = [t for t in unique if keys[t] not in cached]
        builder, dialect = RequestBuilder(labeler), dialect_of(classifier.spec.provider)
        requests, lines = [], []
        for start in range(0, len(misses), labeler.batch_size):
            chunk = misses[start : start + labeler.batch_size]
            ids, chunk_keys = item_ids(len(chunk)), [keys[t] for t in chunk]
            custom_id = request_key(chunk_keys)
            requests.append({"custom_id": custom_id, "items": [[i, k] for i, k in zip(ids, chunk_keys)]})
            line = dialect.line(custom_id, builder.body(list(zip(ids, chunk))))
            lines.append((json.dumps(line, ensure_ascii=False) + "\n").encode())
        return requests, lines

    # --- resume ---

    @classmethod
    def load(cls, path: str | Path, **options) -> "BatchJob":
        path = Path(path)
        if not path.is_file():
            raise FileNotFoundError(f"no batch manifest {path}")
        try:
            data = json.loads(path.read_text())
        except ValueError as exc:
            raise ConfigError(f"{path} is not a batch manifest (not JSON: {exc})") from None
        if not isinstance(data, dict) or data.get("version") != MANIFEST_VERSION:
            raise ConfigError(f"{path} is not a promptclf batch manifest (version {MANIFEST_VERSION})")
        return cls(path, data, **options)

    def save(self) -> None:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        tmp = self.path.with_name(self.path.name + ".tmp")
        tmp.write_text(json.dumps(self.data, ensure_ascii=False))
        os.replace(tmp, self.path)  # a reader never sees half a manifest

    @property
    def texts(self) -> list[str]:
        return self.data["texts"]

    @property
    def extra(self) -> dict:
        return self.data.get("extra", {})

    def provider(self) -> Provider:
        return Provider(ModelSpec(**self.data["model"]))

    def status(self, provider: Provider | None = None) -> list[dict]:
        """Each batch as the provider reports it now (id, status, request counts); the manifest is updated."""
        provider = provider or self.provider()
        shown = []
        for batch in self.data["batches"]:
            if batch["status"] not in FINISHED or "output_file_id" not in batch:
                now = provider.retrieve(batch["id"])
                batch.update(status=now["status"], output_file_id=now.get("output_file_id"),
                             error_file_id=now.get("error_file_id"))
                batch["counts"] = now.get("request_counts") or now.get("progress")
            shown.append({"id": batch["id"], "status": batch["status"], "requests": batch["last"] - batch["first"],
                          "counts": batch.get("counts")})
        self.save()
        return shown

    def finished(self) -> bool:
        return all(b["status"] in FINISHED for b in self.data["batches"])

    def wait(self, provider: Provider | None = None, progress: bool = False, timeout: float | None = None) -> None:
        """Poll until every batch has finished (completed, failed, expired, cancelled); the first polls come
        quickly, then every `poll_max` seconds. Ctrl-C stops the waiting; the batches go on."""
        from tqdm.auto import tqdm

        provider = provider or self.provider()
        delay, started = self.poll_initial, time.monotonic()
        with tqdm(total=len(self.data["batches"]), disable=not progress, unit="batch", desc="batches finished") as bar:
            while True:
                states = self.status(provider)
                bar.update(sum(s["status"] in FINISHED for s in states) - bar.n)
                bar.set_postfix_str(", ".join(sorted({s["status"] for s in states})))
                if self.finished():
                    return
                if timeout is not None and time.monotonic() - started > timeout:
                    raise TimeoutError(f"batches not finished after {timeout:.0f}s: resume with "
                                       f"`promptclf batch collect {self.path}`")
                time.sleep(delay)
                delay = min(delay * 2, self.poll_max)

    def cancel(self) -> list[dict]:
        provider = self.provider()
        for batch in self.data["batches"]:
            if batch["status"] not in FINISHED:
                batch["status"] = provider.cancel(batch["id"])["status"]
        self.save()
        return self.status(provider)

    # --- collect ---

    def check(self, classifier) -> None:
        """The classifier must ask what the batches asked: same model, prompt, structured mode and labels."""
        labeler = chat_labeler(classifier)
        if (labeler.identity, classifier.labels.fingerprint()) != (self.data["identity"], self.data["labels"]):
            raise ConfigError(f"{self.path} was submitted with another model, prompt or label set "
                              f"({self.data['model_id']}); collect it with the same options")
        if classifier.cache is None:
            raise ConfigError("collecting a batch loads its answers into the answer cache: it needs one")

    def collect(self, classifier, *, progress: bool = False, timeout: float | None = None) -> list[Prediction | None]:
        """Wait for the batches, load their answers into the cache, and label the texts with `classifier`:
        the cache answers what the batches did, the interactive path the rest. `self.report` says what it
        cost. Collecting again pays nothing: the answers are in the cache, the result files are re-read."""
        self.check(classifier)
        provider = self.provider()
        self.wait(provider, progress=progress, timeout=timeout)
        report = BatchReport(model=classifier.spec.id, prices=classifier.prices, batches=len(self.data["batches"]),
                             requests=len(self.data["requests"]),
                             items=sum(len(r["items"]) for r in self.data["requests"]))
        answered = self._load(provider, classifier, report)
        predictions = classifier.predict(self.texts)
        report.interactive = classifier.report
        self.report = report
        keys = {t: answer_key(self.data["identity"], self.data["labels"], t) for t in set(self.texts)}
        return [replace(p, source="batch")
                if p is not None and p.source == "cache" and keys.get(t) in answered else p
                for t, p in zip(self.texts, predictions)]

    def _load(self, provider: Provider, classifier, report: BatchReport) -> set[str]:
        """Read every finished batch's result files into the cache; the keys of the items answered."""
        by_id = {r["custom_id"]: r for r in self.data["requests"]}
        seen: set[str] = set()
        answers: dict[str, dict] = {}
        for batch in self.data["batches"]:
            if batch["status"] != "completed":
                log.warning("promptclf: batch %s %s; its unanswered requests are asked interactively",
                            batch["id"], batch["status"])
            for file_key in ("output_file_id", "error_file_id"):
                for line in provider.download(batch[file_key]) if batch.get(file_key) else ():
                    request = by_id.get(line.get("custom_id"))
                    if request is None or line["custom_id"] in seen:
                        log.warning("promptclf: result line for an unknown or repeated custom_id %.16s… ignored",
                                    line.get("custom_id"))
                        continue
                    seen.add(line["custom_id"])
                    answers.update(self._read_line(line, request, classifier, report))
        if report.without_confidence:
            log.warning("promptclf: %d batch answers came without token logprobs: they carry no confidence, and "
                        "fallback_below does not apply to them", report.without_confidence)
        report.missing = len(by_id) - len(seen)
        report.items_answered = len(answers)
        classifier.cache.set_many(answers)
        return set(answers)

    @staticmethod
    def _read_line(line: dict, request: dict, classifier, report: BatchReport) -> dict[str, dict]:
        response = line.get("response") or {}
        body = response.get("body") if isinstance(response.get("body"), dict) else {}
        if response.get("status_code") != 200 or line.get("error") or "choices" not in body:
            report.errors += 1
            return {}
        report.answered += 1
        usage = body.get("usage") or {}
        report.prompt_tokens += usage.get("prompt_tokens", 0)
        report.completion_tokens += usage.get("completion_tokens", 0)
        ids = [i for i, _ in request["items"]]
        multi_label = getattr(classifier, "multi_label", False)
        result = read_batch(response_payload(body), classifier.labels, ids, multi_label)  # as the interactive path
        report.repaired += result.repaired
        key_of = {i: k for i, k in request["items"]}
        if multi_label:  # stored as answering.answer stores a label set
            return {key_of[i]: {"label": ";".join(names), "confidence": None, "scores": None, "labels": list(names)}
                    for i, names in result.labels.items()}
        found = _confidences(body, classifier.labels, result.labels)
        if classifier.method.logprobs:  # asked for: an answer without one is not what its key promises
            report.without_confidence += len(result.labels) - len(found)
        return {key_of[i]: {"label": label, "confidence": found.get(i, (None, None))[0],
                            "scores": found.get(i, (None, None))[1]} for i, label in result.labels.items()}

    def as_dict(self) -> dict:
        return {"manifest": str(self.path), "model": self.data["model_id"],
                "report": {k: v for k, v in asdict(self.report).items() if k not in ("interactive", "prices")}
                if self.report else None}


def _confidences(body: dict, labels, answered: dict[int, str]) -> dict[int, tuple[float, dict]]:
    """Each answer's (confidence, scores) from the line's token logprobs, as ChatLabeler gives them live."""
    content = ((body.get("choices") or [{}])[0].get("logprobs") or {}).get("content")
    return label_confidences(content, labels, answered) if content else {}


def _parts(lines: list[bytes], max_requests: int, max_bytes: int):
    """(start, stop) ranges of lines, each within the provider's limits per file."""
    start, size = 0, 0
    for n, line in enumerate(lines):
        if len(line) > max_bytes:
            raise ConfigError(f"request {n} is {len(line)} bytes, over the {max_bytes}-byte file limit: "
                              "use a smaller --batch-size")
        if n > start and (n - start >= max_requests or size + len(line) > max_bytes):
            yield start, n
            start, size = n, 0
        size += len(line)
    if start < len(lines):
        yield start, len(lines)
