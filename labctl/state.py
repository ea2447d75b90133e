"""The state directory (`.lab/` or $LAB_STATE_DIR): a cache of ids, the target and key paths.

Tags on the cloud resources are the truth; this file only saves look-ups and is rebuilt when missing.
A damaged file (not JSON, not an object, a field of the wrong type, a directory) is never guessed around
nor silently rewritten: it names which lab, region and target this directory is about, and a wrong guess
could create a second lab. Every task stops with one line naming the file and the fix (delete it).
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

from labctl.errors import LabError

STATE_FILE = "state.json"

_TEXT_FIELDS = (
    "target",
    "region",
    "lab",
    "endpoint",
    "key_name",
    "key_file",
    "security_group_id",
    "source_cidr",
    "image_id",
    "mode",
)
_LIST_FIELDS = ("instance_ids", "students")
_FLAG_FIELDS = ("shared_sg",)


class DamagedState(LabError):
    """state.json cannot be read as labctl wrote it."""


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
    """The recorded state ({} when there is none); DamagedState (one line) when the file is damaged."""
    path = state_dir() / STATE_FILE
    try:
        text = path.read_text()
    except FileNotFoundError:
        return {}
    except (OSError, UnicodeDecodeError) as exc:
        raise _damaged(path, getattr(exc, "strerror", None) or str(exc)) from None
    try:
        state = json.loads(text)
    except ValueError:
        raise _damaged(path, "not JSON") from None
    problem = shape_problem(state)
    if problem:
        raise _damaged(path, problem)
    return state


def shape_problem(state: object) -> str | None:
    """What makes `state` unlike the object labctl writes, or None when it is fine."""
    if not isinstance(state, dict):
        return f"holds {_json_type(state)}, not an object"
    for name, value in state.items():
        if name in _TEXT_FIELDS and not (value is None or isinstance(value, str)):
            return f"{name} is {_json_type(value)}, not text"
        if name in _LIST_FIELDS and not (
            value is None or (isinstance(value, list) and all(isinstance(v, str) for v in value))
        ):
            return f"{name} is {_json_type(value)}, not a list of text"
        if name in _FLAG_FIELDS and not (value is None or isinstance(value, bool)):
            return f"{name} is {_json_type(value)}, not true/false"
    return None


def _json_type(value: object) -> str:
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "a boolean"
    if isinstance(value, (int, float)):
        return f"the number {value}"
    if isinstance(value, str):
        return "text"
    return {list: "a list", dict: "an object"}.get(type(value), type(value).__name__)


def _damaged(path: Path, why: str) -> DamagedState:
    if path.is_dir():
        return DamagedState(
            f"{path} is damaged (a directory, not a file): remove it (`rm -r {path}`), "
            "the next run rebuilds it from the tags"
        )
    return DamagedState(f"{path} is damaged ({why}): delete it, the next run rebuilds it from the tags")


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
