"""Files that several processes share: written whole or not at all, and a directory trained into by one process at
a time (Ray actors, GridSearchCV's jobs and parallel CLI runs with the same examples train the same directory)."""

from __future__ import annotations

import logging
import os
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

log = logging.getLogger("promptclf")


def write_atomically(path: Path, text: str) -> None:
    """`text` into `path`, written under a temporary name beside it and renamed over it: a reader, or a process
    stopped midway, finds the file as it was before or as it is now, never half of it."""
    path.parent.mkdir(parents=True, exist_ok=True)
    partial = path.with_name(f".{path.name}.{uuid.uuid4().hex}.partial")
    try:
        partial.write_text(text)
        os.replace(partial, path)
    finally:
        partial.unlink(missing_ok=True)


@contextmanager
def directory_lock(directory: Path, what: str = "training") -> Iterator[None]:
    """Held while one process writes `directory`; another waits for it, then finds what it wrote. The lock file
    sits beside the directory."""
    from filelock import FileLock, Timeout

    directory.parent.mkdir(parents=True, exist_ok=True)
    lock = FileLock(f"{directory}.lock")
    try:
        lock.acquire(timeout=0)
    except Timeout:
        log.warning("promptclf: another process is %s %s; waiting for it", what, directory)
        lock.acquire()
    try:
        yield
    finally:
        lock.release()
