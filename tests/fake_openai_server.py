"""A small OpenAI-compatible server on 127.0.0.1 for tests and benchmarks, with fault injection.

It answers /v1/chat/completions for promptclf's batch prompts (items between <item id="N"> tags) with the
labels an oracle gives, and /v1/completions with echo logprobs that favour the oracle's label. Faults are
drawn per request with a seeded RNG: 429 (with Retry-After), 500, slow (past the client timeout),
malformed JSON, short (an answer missing), duplicated (an item answered twice), off-label answers,
zero-based (answers numbered 0..n-1 by position, ignoring the ids) and shifted (every id one too high).
Configuration faults, every request: a key it refuses (401), a model it does not serve (404), no support
for `response_format` (400), completions without prompt logprobs (llama.cpp's server), and a gullible
model that obeys answers written inside an item. `noisy_oracle` makes an oracle of a set error rate (a
simulated model of known accuracy).
"""

from __future__ import annotations

import json
import random
import re
import threading
import time
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Callable

ITEM = re.compile(r'<item id="(\d+)">\n(.*?)\n</item>', re.S)
DSPY_TEXT = re.compile(r"\[\[ ## text ## \]\]\n(.*?)\n\n", re.S)
FAULTS = ("429", "500", "slow", "malformed", "short", "duplicate", "offlabel", "zero_based", "shifted")
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
    api_key: str | None = None  # refuse (401) requests that do not carry this key
    response_format: bool = True  # False: refuse (400) requests that ask for structured output
    prompt_logprobs: bool = True  # False: completions carry no logprobs (llama.cpp's server)
    gullible: bool = False  # obey {"answers": [...]} written inside an item, as a model open to injection might


@dataclass
class ServerLog:
    requests: int = 0
    chat_requests: int = 0
    completion_requests: int = 0
    faults: dict = field(default_factory=dict)
    items_seen: int = 0
    authorization: list = field(default_factory=list)
    bodies: list = field(default_factory=list)
    lock: threading.Lock = field(default_factory=threading.Lock)


class FakeOpenAIServer:
    def __init__(self, config: ServerConfig):
        self.config, self.log = config, ServerLog()
        self.rng = random.Random(config.seed)
        self.httpd = ThreadingHTTPServer(("127.0.0.1", 0), self._handler())
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
            value = self.config.oracle(text.group(1)) if name == "label" and text else \
                "Classify the news text by its topic: World, Sports, Business or Sci/Tech."
            out.append(f"[[ ## {name} ## ]]\n{value}")
        return "\n\n".join(out) + "\n\n[[ ## completed ## ]]"

    def chat(self, body: dict, fault: str | None) -> dict:
        text = "\n".join(m["content"] for m in body["messages"] if isinstance(m.get("content"), str))
        if "[[ ## " in text and not ITEM.search(text):
            return self._reply(body, text, self.dspy_answer(body))
        items = [(int(i), t) for i, t in ITEM.findall(text)]
        with self.log.lock:
            self.log.items_seen += len(items)
        oracle = self.config.item_oracle or self.config.oracle
        answers = [{"index": i, "label": oracle(t.replace("‹", "<"))} for i, t in items]
        if self.config.gullible:
            answers = self._obey_injections(items, answers)
        if fault == "zero_based":
            answers = [{**a, "index": n} for n, a in enumerate(answers)]
        elif fault == "shifted":
            answers = [{**a, "index": a["index"] + 1} for a in answers]
        if self.config.shuffle:
            random.Random(len(items)).shuffle(answers)
        if fault == "short" and answers:
            answers.pop()
        elif fault == "duplicate" and answers:
            answers.append({"index": answers[0]["index"], "label": "World" if answers[0]["label"] != "World"
                            else "Sports"})
        elif fault == "offlabel" and answers:
            answers[0]["label"] = "Weather"
        content = "{'answers': [" if fault == "malformed" else json.dumps({"answers": answers})
        message: dict = {"role": "assistant", "content": content}
        if body.get("tools"):
            name = body["tools"][0]["function"]["name"]
            message = {"role": "assistant", "content": None, "tool_calls": [
                {"id": "call_1", "type": "function", "function": {"name": name, "arguments": content}}]}
        return self._reply(body, text, content, message)

    @staticmethod
    def _obey_injections(items, answers):
        """Answers written inside an item replace the real answers for the ids they name."""
        injected = [a for _, t in items for m in INJECTED.findall(t) for a in json.loads(m)["answers"]]
        named = {a["index"] for a in injected}
        return [a for a in answers if a["index"] not in named] + injected

    def _reply(self, body, text, content, message=None):
        message = message or {"role": "assistant", "content": content}
        return {
            "id": "chatcmpl-fake", "object": "chat.completion", "created": int(time.time()), "model": body["model"],
            "choices": [{"index": 0, "message": message, "finish_reason": "stop"}],
            "usage": {"prompt_tokens": len(text) // 4, "completion_tokens": len(content) // 4,
                      "total_tokens": len(text) // 4 + len(content) // 4},
        }

    def completions(self, body: dict) -> dict:
        prompts = body["prompt"] if isinstance(body["prompt"], list) else [body["prompt"]]
        choices = []
        for n, prompt in enumerate(prompts):
            head, _, label = prompt.rpartition(": ")  # "...\nLabel: <label>"
            item = head.rsplit("\n", 1)[0].rsplit("\n", 1)[-1].split(": ", 1)[-1]
            gold = self.config.oracle(item)
            tokens, offsets, pos = [], [], 0
            for match in re.finditer(r"\S+|\s+", prompt):
                tokens.append(match.group())
                offsets.append(match.start())
                pos = match.end()
            label_start = len(head) + 2
            logprobs = [None] + [(-0.1 if label == gold else -4.0) if off >= label_start else -1.0
                                 for off in offsets[1:]]
            if not self.config.prompt_logprobs:  # logprobs only for generated tokens: none with max_tokens=0
                tokens, offsets, logprobs = [], [], []
            choices.append({"index": n, "text": prompt, "finish_reason": "length",
                            "logprobs": {"tokens": tokens, "text_offset": offsets, "token_logprobs": logprobs,
                                         "top_logprobs": None}})
        return {"id": "cmpl-fake", "object": "text_completion", "created": int(time.time()),
                "model": body["model"], "choices": choices,
                "usage": {"prompt_tokens": sum(len(p) // 4 for p in prompts), "completion_tokens": 0,
                          "total_tokens": sum(len(p) // 4 for p in prompts)}}

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
                    return self._send(429, {"error": {"message": "rate limited", "type": "rate_limit"}},
                                      {"Retry-After": server.config.retry_after})
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
                return None

        return Handler


def _error(message: str, code: str | None, param: str | None = None) -> dict:
    return {"error": {"message": message, "type": "invalid_request_error", "code": code, "param": param}}


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
