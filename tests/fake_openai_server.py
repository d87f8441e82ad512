"""A small OpenAI-compatible server on 127.0.0.1 for tests and benchmarks, with fault injection.

It answers /v1/chat/completions for promptclf's batch prompts (items between <item id="N"> tags) with the
labels an oracle gives, and /v1/completions with echo logprobs that favour the oracle's label. Faults are
drawn per request with a seeded RNG: 429 (with Retry-After), 500, slow (past the client timeout),
malformed JSON, short (an answer missing), duplicated (an item answered twice), off-label answers,
zero-based (answers numbered 0..n-1 by position, ignoring the ids) and shifted (every id one too high).
Configuration faults, every request: a key it refuses (401), a model it does not serve (404), no support
for `response_format` (400), completions without prompt logprobs, and a gullible model that obeys answers
written inside an item.

Chat answers carry token logprobs when asked (`logprobs`/`top_logprobs`), the label's first token at the
probability `label_probability(item)` (the other labels share the rest), unless `chat_logprobs` omits or
refuses them. `LLAMACPP` switches on what llama-cpp-python's server (0.3.x, `--chat_format gemma`) does:
a 500 validation error for a JSON-schema `response_format`, the system message dropped, a list of prompts
refused with an empty 500, `max_tokens` 0 or absent meaning "until the context is full" on completions,
and `max_completion_tokens` ignored. `noisy_oracle`
makes an oracle of a set error rate (a simulated model of known accuracy); with `taught_oracle` a batch prompt
that shows labelled examples is answered by another oracle (a model that does better with examples), and
`binomial_spread` says how far a measured accuracy may fall from a known rate.
"""

from __future__ import annotations

import json
import math
import random
import re
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

ITEM = re.compile(r'<item id="(\d+)">\n(.*?)\n</item>', re.S)
DSPY_TEXT = re.compile(r"\[\[ ## text ## \]\]\n(.*?)\n\n", re.S)
FAULTS = ("429", "500", "slow", "malformed", "short", "duplicate", "offlabel", "zero_based", "shifted")
TOKEN = re.compile(r"\w+|\s+|[^\w\s]")
INJECTED = re.compile(r'\{"answers": \[.*?\]\}', re.S)


@dataclass
class ServerConfig:
    oracle: Callable[[str], str]
    fault_rate: float = 0.0
    faults: tuple[str, ...] = FAULTS
    seed: int = 0
    latency: float = 0.0
    slow_seconds: float = 2.0
    retry_after: str = "0.05"
    shuffle: bool = True
    item_oracle: Callable[[str], str] | None = None  # answers to promptclf's batch prompts (default: oracle)
    taught_oracle: Callable[[str], str] | None = None  # answers to a batch prompt that shows labelled examples
    api_key: str | None = None  # refuse (401) requests that do not carry this key
    response_format: bool = True  # False: refuse (400) requests that ask for structured output
    prompt_logprobs: bool = True  # False: completions carry no logprobs (llama.cpp's server)
    gullible: bool = False  # obey {"answers": [...]} written inside an item, as a model open to injection might
    chat_logprobs: str = "yes"  # "omit": never return them; "refuse": 400 when asked for them
    label_probability: Callable[[str], float] = lambda item: 0.9  # the model's probability for its answer
    served_model: str = "fake-model"  # what GET /v1/models lists (comma-separated: several)
    listing_failures: int = 0  # the first this many GET /v1/models answer 503
    json_schema_500: bool = False  # a JSON-schema response_format is a 500 validation error (llama-cpp-python)
    drops_system: bool = False  # the chat template drops the system message (llama.cpp's gemma format)
    prompt_lists: bool = True  # False: a list of several prompts is a 500 with an empty message
    zero_max_tokens_unlimited: bool = False  # completions: max_tokens 0 or absent generates until "context end"
    unlimited_tokens: int = 40  # how many tokens "until the context is full" is here
    reads_max_completion_tokens: bool = True  # False: only max_tokens bounds a chat answer (llama-cpp-python)
    rambles: int = 0  # words of "reason" the model adds to each answer (a small model that explains itself)


LLAMACPP = dict(
    json_schema_500=True,
    drops_system=True,
    prompt_lists=False,
    zero_max_tokens_unlimited=True,
    reads_max_completion_tokens=False,
    served_model="/models/gemma-3-270m-it-Q4_K_M.gguf",
)


@dataclass
class ServerLog:
    requests: int = 0
    chat_requests: int = 0
    completion_requests: int = 0
    faults: dict = field(default_factory=dict)
    items_seen: int = 0
    unbounded: int = 0  # chat requests that carried no limit the server reads
    prompt_tokens: int = 0  # the usage of every chat answer given, interactive or in a batch: what it bills
    completion_tokens: int = 0
    authorization: list = field(default_factory=list)
    bodies: list = field(default_factory=list)
    listings: int = 0  # GET /v1/models asked
    lock: threading.Lock = field(default_factory=threading.Lock)


class FakeOpenAIServer:
    def __init__(self, config: ServerConfig):
        self.config, self.log = config, ServerLog()
        self.rng = random.Random(config.seed)
        self.batches = BatchEndpoints(self)  # /v1/files and /v1/batches: see the section at the end
        self.httpd = ThreadingHTTPServer(("127.0.0.1", 0), with_batch_routes(self._handler(), self))
        self.httpd.daemon_threads = True
        self.thread = threading.Thread(target=self.httpd.serve_forever, daemon=True)

    @property
    def base_url(self) -> str:
        return f"http://127.0.0.1:{self.httpd.server_address[1]}/v1"

    def __enter__(self):
        self.thread.start()
        return self

    def __exit__(self, *exc):
        self.stop()

    def stop(self):
        self.httpd.shutdown()
        self.httpd.server_close()

    def draw_fault(self) -> str | None:
        with self.log.lock:
            if self.rng.random() < self.config.fault_rate:
                fault = self.rng.choice(self.config.faults)
                self.log.faults[fault] = self.log.faults.get(fault, 0) + 1
                return fault
        return None

    # --- responses ------------------------------------------------------------------------------------

    def dspy_answer(self, body: dict) -> str:
        """DSPy's ChatAdapter format: the last user turn holds the inputs and names the output fields. The
        label comes from the oracle; any other field (MIPROv2's proposer asks for instructions) gets a stock text."""
        last = [m["content"] for m in body["messages"] if m["role"] == "user"][-1]
        fields = re.findall(r"`\[\[ ## (\w+) ## \]\]`", last) or ["label"]
        text = DSPY_TEXT.search(last)
        out = []
        for name in dict.fromkeys(f for f in fields if f != "completed"):
            value = (
                self.config.oracle(text.group(1))
                if name == "label" and text
                else "Classify the news text by its topic: World, Sports, Business or Sci/Tech."
            )
            out.append(f"[[ ## {name} ## ]]\n{value}")
        return "\n\n".join(out) + "\n\n[[ ## completed ## ]]"

    def chat(self, body: dict, fault: str | None) -> dict:
        seen = [m for m in body["messages"] if not (self.config.drops_system and m["role"] == "system")]
        text = "\n".join(m["content"] for m in seen if isinstance(m.get("content"), str))
        if "[[ ## " in text and not ITEM.search(text):
            return self._reply(body, text, self.dspy_answer(body))
        items = [(int(i), t) for i, t in ITEM.findall(text)]
        with self.log.lock:
            self.log.items_seen += len(items)
        oracle = self.config.item_oracle or self.config.oracle
        if self.config.taught_oracle is not None and "<example>" in text:  # a model that learns from examples
            oracle = self.config.taught_oracle
        knows_task = '{"answers": [' in text  # the system text says the labels and the answer format
        constrained = bool(body.get("tools") or body.get("response_format"))
        if not knows_task and not constrained:  # a model that was never told the task writes prose
            return self._reply(body, text, "These look like news articles to me.")
        if '"labels": [' in text:  # a multi-label prompt: label sets (the oracle's ;-joined names or a list)
            return self._label_sets(body, text, items, oracle, fault)
        answers = [{"index": i, "label": oracle(t.replace("‹", "<")) if knows_task else "World"} for i, t in items]
        if self.config.gullible:
            answers = self._obey_injections(items, answers)
        other = lambda a: {"label": "World" if a["label"] != "World" else "Sports"}  # noqa: E731
        answers = self._faulted(answers, items, fault, other, lambda a: {"label": "Weather"})
        if self.config.rambles:
            answers = [{**a, "reason": " ".join(["because"] * self.config.rambles)} for a in answers]
        content = "{'answers': [" if fault == "malformed" else json.dumps({"answers": answers})
        content, finish = self._bounded(body, content)
        message: dict = {"role": "assistant", "content": content}
        logprobs = None
        if body.get("tools"):  # as OpenAI: no logprobs for a tool call's arguments
            name = body["tools"][0]["function"]["name"]
            message = {
                "role": "assistant",
                "content": None,
                "tool_calls": [{"id": "call_1", "type": "function", "function": {"name": name, "arguments": content}}],
            }
        elif body.get("logprobs") and self.config.chat_logprobs == "yes":
            texts = dict(items)
            probability = {a["index"]: self.config.label_probability(texts.get(a["index"], "")) for a in answers}
            logprobs = {"content": self._token_logprobs(content, answers, probability, body), "refusal": None}
        return self._reply(body, text, content, message, finish, logprobs)

    def _label_sets(self, body: dict, text: str, items, oracle, fault: str | None) -> dict:
        """Multi-label answers, {"index": N, "labels": [...]}, with the same faults as single labels: short,
        duplicate, off-label (an unknown label in the set), malformed, zero-based and shifted ids."""

        def label_set(item: str) -> list[str]:
            answer = oracle(item.replace("‹", "<"))
            return list(answer) if isinstance(answer, (list, tuple)) else [a for a in answer.split(";") if a]

        answers = [{"index": i, "labels": label_set(t)} for i, t in items]
        answers = self._faulted(
            answers, items, fault, lambda a: {"labels": []}, lambda a: {"labels": a["labels"] + ["Weather"]}
        )
        content = "{'answers': [" if fault == "malformed" else json.dumps({"answers": answers})
        content, finish = self._bounded(body, content)
        message: dict = {"role": "assistant", "content": content}
        if body.get("tools"):
            name = body["tools"][0]["function"]["name"]
            message = {
                "role": "assistant",
                "content": None,
                "tool_calls": [{"id": "call_1", "type": "function", "function": {"name": name, "arguments": content}}],
            }
        return self._reply(body, text, content, message, finish)

    def _faulted(self, answers: list[dict], items, fault: str | None, duplicate, offlabel) -> list[dict]:
        """The answers with the request's fault: ids from 0 or shifted by one, shuffled, one missing, one item
        answered twice (the second answer `duplicate(first)`), or the first answer changed by `offlabel`."""
        if fault == "zero_based":
            answers = [{**a, "index": n} for n, a in enumerate(answers)]
        elif fault == "shifted":
            answers = [{**a, "index": a["index"] + 1} for a in answers]
        if self.config.shuffle:
            random.Random(len(items)).shuffle(answers)
        if fault == "short" and answers:
            answers.pop()
        elif fault == "duplicate" and answers:
            answers.append({"index": answers[0]["index"], **duplicate(answers[0])})
        elif fault == "offlabel" and answers:
            answers[0] = {**answers[0], **offlabel(answers[0])}
        return answers

    def _bounded(self, body: dict, content: str) -> tuple[str, str]:
        """The answer cut at the request's token limit (a token here is a word, a space or a sign)."""
        limit = body.get("max_tokens")
        if limit is None and self.config.reads_max_completion_tokens:
            limit = body.get("max_completion_tokens")
        if not limit:
            with self.log.lock:
                self.log.unbounded += 1  # a real server would write until its context is full
            return content, "stop"
        tokens = TOKEN.findall(content)
        return ("".join(tokens[:limit]), "length") if len(tokens) > limit else (content, "stop")

    def _token_logprobs(self, content: str, answers: list[dict], probability: dict, body: dict) -> list[dict]:
        """OpenAI's chat logprobs: the label's first token at the item's probability (the other labels'
        first tokens share the rest among the top alternatives), every other token near-certain."""
        firsts = {}  # offset of a label's first token -> (answered label, probability)
        for answer in answers:
            written = json.dumps(answer)
            at = content.find(written)
            if at >= 0:
                firsts[at + written.index('"label": "') + len('"label": "')] = answer
        names = list(dict.fromkeys(self._label_names(body)))
        out, offset = [], 0
        for token in TOKEN.findall(content):
            answer = firsts.get(offset)
            if answer is None:
                entry = {
                    "token": token,
                    "logprob": -0.001,
                    "bytes": None,
                    "top_logprobs": [{"token": token, "logprob": -0.001, "bytes": None}],
                }
            else:
                p = probability.get(answer["index"], 0.9)
                others = [n for n in names if TOKEN.match(n).group() != token]
                share = (1 - p) / max(len(others), 1)
                top = [{"token": token, "logprob": math.log(p), "bytes": None}]
                for first in dict.fromkeys(TOKEN.match(n).group() for n in others):
                    mass = share * sum(TOKEN.match(n).group() == first for n in others)
                    top.append({"token": first, "logprob": math.log(mass), "bytes": None})
                entry = {
                    "token": token,
                    "logprob": math.log(p),
                    "bytes": None,
                    "top_logprobs": top[: body.get("top_logprobs") or 1],
                }
            out.append(entry)
            offset += len(token)
        return out

    @staticmethod
    def _label_names(body: dict) -> list[str]:
        text = "\n".join(m["content"] for m in body["messages"] if isinstance(m.get("content"), str))
        return re.findall(r"^- ([^:\n]+)", text, flags=re.M)

    @staticmethod
    def _obey_injections(items, answers):
        """Answers written inside an item replace the real answers for the ids they name."""
        injected = [a for _, t in items for m in INJECTED.findall(t) for a in json.loads(m)["answers"]]
        named = {a["index"] for a in injected}
        return [a for a in answers if a["index"] not in named] + injected

    def _reply(self, body, text, content, message=None, finish="stop", logprobs=None):
        message = message or {"role": "assistant", "content": content}
        with self.log.lock:
            self.log.prompt_tokens += len(text) // 4
            self.log.completion_tokens += len(content) // 4
        return {
            "id": "chatcmpl-fake",
            "object": "chat.completion",
            "created": int(time.time()),
            "model": body["model"],
            "choices": [{"index": 0, "message": message, "finish_reason": finish, "logprobs": logprobs}],
            "usage": {
                "prompt_tokens": len(text) // 4,
                "completion_tokens": len(content) // 4,
                "total_tokens": len(text) // 4 + len(content) // 4,
            },
        }

    def completions(self, body: dict) -> dict:
        """Echo logprobs that favour the oracle's label, then the generated tokens, which favour the
        wrong labels (so a scorer that sums them picks wrong)."""
        prompts = body["prompt"] if isinstance(body["prompt"], list) else [body["prompt"]]
        choices = []
        for n, prompt in enumerate(prompts):
            head, _, label = prompt.rpartition(": ")  # "...\nLabel: <label>"
            item = head.rsplit("\n", 1)[0].rsplit("\n", 1)[-1].split(": ", 1)[-1]
            answer = self.config.oracle(item)  # a multi-label oracle: a list, or names joined by ";"
            right = label in (answer if isinstance(answer, (list, tuple)) else str(answer).split(";"))
            tokens = [m.group() for m in TOKEN.finditer(prompt)] if body.get("echo") else []
            offsets = [m.start() for m in TOKEN.finditer(prompt)] if body.get("echo") else []
            label_start = len(head) + 2
            logprobs = [None] + [(-0.1 if right else -4.0) if off >= label_start else -1.0 for off in offsets[1:]]
            if not self.config.prompt_logprobs:  # logprobs only for generated tokens
                tokens, offsets, logprobs = [], [], []
            generated = self._generated(body.get("max_tokens"))
            for k in range(generated):
                tokens.append(" x")
                offsets.append(len(prompt) + 2 * k)
                logprobs.append(-12.0 if right else -0.1)
            choices.append(
                {
                    "index": n,
                    "text": (prompt if body.get("echo") else "") + " x" * generated,
                    "finish_reason": "length",
                    "logprobs": {
                        "tokens": tokens,
                        "text_offset": offsets,
                        "token_logprobs": logprobs,
                        "top_logprobs": None,
                    },
                }
            )
        return {
            "id": "cmpl-fake",
            "object": "text_completion",
            "created": int(time.time()),
            "model": body["model"],
            "choices": choices,
            "usage": {
                "prompt_tokens": sum(len(p) // 4 for p in prompts),
                "completion_tokens": 0,
                "total_tokens": sum(len(p) // 4 for p in prompts),
            },
        }

    def _generated(self, max_tokens) -> int:
        if max_tokens is None or max_tokens <= 0:
            if self.config.zero_max_tokens_unlimited:
                return self.config.unlimited_tokens
            return 16 if max_tokens is None else 0  # OpenAI's default; vLLM takes 0 with echo
        return max_tokens

    def _handler(self):
        server = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args):  # quiet
                pass

            def _send(self, status: int, payload, headers: dict | None = None):
                data = payload if isinstance(payload, bytes) else json.dumps(payload).encode()
                self.send_response(status)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(data)))
                for k, v in (headers or {}).items():
                    self.send_header(k, v)
                self.end_headers()
                try:
                    self.wfile.write(data)
                except (BrokenPipeError, ConnectionResetError):
                    pass

            def do_GET(self):
                if self.path.endswith("/models"):
                    with server.log.lock:
                        server.log.listings += 1
                        failing = server.log.listings <= server.config.listing_failures
                    if failing:
                        return self._send(503, _error("loading model", "unavailable"))
                    served = server.config.served_model.split(",")
                    return self._send(200, {"object": "list", "data": [{"id": m, "object": "model"} for m in served]})
                return self._send(404, _error(f"no route {self.path}", "not_found"))

            def do_POST(self):
                length = int(self.headers.get("Content-Length", 0))
                body = json.loads(self.rfile.read(length) or b"{}")
                with server.log.lock:
                    server.log.requests += 1
                    server.log.authorization.append(self.headers.get("Authorization", ""))
                    server.log.bodies.append(body)
                if server.config.latency:
                    time.sleep(server.config.latency)
                refused = self._refusal(body)
                if refused:
                    return self._send(*refused)
                if self.path.endswith("/completions") and "chat" not in self.path:
                    with server.log.lock:
                        server.log.completion_requests += 1
                    return self._send(200, server.completions(body))
                if not self.path.endswith("/chat/completions"):
                    return self._send(404, {"error": {"message": f"no route {self.path}", "type": "not_found"}})
                with server.log.lock:
                    server.log.chat_requests += 1
                fault = server.draw_fault()
                if fault == "429":
                    return self._send(
                        429,
                        {"error": {"message": "rate limited", "type": "rate_limit"}},
                        {"Retry-After": server.config.retry_after},
                    )
                if fault == "500":
                    return self._send(500, {"error": {"message": "boom", "type": "server_error"}})
                if fault == "slow":
                    time.sleep(server.config.slow_seconds)
                return self._send(200, server.chat(body, fault))

            def _refusal(self, body) -> tuple[int, dict] | None:
                """Configuration errors, as OpenAI words them: every request gets the same one."""
                given = self.headers.get("Authorization", "").removeprefix("Bearer ")
                if server.config.api_key is not None and given != server.config.api_key:
                    return 401, _error(f"Incorrect API key provided: {given}", "invalid_api_key")
                if body.get("model") == "no-such-model":
                    return 404, _error("The model `no-such-model` does not exist", "model_not_found")
                if not server.config.response_format and body.get("response_format"):
                    return 400, _error("response_format is not supported by this model", None, "response_format")
                kind = (body.get("response_format") or {}).get("type")
                if server.config.json_schema_500 and kind not in (None, "text", "json_object"):
                    return 500, {
                        "error": {
                            "message": LLAMACPP_VALIDATION % kind,
                            "type": "internal_server_error",
                            "param": None,
                            "code": None,
                        }
                    }
                if server.config.chat_logprobs == "refuse" and body.get("logprobs") and "messages" in body:
                    return 400, _error("logprobs is not supported by this model", None, "logprobs")
                prompt = body.get("prompt")
                if not server.config.prompt_lists and isinstance(prompt, list) and len(prompt) > 1:
                    return 500, {
                        "error": {"message": "", "type": "internal_server_error", "param": None, "code": None}
                    }  # llama-cpp-python: `assert len(body.prompt) <= 1`
                return None

        return Handler


# What llama-cpp-python's server answers for a response_format it does not know (its request model takes only
# "text" and "json_object"; the validation error surfaces as a 500).
LLAMACPP_VALIDATION = (
    "1 validation error:\n  {'type': 'literal_error', 'loc': ('body', 'response_format', 'type'), "
    "'msg': \"Input should be 'text' or 'json_object'\", 'input': '%s', "
    "'ctx': {'expected': \"'text' or 'json_object'\"}}"
)


def _error(message: str, code: str | None, param: str | None = None) -> dict:
    return {"error": {"message": message, "type": "invalid_request_error", "code": code, "param": param}}


# Batch API: /v1/files (upload, retrieve, content) and /v1/batches (create, retrieve, cancel).
# Each line of a batch is answered by the chat-completions logic above (FakeOpenAIServer.chat), with
# the server's injected faults: 429/500 become lines of the error file, the others off-schema answers.
# BatchConfig adds what only batches do: expiry (lines never answered), failed lines, a failed batch,
# and Together's dialect (purpose "batch-api", lines {custom_id, body}, UPPERCASE statuses, create's
# answer wrapped in {"job": ...}).
# ==================================================================================================

import email.parser
import email.policy
import itertools

OPENAI_STATUSES = (
    "validating",
    "in_progress",
    "finalizing",
    "completed",
    "failed",
    "expired",
    "cancelling",
    "cancelled",
)


@dataclass
class BatchConfig:
    dialect: str = "openai"  # or "together"
    polls_to_finish: int = 1  # retrieves that see "in_progress" before the batch ends
    expire_after: int | None = None  # answer this many lines, then expire: the others are never answered
    fail_lines: int = 0  # this many lines (the file's first) go to the error file (500)
    fail_batch: bool = False  # validation fails: status failed, no output at all
    line_faults: dict = field(default_factory=dict)  # line number (0-based) -> a chat fault ("offlabel", ...)
    max_lines: int = 50_000
    max_bytes: int = 200 * 1024 * 1024
    shuffle: bool = True  # the output file does not keep the input's order


@dataclass
class BatchLog:
    uploads: int = 0
    batches_created: int = 0
    lines_answered: int = 0  # lines with a 200 in an output file: what a provider bills
    lines_failed: int = 0
    retrieves: int = 0
    downloads: int = 0
    cancels: int = 0
    answered_ids: list = field(default_factory=list)  # custom_ids of billed lines, every batch
    purposes: list = field(default_factory=list)
    authorization: list = field(default_factory=list)


class BatchEndpoints:
    def __init__(self, server: FakeOpenAIServer, config: BatchConfig | None = None):
        self.server, self.config, self.log = server, config or BatchConfig(), BatchLog()
        self.files: dict[str, dict] = {}
        self.batches: dict[str, dict] = {}
        self.lock = threading.Lock()
        self._ids = itertools.count(1)

    def _id(self, prefix: str) -> str:
        return f"{prefix}-{next(self._ids)}"

    def _status(self, status: str) -> str:
        return status.upper() if self.config.dialect == "together" else status

    # --- routing ------------------------------------------------------------------------------------

    def handle(self, handler, method: str) -> bool:
        """Answer a /files or /batches request; False for any other path (the chat handler takes it)."""
        path = handler.path.split("?", 1)[0]
        match = re.match(r".*/v1/(files|batches)(?:/([^/]+))?(?:/(content|cancel))?$", path)
        if not match:
            return False
        kind, ident, action = match.groups()
        with self.lock:
            self.log.authorization.append(handler.headers.get("Authorization", ""))
        given = handler.headers.get("Authorization", "").removeprefix("Bearer ")
        if self.server.config.api_key is not None and given != self.server.config.api_key:
            handler._send(401, _error("Incorrect API key provided", "invalid_api_key"))
            return True
        length = int(handler.headers.get("Content-Length", 0))
        raw = handler.rfile.read(length) if length else b""
        route = {
            ("POST", "files", False): lambda: self.upload(handler.headers.get("Content-Type", ""), raw),
            ("GET", "files", True): lambda: self.file(ident, action),
            ("POST", "batches", False): lambda: self.create(json.loads(raw or b"{}")),
            ("GET", "batches", True): lambda: self.retrieve(ident),
            ("POST", "batches", True): lambda: self.cancel(ident),
        }.get((method, kind, ident is not None))
        status, payload = route() if route else (404, _error(f"no route {method} {path}", "not_found"))
        handler._send(status, payload)
        return True

    # --- files --------------------------------------------------------------------------------------

    def upload(self, content_type: str, raw: bytes):
        message = email.parser.BytesParser(policy=email.policy.HTTP).parsebytes(
            f"Content-Type: {content_type}\r\n\r\n".encode() + raw
        )
        parts = {part.get_param("name", header="content-disposition"): part for part in message.iter_parts()}
        if "file" not in parts or "purpose" not in parts:
            return 400, _error("multipart upload needs `file` and `purpose`", "invalid_request")
        purpose = parts["purpose"].get_content().strip()
        wanted = "batch-api" if self.config.dialect == "together" else "batch"
        if purpose != wanted:
            return 400, _error(
                f"purpose {purpose!r}: this server takes {wanted!r} for batches", "invalid_purpose", "purpose"
            )
        data = parts["file"].get_payload(decode=True)
        file_id = self._id("file")
        with self.lock:
            self.log.uploads += 1
            self.log.purposes.append(purpose)
            self.files[file_id] = {"data": data, "purpose": purpose, "filename": parts["file"].get_filename()}
        return 200, self._file_object(file_id)

    def _file_object(self, file_id: str) -> dict:
        f = self.files[file_id]
        return {
            "id": file_id,
            "object": "file",
            "bytes": len(f["data"]),
            "created_at": int(time.time()),
            "filename": f["filename"] or "upload.jsonl",
            "purpose": f["purpose"],
        }

    def file(self, file_id: str, action: str | None):
        if file_id not in self.files:
            return 404, _error(f"no file {file_id}", "not_found")
        if action != "content":
            return 200, self._file_object(file_id)
        with self.lock:
            self.log.downloads += 1
        return 200, self.files[file_id]["data"]

    def _store(self, lines: list[dict], purpose: str) -> str | None:
        if not lines:
            return None
        file_id = self._id("file")
        data = "".join(json.dumps(line) + "\n" for line in lines).encode()
        self.files[file_id] = {"data": data, "purpose": purpose, "filename": f"{file_id}.jsonl"}
        return file_id

    # --- batches ------------------------------------------------------------------------------------

    def create(self, body: dict):
        if body.get("input_file_id") not in self.files:
            return 400, _error(f"no input file {body.get('input_file_id')!r}", "invalid_file", "input_file_id")
        if body.get("endpoint") != "/v1/chat/completions":
            return 400, _error(f"endpoint {body.get('endpoint')!r} not supported", "invalid_endpoint", "endpoint")
        if self.config.dialect == "openai" and body.get("completion_window") != "24h":
            return 400, _error("completion_window must be 24h", "invalid_value", "completion_window")
        batch_id = self._id("batch")
        batch = {
            "id": batch_id,
            "object": "batch",
            "endpoint": body["endpoint"],
            "input_file_id": body["input_file_id"],
            "completion_window": body.get("completion_window", "24h"),
            "status": "validating",
            "output_file_id": None,
            "error_file_id": None,
            "errors": None,
            "created_at": int(time.time()),
            "request_counts": {"total": 0, "completed": 0, "failed": 0},
            "polls": 0,
        }
        with self.lock:
            self.log.batches_created += 1
            self.batches[batch_id] = batch
        shown = self._shown(batch)
        return 200, {"job": shown, "warning": ""} if self.config.dialect == "together" else shown

    def _shown(self, batch: dict) -> dict:
        return {**{k: v for k, v in batch.items() if k != "polls"}, "status": self._status(batch["status"])}

    def retrieve(self, batch_id: str):
        batch = self.batches.get(batch_id)
        if batch is None:
            return 404, _error(f"no batch {batch_id}", "not_found")
        with self.lock:
            self.log.retrieves += 1
            if batch["status"] in ("validating", "in_progress"):
                batch["status"] = "in_progress"
                batch["polls"] += 1
                if batch["polls"] > self.config.polls_to_finish:
                    self._run(batch)
            elif batch["status"] == "cancelling":
                batch["status"] = "cancelled"
        return 200, self._shown(batch)

    def cancel(self, batch_id: str):
        batch = self.batches.get(batch_id)
        if batch is None:
            return 404, _error(f"no batch {batch_id}", "not_found")
        with self.lock:
            self.log.cancels += 1
            if batch["status"] in ("validating", "in_progress"):
                batch["status"] = "cancelling"
        return 200, self._shown(batch)

    def _run(self, batch: dict) -> None:
        """Answer the batch's lines (under self.lock): the output and error files, and the final status."""
        data = self.files[batch["input_file_id"]]["data"]
        lines = [json.loads(line) for line in data.decode().splitlines() if line.strip()]
        problem = self._invalid(data, lines)
        if problem or self.config.fail_batch:
            batch["status"] = "failed"
            batch["errors"] = {"object": "list", "data": [{"code": "invalid_file", "message": problem or "failed"}]}
            return
        batch["request_counts"]["total"] = len(lines)
        answered = lines if self.config.expire_after is None else lines[: self.config.expire_after]
        output, errors = [], []
        for n, line in enumerate(answered):
            status, body = self._answer(line["body"], n < self.config.fail_lines, self.config.line_faults.get(n))
            record = {
                "id": f"batch_req_{n}",
                "custom_id": line["custom_id"],
                "response": {"status_code": status, "request_id": f"req_{n}", "body": body},
                "error": None,
            }
            (output if status == 200 else errors).append(record)
        if self.config.shuffle:
            random.Random(len(lines)).shuffle(output)
        self.log.lines_answered += len(output)
        self.log.lines_failed += len(errors)
        self.log.answered_ids += [r["custom_id"] for r in output]
        batch["request_counts"].update(completed=len(output), failed=len(errors))
        batch["output_file_id"] = self._store(output, "batch_output")
        batch["error_file_id"] = self._store(errors, "batch_output")
        batch["status"] = "completed" if self.config.expire_after is None else "expired"

    def _invalid(self, data: bytes, lines: list[dict]) -> str | None:
        if len(lines) > self.config.max_lines or len(data) > self.config.max_bytes:
            return f"{len(lines)} lines, {len(data)} bytes: over this server's limits"
        keys = {"custom_id", "body"} if self.config.dialect == "together" else {"custom_id", "method", "url", "body"}
        bad = next((n for n, line in enumerate(lines) if set(line) != keys), None)
        if bad is not None:
            return f"line {bad + 1} has fields {sorted(lines[bad])}, expected {sorted(keys)}"
        if len({line["custom_id"] for line in lines}) != len(lines):
            return "custom_id values are not unique"
        return None

    def _answer(self, body: dict, failing: bool, fault: str | None) -> tuple[int, dict]:
        if failing:
            return 500, _error("the model failed on this request", "server_error")
        fault = fault or self.server.draw_fault()
        if fault == "429":
            return 429, _error("rate limited", "rate_limit_exceeded")
        if fault == "500":
            return 500, _error("boom", "server_error")
        refused = None
        if body.get("model") == "no-such-model":
            refused = 404, _error("The model `no-such-model` does not exist", "model_not_found")
        return refused or (200, self.server.chat(body, None if fault == "slow" else fault))


def with_batch_routes(handler_class, server: FakeOpenAIServer):
    """The chat handler, with /v1/files and /v1/batches answered by `server.batches` first."""

    class BatchRoutes(handler_class):
        def do_POST(self):
            if not server.batches.handle(self, "POST"):
                super().do_POST()

        def do_GET(self):
            if not server.batches.handle(self, "GET"):
                super().do_GET()  # /v1/models

    return BatchRoutes


def noisy_oracle(oracle: Callable[[str], str], labels, error_rate: float, seed: int = 0) -> Callable[[str], str]:
    """The oracle, answering a wrong label for a seeded `error_rate` share of items: a SIMULATED model of
    known accuracy (about 1 - error_rate). Which items get a wrong answer, and which wrong label, depends only
    on the item's text (whitespace-insensitive) and the seed, so every request and rerun answers an item alike."""
    import hashlib

    labels = list(labels)

    def answer(text: str) -> str:
        right = oracle(text)
        digest = hashlib.sha256(f"{seed}|{' '.join(text.split())}".encode()).digest()
        if int.from_bytes(digest[:8], "big") / 2**64 >= error_rate:
            return right
        others = [label for label in labels if label != right]
        return others[int.from_bytes(digest[8:16], "big") % len(others)]

    return answer


def binomial_spread(accuracy: float, n: int, z: float = 3.0) -> float:
    """How far an accuracy measured on n items may lie from the true rate `accuracy`: z binomial standard
    deviations, sqrt(p (1 - p) / n) each (z=3: exceeded about 3 times in 1000)."""
    return z * math.sqrt(accuracy * (1 - accuracy) / n)


# ===========================================================================================
