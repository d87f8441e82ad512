"""promptclf against a real llama.cpp server: llama-cpp-python's OpenAI-compatible server (PyPI
llama-cpp-python[server], `pip install "promptclf[server-tests]"`) serving the embedded Gemma 3 270M GGUF
with `--chat_format gemma` on 127.0.0.1, started and stopped by this script (tests/llamacpp_server.py).

Every structured-output mode labels the first --chat-items rows of the test split (batch_size --batch-size,
one request at a time); the `completions:` scorer labels the first --score-items rows and is compared with
the local scorer (`local`, the same model de-quantised, the same prompts). Printed: a table of mode,
works / fails (and why), requests per item, accuracy, items/s; and the completions/local agreement.

Data: AG News test.csv, the seed-0 split of benchmarks/_common.py (SPLIT_TEXT), test rows from the start.
Run it `nice`d, with 1-2 server threads: it is CPU-bound for minutes.

    nice python benchmarks/llamacpp_server.py --threads 2 --chat-items 4 --score-items 50
    nice python benchmarks/llamacpp_server.py --threads 1 --servers 2 --modes "" --score-items 50 \\
        --cache /tmp/llama_answers --port 18431      # the scorer only, on two servers, resumable
"""

import argparse
import logging
import signal
import sys
import time
from concurrent.futures import ThreadPoolExecutor
from contextlib import ExitStack

from _common import LABELS, SPLIT_TEXT, ag_split

from promptclf import Classifier, ConfigError, LabellingError
from promptclf.methods.chat import STRUCTURED_MODES
from tests.llamacpp_server import llamacpp_server


def run(model: str, rows: list[dict], cache=False, **options) -> dict:
    """Label rows; failed items count as wrong. Returns the row of the table."""
    clf = Classifier(LABELS, model, cache=cache, **options)
    texts, gold = [r["text"] for r in rows], [r["label"] for r in rows]
    started = time.perf_counter()
    status = "works"
    try:
        preds = clf.predict(texts)
    except LabellingError as err:
        preds, status = err.predictions, f"works; {len(err.failures)} items unanswered after re-asks"
    except ConfigError as err:
        preds, status = [None] * len(rows), f"fails: {err}"
    except Exception as err:  # noqa: BLE001 - a crash is a row of the table, not the end of the run
        preds, status = [None] * len(rows), f"crashed: {type(err).__name__}: {err}"
    wall = time.perf_counter() - started
    labels = [p.label if p else None for p in preds]
    confident = [p.confidence for p in preds if p and p.confidence is not None]
    return {
        "status": status,
        "labels": labels,
        "requests": clf.report.requests / len(rows),
        "accuracy": sum(a == b for a, b in zip(labels, gold)) / len(rows),
        "items_s": len(rows) / wall,
        "confidence": f"{len(confident)}/{len(rows)}",
    }


def run_split(model_at, urls: list[str], rows: list[dict], **options) -> dict:
    """run() with the rows dealt into len(urls) parts, one per server, labelled at the same time: llama.cpp's
    server answers one request at a time, so on 2 cores two 1-thread servers finish in about half the time.
    The server's URL is part of the cache key: a resumed run needs the same --servers and --port."""
    urls = urls[: len(rows)]
    parts = [rows[k :: len(urls)] for k in range(len(urls))]
    started = time.perf_counter()
    pool = ThreadPoolExecutor(len(urls))
    try:
        done = list(pool.map(lambda u, part: run(model_at(u), part, **options), urls, parts))
    except BaseException:  # on kill, stop the servers now rather than after every part is labelled
        pool.shutdown(wait=False, cancel_futures=True)
        raise
    pool.shutdown()
    labels = [None] * len(rows)
    for k, row in enumerate(done):
        labels[k :: len(urls)] = row["labels"]
    gold = [r["label"] for r in rows]
    confident = sum(int(row["confidence"].split("/")[0]) for row in done)
    return {
        "status": "; ".join(sorted({row["status"] for row in done})),
        "labels": labels,
        "requests": sum(row["requests"] * len(part) for row, part in zip(done, parts)) / len(rows),
        "accuracy": sum(a == b for a, b in zip(labels, gold)) / len(rows),
        "items_s": len(rows) / (time.perf_counter() - started),
        "confidence": f"{confident}/{len(rows)}",
    }


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--chat-items", type=int, default=4)
    parser.add_argument("--batch-size", type=int, default=4)
    parser.add_argument("--score-items", type=int, default=50)
    parser.add_argument("--timeout", type=float, default=600.0)
    parser.add_argument("--modes", default=",".join(STRUCTURED_MODES))
    parser.add_argument("--log", default=None, help="write the server's output here")
    parser.add_argument(
        "--cache",
        default=False,
        help="an answer cache directory for the `completions:` run, so an interrupted run resumes "
        "(requests per item then counts only the requests of this run); give --port too",
    )
    parser.add_argument(
        "--port",
        type=int,
        default=None,
        help="the server's port (default: a free one); with --servers N, ports PORT to PORT+N-1",
    )
    parser.add_argument(
        "--servers",
        type=int,
        default=1,
        help="servers of --threads threads each; the `completions:` items are split among them",
    )
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.WARNING, stream=sys.stderr)
    test = ag_split()[2]
    print(
        f"Data: {SPLIT_TEXT}; test rows 0-{args.chat_items - 1} (chat), 0-{args.score_items - 1} (scoring)", flush=True
    )
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))  # so the server is stopped on `kill`
    score_rows = test[: args.score_items]
    with ExitStack() as servers:
        urls = [
            servers.enter_context(
                llamacpp_server(
                    threads=args.threads,
                    log_path=f"{args.log}.{k}" if args.log and k else args.log,
                    port=args.port + k if args.port else None,
                )
            )
            for k in range(args.servers)
        ]
        url = urls[0]
        print(
            "| path | works / fails | requests per item | accuracy | items/s | with confidence |\n"
            "|---|---|---|---|---|---|",
            flush=True,
        )
        for mode in [m for m in args.modes.split(",") if m]:
            row = run(
                f"openai-compatible:gemma-3-270m@{url}",
                test[: args.chat_items],
                structured=mode,
                batch_size=args.batch_size,
                concurrency=1,
                timeout=args.timeout,
            )
            print(
                f"| chat, `structured={mode!r}` ({args.chat_items} items) | {row['status'][:160]} | "
                f"{row['requests']:.2f} | {row['accuracy']:.3f} | {row['items_s']:.3f} | {row['confidence']} |",
                flush=True,
            )
        served = run_split(
            lambda u: f"completions:gemma-3-270m@{u}", urls, score_rows, cache=args.cache, timeout=args.timeout
        )
        print(
            f"| `completions:` ({len(score_rows)} items) | {served['status'][:160]} | {served['requests']:.2f} | "
            f"{served['accuracy']:.3f} | {served['items_s']:.3f} | {served['confidence']} |",
            flush=True,
        )
    local = run("local", score_rows)
    print(
        f"| `local`, same prompts, in this process ({len(score_rows)} items) | {local['status'][:160]} | - | "
        f"{local['accuracy']:.3f} | {local['items_s']:.3f} | {local['confidence']} |",
        flush=True,
    )
    same = sum(a == b for a, b in zip(served["labels"], local["labels"]))
    print(
        f"\ncompletions: picks the local scorer's label for {same} of {len(score_rows)} items "
        f"({same / len(score_rows):.0%})"
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
