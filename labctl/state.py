"""The state directory (`.lab/` or $LAB_STATE_DIR): a cache of ids, the target and key paths.

Tags on the cloud resources are the truth; this file only saves look-ups and is rebuilt when missing.
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

STATE_FILE = "state.json"


def state_dir() -> Path:
    """The state directory, created with mode 0700."""
    path = Path(os.environ.get("LAB_STATE_DIR") or ".lab").resolve()
    path.mkdir(mode=0o700, parents=True, exist_ok=True)
    os.chmod(path, 0o700)
    return path


def key_dir() -> Path:
    """The private key directory in the state dir, mode 0700 (also when it already existed)."""
    path = state_dir() / "keys"
    path.mkdir(mode=0o700, exist_ok=True)
    os.chmod(path, 0o700)
    return path


def load_state() -> dict[str, Any]:
    path = state_dir() / STATE_FILE
    try:
        return json.loads(path.read_text())
    except (FileNotFoundError, ValueError):
        return {}


def save_state(state: dict[str, Any]) -> None:
    """Write the state atomically with mode 0600."""
    path = state_dir() / STATE_FILE
    tmp = path.with_suffix(".tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    os.fchmod(fd, 0o600)  # a leftover temp file keeps its old mode through O_CREAT
    with os.fdopen(fd, "w") as f:
        json.dump(state, f, indent=2, sort_keys=True)
        f.write("\n")
    os.replace(tmp, path)


def update_state(**changes: Any) -> dict[str, Any]:
    state = load_state()
    state.update(changes)
    save_state(state)
    return state
