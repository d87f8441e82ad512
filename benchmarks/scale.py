"""Benchmark: a big labelling job through the CLI, side by side with a bare async client on the same server.

Data: synthetic rows (numpy default_rng(SEED)): "row <i>: " and 12 words drawn from a 2,000-word vocabulary,
labelled by the fake server's oracle (a hash of the text picks one of 4 labels). No split: every row is labelled.
Server: tests/fake_openai_server.py in this process, 50 ms a request; promptclf runs as its own process
(`promptclf classify --concurrency 32 --batch-size 20 --quiet`, a fresh cache), polled for its peak RSS
(psutil, the process and its children). The bare client is the `openai` package's AsyncOpenAI in its own
process: the same prompt text and response format promptclf sends (one captured request body, its items
swapped), 32 requests in flight, 20 items a request, no promptclf. Ideal requests = ceil(rows / 20).
A second promptclf run over the same file is the cached rerun. `--fail-share 0.01`: that share of rows (seeded)
is never answered (the oracle names a label outside the set), and the output is checked: every row present,
exactly those rows with an error.

Usage: python benchmarks/scale.py --rows 10000 100000 [1000000] [--fail-share 0.01] [--no-bare]
(`--no-bare`: promptclf only, for the rows where the bare client's minutes are not needed.)
"""

from __future__ import annotations

import argparse
import hashlib
import json
import math
import os
import platform
import subprocess
import sys
import tempfile
import time
from http.server import ThreadingHTTPServer
from pathlib import Path

import numpy as np
import pandas as pd
import psutil

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from tests.fake_openai_server import FakeOpenAIServer, ServerConfig  # noqa: E402

# 32 connections open at once: the standard library's listen backlog of 5 would reset some of them.
ThreadingHTTPServer.request_queue_size = 128

LABELS = ["World", "Sports", "Business", "Sci/Tech"]
SEED, LATENCY, CONCURRENCY, BATCH = 0, 0.05, 32, 20
MARK = "zzfail"  # a word only the rows chosen never to be answered carry


def oracle(text: str) -> str:
    if MARK in text:
        return "Nonsense"
    return LABELS[int(hashlib.sha256(text.strip().encode()).hexdigest(), 16) % len(LABELS)]


def make_rows(n: int, fail_share: float, path: Path) -> set[int]:
    rng = np.random.default_rng(SEED)
    vocabulary = np.array([f"w{i}" for i in range(2000)])
    failing = set(rng.choice(n, size=int(n * fail_share), replace=False).tolist()) if fail_share else set()
    with open(path, "w") as f:
        f.write("id,text\n")
        for start in range(0, n, 100_000):
            size = min(100_000, n - start)
            words = vocabulary[rng.integers(0, len(vocabulary), size=(size, 12))]
            for offset, row in enumerate(words):
                i = start + offset
                f.write(f"{i},row {i}: {' '.join(row)}{' ' + MARK if i in failing else ''}\n")
    return failing


def run_measured(argv: list[str], env: dict) -> tuple[float, float, int]:
    """(wall seconds, peak RSS in MB of the process and its children, exit code)."""
    started = time.perf_counter()
    process = subprocess.Popen(argv, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    watched, peak = psutil.Process(process.pid), 0
    while process.poll() is None:
        try:
            peak = max(peak, sum(p.memory_info().rss for p in [watched, *watched.children(recursive=True)]))
        except psutil.Error:
            pass
        time.sleep(0.1)
    err = process.stderr.read()
    if process.returncode not in (0, 1):
        print(err[-2000:], file=sys.stderr)
    return time.perf_counter() - started, peak / 2**20, process.returncode


BARE = r"""
import asyncio, json, sys, time
from openai import AsyncOpenAI
body, base_url, texts_file, concurrency, batch = json.loads(sys.argv[1]), sys.argv[2], sys.argv[3], int(sys.argv[4]), int(sys.argv[5])
texts = [line.rstrip("\n").split(",", 1)[1] for line in open(texts_file)][1:]
template = body["messages"]
def messages(items):
    rendered = "\n\n".join(f'<item id="{i + 1}">\n{t}\n</item>' for i, t in enumerate(items))
    return [{**m, "content": m["content"].replace("@@ITEMS@@", rendered).replace("@@N@@", str(len(items)))}
            for m in template]
async def main():
    client = AsyncOpenAI(base_url=base_url, api_key="not-needed")
    gate, answered = asyncio.Semaphore(concurrency), 0
    async def one(start):
        nonlocal answered
        async with gate:
            response = await client.chat.completions.create(model=body["model"], messages=messages(texts[start:start + batch]),
                response_format=body.get("response_format"), temperature=0, max_tokens=body.get("max_tokens", 1000),
                logprobs=body.get("logprobs"), top_logprobs=body.get("top_logprobs"))
            answered += len(json.loads(response.choices[0].message.content)["answers"])
    started = time.perf_counter()
    await asyncio.gather(*(one(s) for s in range(0, len(texts), batch)))
    print(json.dumps({"wall": time.perf_counter() - started, "answered": answered}))
asyncio.run(main())
"""


def request_template(server: FakeOpenAIServer) -> dict:
    """The body promptclf sent for its last request, with its items replaced by a placeholder."""
    import re

    body = json.loads(json.dumps(server.log.bodies[0]))
    for message in body["messages"]:
        content = re.sub(r"following \d+ item", "following @@N@@ item", message["content"])
        items = list(re.finditer(r'<item id="\d+">\n.*?\n</item>', content, re.S))
        if items:
            message["content"] = content[: items[0].start()] + "@@ITEMS@@" + content[items[-1].end() :]
    return body


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, nargs="+", default=[10_000, 100_000])
    parser.add_argument("--fail-share", type=float, default=0.0)
    parser.add_argument("--no-bare", action="store_true", help="skip the bare client (its columns show -)")
    args = parser.parse_args()
    print(
        f"machine: {platform.node()}, {os.cpu_count()} cores, {psutil.virtual_memory().total / 2**30:.0f} GiB; "
        f"python {platform.python_version()}; {time.strftime('%Y-%m-%d %H:%M')}"
    )
    print(
        f"data: synthetic rows, seed {SEED}; server latency {LATENCY * 1000:.0f} ms; concurrency {CONCURRENCY}, "
        f"batch {BATCH}; fail share {args.fail_share}"
    )
    print(
        f"{'rows':>9} {'wall s':>8} {'items/s':>8} {'peak MB':>8} {'requests':>9} {'ideal':>7} {'rerun s':>8} "
        f"{'rerun req':>9} {'bare items/s':>12} {'ratio':>6} {'error rows':>11}"
    )
    with FakeOpenAIServer(ServerConfig(oracle=oracle, latency=LATENCY, shuffle=False)) as server:
        for n in args.rows:
            with tempfile.TemporaryDirectory() as tmp:
                measure(server, n, args.fail_share, Path(tmp), bare=not args.no_bare)


def measure(server: FakeOpenAIServer, n: int, fail_share: float, tmp: Path, bare: bool = True) -> None:
    src, out = tmp / "in.csv", tmp / "out.csv"
    failing = make_rows(n, fail_share, src)
    env = {**os.environ, "PROMPTCLF_HOME": str(tmp / "home")}
    argv = [
        "promptclf",
        "classify",
        "--input",
        str(src),
        "--output",
        str(out),
        "--labels",
        ",".join(LABELS),
        "--model",
        f"openai-compatible:bench@{server.base_url}",
        "--concurrency",
        str(CONCURRENCY),
        "--batch-size",
        str(BATCH),
        "--quiet",
        "--stop-after-failures",
        "0",
    ]
    server.log.bodies.clear()
    before = server.log.chat_requests
    wall, peak, code = run_measured(argv, env)
    requests = server.log.chat_requests - before
    errors = check_output(out, n, failing)
    body = request_template(server)
    server.log.bodies.clear()
    before = server.log.chat_requests
    rerun, _, _ = run_measured(argv, env)
    rerun_requests = server.log.chat_requests - before
    bare_rate = bare_client(server, body, src, n) if bare else None
    server.log.bodies.clear()
    shown = f"{bare_rate:>12.0f} {n / wall / bare_rate:>6.2f}" if bare_rate else f"{'-':>12} {'-':>6}"
    print(
        f"{n:>9} {wall:>8.1f} {n / wall:>8.0f} {peak:>8.0f} {requests:>9} {math.ceil(n / BATCH):>7} {rerun:>8.1f} "
        f"{rerun_requests:>9} {shown} {errors:>11}  (exit {code})",
        flush=True,
    )


def bare_client(server: FakeOpenAIServer, body: dict, src: Path, n: int) -> float:
    """Items a second through the openai package's AsyncOpenAI alone, same body, same concurrency."""
    bare = subprocess.run(
        [sys.executable, "-c", BARE, json.dumps(body), server.base_url, str(src), str(CONCURRENCY), str(BATCH)],
        capture_output=True,
        text=True,
    )
    if bare.returncode:
        raise SystemExit(f"the bare client failed: {bare.stderr[-2000:]}")
    return n / json.loads(bare.stdout)["wall"]


def check_output(out: Path, n: int, failing: set[int]) -> str:
    """'ok (k)' when every row is there in order and exactly the failing rows carry an error."""
    ids, with_error = 0, set()
    for chunk in pd.read_csv(out, chunksize=100_000, keep_default_na=False, dtype=str):
        if list(chunk["id"].astype(int)) != list(range(ids, ids + len(chunk))):
            return "ROWS OUT OF ORDER"
        with_error |= set((chunk.index[chunk["error"] != ""]).tolist())
        ids += len(chunk)
    if ids != n:
        return f"{n - ids} ROWS MISSING"
    return f"ok ({len(with_error)})" if with_error == failing else f"WRONG ({len(with_error ^ failing)})"


if __name__ == "__main__":
    main()
