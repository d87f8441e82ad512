"""Every module a docstring, comment or docs page names exists: `promptclf/<path>.py` is a file, and
`promptclf.<module>[.<name>...]` imports and has the attributes named."""

from __future__ import annotations

import importlib
import re
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
# `promptclf.` names that are not modules: a file name, the run's span and its telemetry attributes
NOT_MODULES = {"json", "run", "items", "cache_hits", "failed", "requests", "retries", "reasks", "stopped"}


def sources() -> list[Path]:
    return sorted([*(ROOT / "promptclf").rglob("*.py"), *(ROOT / "docs").rglob("*.md"), ROOT / "README.md"])


def resolves(dotted: str) -> bool:
    parts = dotted.split(".")
    for i in range(len(parts), 0, -1):
        try:
            found = importlib.import_module(".".join(parts[:i]))
        except ImportError:
            continue
        for name in parts[i:]:
            if not hasattr(found, name):
                return False
            found = getattr(found, name)
        return True
    return False


def test_every_module_path_named_exists():
    named = {
        (path.relative_to(ROOT).as_posix(), ref)
        for path in sources()
        for ref in re.findall(r"\bpromptclf/[\w/]+\.py\b", path.read_text(encoding="utf-8"))
    }
    assert named and [(where, ref) for where, ref in sorted(named) if not (ROOT / ref).is_file()] == []


def test_every_dotted_module_name_resolves():
    named = {
        (path.relative_to(ROOT).as_posix(), ref)
        for path in sources()
        for ref in re.findall(r"(?<![\w/])promptclf(?:\.\w+)+", path.read_text(encoding="utf-8"))
        if ref.split(".")[1] not in NOT_MODULES
    }
    assert named and [(where, ref) for where, ref in sorted(named) if not resolves(ref)] == []
