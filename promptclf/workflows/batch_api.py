"""The providers' batch APIs (OpenAI's, Together's): the interactive path's batched prompts at half the price.

`BatchJob.submit` builds the requests the interactive ChatLabeler would send (same messages, same structured-
output parameters), streams them to disk as JSONL, uploads them and creates the batches, saving a manifest
(batch ids, and a hash of the input instead of its texts) after each one, before any polling; which items each
request holds goes to a requests file beside it. `BatchJob.load(manifest)` resumes: `status`, `wait`,
`collect` (given the same texts). `collect` stores every answer that passes the interactive path's validation
(schemas.read_batch) in the answer cache, then runs `Classifier.predict`: the cache answers what the batch did,
and the interactive path re-asks the rest (failed lines, off-schema answers, an expired batch's missing lines).
"""

from __future__ import annotations

import json
import logging
import os
import tempfile
import time
from collections.abc import Iterator, Sequence
from dataclasses import asdict, dataclass, field, replace
from itertools import islice
from pathlib import Path

import httpx
import openai

from promptclf.cache.store import answer_key, home
from promptclf.core.credentials import api_key, key_variable, redact_url
from promptclf.core.errors import ConfigError, InputError, MissingFileError
from promptclf.core.hashing import digest, json_digest
from promptclf.core.methods import Prediction
from promptclf.core.model_spec import ModelSpec
from promptclf.core.usage import Usage
from promptclf.methods.chat_logprobs import label_confidences
from promptclf.methods.requests import configuration_problem, describe_error
from promptclf.providers.registry import REGISTRY, parse_model, provider_of
from promptclf.task.schemas import item_ids, read_batch
from promptclf.workflows.batch_manifest import VERSION as MANIFEST_VERSION
from promptclf.workflows.batch_manifest import CliOptions, RequestRecord, check_host, host_seal, read_manifest

log = logging.getLogger("promptclf")

BATCH_DISCOUNT = 0.5  # both providers bill batch tokens at half the interactive price
ENDPOINT = "/v1/chat/completions"
FINISHED = ("completed", "failed", "expired", "cancelled")
TOGETHER_URL = "https://api.together.xyz/v1"
CACHE_LOOKUP = 1000  # keys asked of the cache at a time


class BatchError(RuntimeError):
    """A batch API call failed for a reason that is not the configuration (see promptclf.methods.requests.configuration_problem)."""


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


DIALECTS = {
    "openai": Dialect("openai", "batch", 50_000, 200 * 1024 * 1024),
    "together": Dialect("together", "batch-api", 50_000, 100 * 1024 * 1024),
}


def dialect_of(spec: ModelSpec) -> Dialect | None:
    """The batch API form of the model's provider (the registry's `batch_dialect`), None where it has none."""
    name = provider_of(spec).batch_dialect if spec.provider in REGISTRY else None
    return DIALECTS[name] if name else None


def request_key(keys: list[str]) -> str:
    """A request's custom_id: its one item's answer key, or a hash of its items' keys (64 hex characters,
    within the providers' limit), so the same items asked the same way always carry the same id."""
    if len(keys) == 1:
        return keys[0]
    return json_digest(keys)


# --- the requests: the interactive path's ------------------------------------------------------------


def chat_labeler(classifier):
    """The ChatLabeler behind a Classifier, if its model has a batch API (OpenAI, Together, an OpenAI-compatible
    server that implements /v1/batches)."""
    from promptclf.methods.chat import ChatLabeler

    if not isinstance(classifier.method, ChatLabeler) or dialect_of(classifier.spec) is None:
        raise ConfigError(
            f"model {classifier.spec.id!r} has no batch API: use openai:, together: or "
            "openai-compatible: (a server with /v1/files and /v1/batches)"
        )
    from promptclf.methods.chat_requests import sends_directly

    if not sends_directly(classifier.method.llm):
        raise ConfigError("a batch API needs an OpenAI-style chat model (ChatOpenAI, ChatTogether)")
    return classifier.method


class RequestBuilder:
    """Request bodies for batches of (item id, text): the body the labeler sends now (its current structured
    mode, logprobs, answer bound and system-text placement; methods/chat_requests.py)."""

    def __init__(self, labeler):
        self.labeler, self.mode = labeler, labeler.structured
        self.logprobs = labeler.logprobs and not labeler.endpoint.logprobs_refused

    def body(self, batch: list[tuple[int, str]]) -> dict:
        return self.labeler.request_body(batch, self.mode, self.logprobs)


def response_payload(body: dict):
    """What to read the answers from, as ChatLabeler._unpack does: the tool call's arguments, else the content."""
    message = (body.get("choices") or [{}])[0].get("message") or {}
    calls = message.get("tool_calls")
    if calls:
        return calls[0].get("function", {}).get("arguments", "")
    return message.get("content") or ""


# --- the batch client --------------------------------------------------------------------------------


class BatchClient:
    """Files and batches on one host, through the `openai` client (Together's answers differ in shape)."""

    def __init__(self, spec: ModelSpec, *, timeout: float = 120.0, max_retries: int = 5):
        self.spec, self.dialect = spec, dialect_of(spec)
        base_url = TOGETHER_URL if spec.provider == "together" else spec.base_url
        self.client = openai.OpenAI(api_key=api_key(spec), base_url=base_url, timeout=timeout, max_retries=max_retries)

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

    def upload(self, data, name: str) -> str:
        """`data`: bytes, or a binary file (sent from disk as it is read)."""
        return self._call(
            "uploading the requests",
            lambda: self.client.files.create(file=(name, data, "application/jsonl"), purpose=self.dialect.purpose),
        ).id

    def create(self, input_file_id: str) -> dict:
        body = {"input_file_id": input_file_id, "endpoint": ENDPOINT, "completion_window": "24h"}
        created = self._call(
            "creating the batch", lambda: self.client.post("/batches", body=body, cast_to=httpx.Response).json()
        )
        return self._normal(created.get("job", created))  # Together wraps the new batch in {"job": ...}

    def retrieve(self, batch_id: str) -> dict:
        return self._normal(
            self._call(
                f"batch {batch_id}", lambda: self.client.get(f"/batches/{batch_id}", cast_to=httpx.Response).json()
            )
        )

    def cancel(self, batch_id: str) -> dict:
        return self._normal(
            self._call(
                f"cancelling batch {batch_id}",
                lambda: self.client.post(f"/batches/{batch_id}/cancel", cast_to=httpx.Response).json(),
            )
        )

    def download(self, file_id: str) -> list[dict]:
        data = self._call(f"file {file_id}", lambda: self.client.files.content(file_id).content)
        lines = []
        for n, text in enumerate(data.decode().splitlines()):
            try:
                line = json.loads(text) if text.strip() else None
                if line is not None and not isinstance(line, dict):
                    raise ValueError("not an object")
                lines.append(line) if line is not None else None
            except ValueError:
                log.warning(
                    "promptclf: line %d of result file %s is not a JSON object; its items are asked again",
                    n + 1,
                    file_id,
                )
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
        return Usage(
            model=self.model,
            prompt_tokens=self.prompt_tokens,
            completion_tokens=self.completion_tokens,
            prices=self.prices,
        ).cost_usd

    @property
    def cost_usd(self) -> float | None:
        full = self.interactive_price_usd
        return None if full is None else full * BATCH_DISCOUNT

    def summary(self) -> str:
        cost = (
            f"${self.cost_usd:.4f} (batch price, {BATCH_DISCOUNT:.0%} of ${self.interactive_price_usd:.4f})"
            if self.cost_usd is not None
            else "unknown (no price for this model: register_price)"
        )
        text = (
            f"batch API: {self.batches} batches, {self.requests} requests ({self.answered} answered, "
            f"{self.errors} errors, {self.missing} never answered) | {self.items_answered} of {self.items} "
            f"items answered | {self.prompt_tokens} prompt + {self.completion_tokens} completion tokens | "
            f"cost {cost}"
        )
        if self.without_confidence:
            text += (
                f"\n{self.without_confidence} batch answers carry no confidence (no token logprobs for them): "
                "fallback_below and cascades do not apply to them"
            )
        if self.interactive is not None:
            text += f"\nthen interactively (cache first, re-asks): {self.interactive.summary()}"
        return text


# --- the job -----------------------------------------------------------------------------------------


class BatchJob:
    """Batches submitted for one list of texts. The manifest (JSON) names no credentials and does not grow with
    the texts: the model, the input's row count and hash, and one record per batch. Which items each request
    holds is in `<manifest>.requests.jsonl` beside it (row numbers, written once as the requests are built)."""

    def __init__(
        self,
        path: str | Path,
        data: dict,
        *,
        texts: Sequence[str] | None = None,
        model: str | None = None,
        poll_initial: float = 0.5,
        poll_max: float = 60.0,
    ):
        self.path, self.data = Path(path), data
        self.named = parse_model(model) if model else None  # a model string the user gives: its host is named
        self.poll_initial, self.poll_max = poll_initial, poll_max
        self.report: BatchReport | None = None
        self._texts = texts  # the texts submit was given, so that a job collected in the same process needs none

    @property
    def requests_path(self) -> Path:
        return self.path.with_suffix(".requests.jsonl")

    # --- submit ---

    @classmethod
    def submit(
        cls,
        classifier,
        texts: Sequence[str],
        manifest: str | Path | None = None,
        *,
        max_requests: int | None = None,
        max_bytes: int | None = None,
        extra: dict | None = None,
        **options,
    ) -> BatchJob:
        """Build, upload and create the batches for what the cache does not answer. Each request is written to
        disk as it is built (a file of at most one batch's lines at a time), and the manifest is saved after
        each batch is created. `extra`: the CLI's options (batch_manifest.CliOptions), for `batch collect`."""
        labeler = chat_labeler(classifier)
        if classifier.cache is None:
            raise ConfigError("the batch API loads its answers into the answer cache: it needs one (not --no-cache)")
        spec = classifier.spec
        if spec.base_url and redact_url(spec.base_url) != spec.base_url:
            raise ConfigError(
                "a base URL with credentials or a query cannot go into a batch manifest: put the key "
                f"in {key_variable(spec.id)} instead"
            )
        identity, labels = labeler.identity, classifier.labels.fingerprint()
        seen, misses = _uncached_rows(classifier, identity, labels, texts)
        path = (
            Path(manifest)
            if manifest
            else home() / "batches" / f"{time.strftime('%Y%m%d-%H%M%S')}-{seen['sha256'][:8]}.json"
        )
        data = {
            "version": MANIFEST_VERSION,
            "model": {"provider": spec.provider, "name": spec.name, "base_url": spec.base_url},
            "model_id": spec.id,
            "identity": identity,
            "labels": labels,
            "input": seen,
            "request_count": 0,
            "item_count": 0,
            "batches": [],
            "host_seal": host_seal(spec),
            "extra": CliOptions.model_validate(extra).model_dump() if extra else None,
        }
        job = cls(path, data, texts=texts, **options)
        job.save()
        provider = BatchClient(spec, timeout=classifier.options["timeout"])
        limits = (max_requests or provider.dialect.max_requests, max_bytes or provider.dialect.max_bytes)
        job._send(provider, classifier, texts, misses, *limits)
        return job

    def _send(
        self,
        provider: BatchClient,
        classifier,
        texts: Sequence[str],
        misses: list[int],
        max_requests: int,
        max_bytes: int,
    ) -> None:
        """One request per `batch_size` uncached items, written to a part file until a batch is full, then
        uploaded and created; each request's items (id, row) go to the requests file as it is written."""
        labeler = classifier.method
        builder, dialect = RequestBuilder(labeler), provider.dialect
        identity, labels = self.data["identity"], self.data["labels"]
        with open(self.requests_path, "w", encoding="utf-8") as records, tempfile.TemporaryFile() as part:
            lines = items = size = 0
            for start in range(0, len(misses), labeler.batch_size):
                rows = misses[start : start + labeler.batch_size]
                chunk = [classifier.prepare_item(row, texts[row]) for row in rows]
                ids = item_ids(len(rows))
                custom_id = request_key([answer_key(identity, labels, text) for text in chunk])
                line = (
                    json.dumps(dialect.line(custom_id, builder.body(list(zip(ids, chunk)))), ensure_ascii=False) + "\n"
                ).encode()
                if len(line) > max_bytes:
                    raise ConfigError(
                        f"request {self.data['request_count'] + lines} is {len(line)} bytes, over the "
                        f"{max_bytes}-byte file limit: use a smaller --batch-size"
                    )
                if lines and (lines >= max_requests or size + len(line) > max_bytes):
                    self._create(provider, part, records, lines, items)
                    lines = items = size = 0
                part.write(line)
                records.write(json.dumps({"custom_id": custom_id, "items": [list(p) for p in zip(ids, rows)]}) + "\n")
                lines, items, size = lines + 1, items + len(rows), size + len(line)
            if lines:
                self._create(provider, part, records, lines, items)

    def _create(self, provider: BatchClient, part, records, lines: int, items: int) -> None:
        records.flush()  # the manifest never names a request the requests file does not hold
        part.flush()
        part.seek(0)
        first = self.data["request_count"]
        file_id = provider.upload(part, f"promptclf-{self.path.stem}-{first}.jsonl")
        batch = provider.create(file_id)
        self.data["batches"].append(
            {
                "id": batch["id"],
                "input_file_id": file_id,
                "first": first,
                "last": first + lines,
                "status": batch["status"],
            }
        )
        self.data["request_count"] += lines
        self.data["item_count"] += items
        self.save()  # before the next upload: a batch that was created is never lost
        part.seek(0)
        part.truncate()

    # --- resume ---

    @classmethod
    def load(cls, path: str | Path, **options) -> BatchJob:
        """A manifest, checked as untrusted input. `model`: a model string naming the host the requests go to,
        where neither the environment nor the seal written at submit names it for the key."""
        path = Path(path)
        if not path.is_file():
            raise MissingFileError(f"no batch manifest {path}")
        return cls(path, read_manifest(path), **options)

    def save(self) -> None:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        tmp = self.path.with_name(self.path.name + ".tmp")
        tmp.write_text(json.dumps(self.data, ensure_ascii=False))
        os.replace(tmp, self.path)  # a reader never sees half a manifest

    def check_texts(self, texts: Sequence[str]) -> None:
        """The texts must be those submitted: same rows, same content (the manifest keeps their hash)."""
        given = input_fingerprint(texts)
        if given != self.data["input"]:
            raise ConfigError(
                f"{self.path} is a batch for other texts ({self.data['input']['rows']} rows, sha256 "
                f"{self.data['input']['sha256'][:12]}…; given {given['rows']} rows, sha256 "
                f"{given['sha256'][:12]}…)"
            )

    def requests(self) -> Iterator[dict]:
        """The requests file's records: custom_id, and items as [item id, row of the input]."""
        with open(self.requests_path, encoding="utf-8") as records:
            for text in records:
                yield json.loads(text)

    @property
    def extra(self) -> dict:
        return self.data.get("extra") or {}

    def spec(self) -> ModelSpec:
        """The model the batches were sent to, once its host is known to be named for the key it would get."""
        spec = ModelSpec(**self.data["model"])
        check_host(self.path, spec, self.data.get("host_seal"), self.named)
        return spec

    def provider(self) -> BatchClient:
        return BatchClient(self.spec())

    def status(self, provider: BatchClient | None = None) -> list[dict]:
        """Each batch as the provider reports it now (id, status, request counts); the manifest is updated."""
        provider = provider or self.provider()
        shown = []
        for batch in self.data["batches"]:
            if batch["status"] not in FINISHED or "output_file_id" not in batch:
                now = provider.retrieve(batch["id"])
                batch.update(
                    status=now["status"],
                    output_file_id=now.get("output_file_id"),
                    error_file_id=now.get("error_file_id"),
                )
                batch["counts"] = now.get("request_counts") or now.get("progress")
            shown.append(
                {
                    "id": batch["id"],
                    "status": batch["status"],
                    "requests": batch["last"] - batch["first"],
                    "counts": batch.get("counts"),
                }
            )
        self.save()
        return shown

    def finished(self) -> bool:
        return all(b["status"] in FINISHED for b in self.data["batches"])

    def wait(self, provider: BatchClient | None = None, progress: bool = False, timeout: float | None = None) -> None:
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
                    raise TimeoutError(
                        f"batches not finished after {timeout:.0f}s: resume with `promptclf batch collect {self.path}`"
                    )
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
        if classifier.spec != ModelSpec(**self.data["model"]):
            raise ConfigError(
                f"{self.path} was submitted to another model ({self.data['model_id']}); collect it "
                "with the same options"
            )
        self.named = classifier.spec  # the caller's classifier names its host (its key goes there anyway)
        labeler = chat_labeler(classifier)
        if (labeler.identity, classifier.labels.fingerprint()) != (self.data["identity"], self.data["labels"]):
            raise ConfigError(
                f"{self.path} was submitted with another model, prompt or label set "
                f"({self.data['model_id']}); collect it with the same options"
            )
        if classifier.cache is None:
            raise ConfigError("collecting a batch loads its answers into the answer cache: it needs one")

    def collect(
        self, classifier, texts: Sequence[str] | None = None, *, progress: bool = False, timeout: float | None = None
    ) -> list[Prediction | None]:
        """Wait for the batches, load their answers into the cache, and label the texts with `classifier`:
        the cache answers what the batches did, the interactive path the rest. `texts` are the texts
        submitted (a job loaded from its manifest needs them; one submitted in this process has them).
        `self.report` says what it cost. Collecting again pays nothing: the answers are in the cache, the
        result files are re-read."""
        if texts is None and self._texts is None:
            raise ConfigError(f"{self.path} keeps only a hash of its texts: pass the texts submitted to collect")
        texts = self._texts if texts is None else texts
        self.check_texts(texts)
        self.check(classifier)
        provider = self.provider()
        self.wait(provider, progress=progress, timeout=timeout)
        report = BatchReport(
            model=classifier.spec.id,
            prices=classifier.prices,
            batches=len(self.data["batches"]),
            requests=self.data["request_count"],
            items=self.data["item_count"],
        )
        answered = self._load(provider, classifier, texts, report)
        predictions = classifier.predict(texts)
        report.interactive = classifier.report
        self.report = report
        identity, labels = self.data["identity"], self.data["labels"]
        return [
            replace(p, source="batch")
            if p is not None
            and p.source == "cache"
            and answer_key(identity, labels, classifier.prepare_item(row, text)) in answered
            else p
            for row, (text, p) in enumerate(zip(texts, predictions))
        ]

    def _load(self, provider: BatchClient, classifier, texts: Sequence[str], report: BatchReport) -> set[str]:
        """Read every finished batch's result files into the cache, one batch at a time; the keys of the
        items answered."""
        answered: set[str] = set()
        records = self._records(classifier, texts)
        for batch in self.data["batches"]:
            requests = {
                custom_id: items
                for custom_id, items in islice(records, batch["last"] - batch["first"])
                if custom_id is not None
            }
            if batch["status"] != "completed":
                log.warning(
                    "promptclf: batch %s %s; its unanswered requests are asked interactively",
                    batch["id"],
                    batch["status"],
                )
            answers, seen = {}, set()
            for file_key in ("output_file_id", "error_file_id"):
                for line in provider.download(batch[file_key]) if batch.get(file_key) else ():
                    custom_id = line.get("custom_id")
                    if not isinstance(custom_id, str) or custom_id not in requests or custom_id in seen:
                        log.warning(
                            "promptclf: result line for an unknown or repeated custom_id %.16s… ignored", custom_id
                        )
                        continue
                    seen.add(custom_id)
                    answers.update(self._read_line(line, requests[custom_id], classifier, report))
            report.missing += batch["last"] - batch["first"] - len(seen)
            report.items_answered += len(answers)
            classifier.cache.set_many(answers)
            answered.update(answers)
        if report.without_confidence:
            log.warning(
                "promptclf: %d batch answers came without token logprobs: they carry no confidence, and "
                "fallback_below does not apply to them",
                report.without_confidence,
            )
        return answered

    def _records(self, classifier, texts: Sequence[str]) -> Iterator[tuple[str | None, list | None]]:
        """Each request's (custom_id, [(item id, answer key)]) from the requests file, the keys computed from
        the texts; (None, None) for a record that does not match them (its items are asked interactively)."""
        identity, labels = self.data["identity"], self.data["labels"]
        if not self.requests_path.is_file():
            log.warning(
                "promptclf: %s is missing: the batches' answers cannot be matched to their items, which "
                "are asked interactively",
                self.requests_path,
            )
            return
        with open(self.requests_path, encoding="utf-8") as records:
            for n, text in enumerate(records):
                try:
                    record = RequestRecord.model_validate_json(text)
                    keys = [answer_key(identity, labels, _prepared(classifier, texts, row)) for _, row in record.items]
                    if request_key(keys) != record.custom_id:
                        raise ValueError("its custom_id is not that of its items")
                except ValueError as exc:
                    log.warning(
                        "promptclf: line %d of %s does not match the texts (%.200s); its items are asked interactively",
                        n + 1,
                        self.requests_path,
                        exc,
                    )
                    yield None, None
                    continue
                yield record.custom_id, [(item, key) for (item, _), key in zip(record.items, keys)]

    @staticmethod
    def _read_line(line: dict, items: list[tuple[int, str]], classifier, report: BatchReport) -> dict[str, dict]:
        response = line.get("response") or {}
        body = response.get("body") if isinstance(response.get("body"), dict) else {}
        if response.get("status_code") != 200 or line.get("error") or "choices" not in body:
            report.errors += 1
            return {}
        report.answered += 1
        usage = body.get("usage") or {}
        report.prompt_tokens += usage.get("prompt_tokens", 0)
        report.completion_tokens += usage.get("completion_tokens", 0)
        ids = [i for i, _ in items]
        multi_label = getattr(classifier, "multi_label", False)
        result = read_batch(response_payload(body), classifier.labels, ids, multi_label)  # as the interactive path
        report.repaired += result.repaired
        key_of = dict(items)
        if multi_label:  # stored as answering.answer stores a label set
            return {
                key_of[i]: {"label": ";".join(names), "confidence": None, "scores": None, "labels": list(names)}
                for i, names in result.labels.items()
            }
        found = _confidences(body, classifier.labels, result.labels)
        if classifier.method.logprobs:  # asked for: an answer without one is not what its key promises
            report.without_confidence += len(result.labels) - len(found)
        return {
            key_of[i]: {
                "label": label,
                "confidence": found.get(i, (None, None))[0],
                "scores": found.get(i, (None, None))[1],
            }
            for i, label in result.labels.items()
        }

    def as_dict(self) -> dict:
        return {
            "manifest": str(self.path),
            "model": self.data["model_id"],
            "report": {k: v for k, v in asdict(self.report).items() if k not in ("interactive", "prices")}
            if self.report
            else None,
        }


def _confidences(body: dict, labels, answered: dict[int, str]) -> dict[int, tuple[float, dict]]:
    """Each answer's (confidence, scores) from the line's token logprobs, as ChatLabeler gives them live."""
    content = ((body.get("choices") or [{}])[0].get("logprobs") or {}).get("content")
    return label_confidences(content, labels, answered) if content else {}


# --- the input ---------------------------------------------------------------------------------------


def input_fingerprint(texts: Sequence[str]) -> dict:
    """The input's row count and a hash of its texts: what the manifest keeps instead of the texts."""
    return {"rows": len(texts), "sha256": digest(json.dumps(text, ensure_ascii=False) + "\n" for text in texts)}


def _uncached_rows(classifier, identity: str, labels: str, texts: Sequence[str]) -> tuple[dict, list[int]]:
    """The input's fingerprint, and the first row of each distinct item the cache does not answer. Every item
    is checked first: an InputError names a bad one before anything is sent."""
    if isinstance(texts, str):
        raise InputError("texts must be a list of strings, not one string: wrap it as [text]")
    first_row: dict[str, int] = {}
    for row, text in enumerate(texts):
        prepared = classifier.prepare_item(row, text)
        if prepared is not None:
            first_row.setdefault(answer_key(identity, labels, prepared), row)
    keys, misses = list(first_row), []
    for start in range(0, len(keys), CACHE_LOOKUP):
        chunk = keys[start : start + CACHE_LOOKUP]
        cached = classifier.cache.get_many(chunk)
        misses += [first_row[key] for key in chunk if key not in cached]
    return input_fingerprint(texts), misses


def _prepared(classifier, texts: Sequence[str], row: int) -> str:
    """Row `row` as it was asked (a requests file names rows; an edited one may name any)."""
    if not 0 <= row < len(texts):
        raise ValueError(f"row {row} is not in the input ({len(texts)} rows)")
    try:
        prepared = classifier.prepare_item(row, texts[row])
    except InputError as exc:
        raise ValueError(str(exc)) from None
    if prepared is None:
        raise ValueError(f"row {row} is empty: it was not asked")
    return prepared
