"""The state directory (`.lab/` or $LAB_STATE_DIR) and `state.json`, read and written as one `LabState`.

Tags on the cloud resources are the truth; the state file only saves look-ups and is rebuilt when missing.
labctl reads and writes it only through `LabState` (`LabState.load()`, `state.save()`); `load_state()` is
the file as JSON, for tools and tests.
A damaged file (not JSON, not an object, a field of the wrong type, a directory) is never guessed around
nor silently rewritten: it names which lab, region and target this directory is about, and a wrong guess
could create a second lab. Every task stops with one line naming the file and the fix (delete it).
"""

from __future__ import annotations

import json
import os
from dataclasses import asdict, dataclass, field, fields
from pathlib import Path
from typing import Any

from labctl.errors import LabError

STATE_FILE = "state.json"
CLASS_MODE = "class"

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


@dataclass
class LabState:
    """What the last run found for the recorded lab; None (or empty) is not known. The JSON keys are the
    field names; a field that is None is left out of the file."""

    target: str | None = None
    region: str | None = None
    lab: str | None = None
    endpoint: str | None = None  # the emulator's URL; None for real AWS
    key_name: str | None = None
    key_file: str | None = None
    security_group_id: str | None = None
    source_cidr: str | None = None
    instance_ids: list[str] | None = None
    image_id: str | None = None
    mode: str | None = None  # CLASS_MODE for a class (one lab per student)
    students: list[str] | None = None
    shared_sg: bool | None = None
    other: dict[str, Any] = field(default_factory=dict)  # keys a newer labctl wrote: kept as they were

    @classmethod
    def load(cls) -> LabState:
        """The recorded state; an empty LabState when there is none, DamagedState when it is damaged."""
        data = load_state()
        known = {f.name for f in fields(cls)} - {"other"}
        return cls(
            **{k: v for k, v in data.items() if k in known},
            other={k: v for k, v in data.items() if k not in known},
        )

    def save(self) -> None:
        """Write the state atomically with mode 0600."""
        data = {k: v for k, v in asdict(self).items() if k != "other" and v is not None}
        _write({**self.other, **data})

    @property
    def is_class(self) -> bool:
        return self.mode == CLASS_MODE

    def for_lab(self, target: str, region: str, lab: str, endpoint: str | None) -> LabState:
        """This state when it is the same lab's (what it found is kept), else a fresh one; where it is."""
        kept = self if self.lab == lab else LabState()
        kept.target, kept.region, kept.lab, kept.endpoint = target, region, lab, endpoint
        return kept


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


def _write(state: dict[str, Any]) -> None:
    path = state_dir() / STATE_FILE
    tmp = path.with_suffix(".tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    os.fchmod(fd, 0o600)  # a leftover temp file keeps its old mode through O_CREAT
    with os.fdopen(fd, "w") as f:
        json.dump(state, f, indent=2, sort_keys=True)
        f.write("\n")
    os.replace(tmp, path)
