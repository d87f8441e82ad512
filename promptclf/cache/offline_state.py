"""Where the offline classifier keeps what it learned from the user's examples: $PROMPTCLF_HOME/offline/<id>-<format>
(promptclf.methods.offline writes and reads it; `promptclf cache export` names what it does not carry)."""

from __future__ import annotations

import json
from pathlib import Path

from promptclf.cache.store import home

STATE = "offline.json"
# The trained state's format, in its directory's name (not in the identity: the answers are the same). 2: SetFit's
# head is JSON (methods/setfit_head.py); before, a pickle, which is never read, so those directories train again.
STATE_FORMAT = 2


def state_dir(identity: str) -> Path:
    """The directory of the offline classifier with this identity: state of another format is never read."""
    return home() / "offline" / f"{identity[:24]}-{STATE_FORMAT}"


def trained_state_dirs() -> list[Path]:
    """The state directories this promptclf reads that hold what was learned from examples: models saved there,
    or a choice cross-validated on them. Zero-shot state, remade in seconds, is not among them."""
    root = home() / "offline"
    if not root.is_dir():
        return []
    return sorted(
        d
        for d in root.iterdir()
        if d.name.endswith(f"-{STATE_FORMAT}")
        and (d / STATE).is_file()
        and (any(p.is_dir() for p in d.iterdir()) or _cross_validated(d / STATE))
    )


def _cross_validated(state: Path) -> bool:
    try:
        return bool(json.loads(state.read_text()).get("folds"))
    except (ValueError, AttributeError):
        return False
