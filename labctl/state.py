"""The state directory (`.lab/` or $LAB_STATE_DIR) and `state.json`, read and written as one `LabState`.

Tags on the cloud resources are the truth; the state file only saves look-ups and is rebuilt when missing.
labctl reads and writes it only through `LabState` (`LabState.load()`, `state.save()`); `load_state()` is
the file as JSON, for tools and tests.
"""

from __future__ import annotations

import json
import os
from dataclasses import asdict, dataclass, field, fields
from pathlib import Path
from typing import Any

STATE_FILE = "state.json"
CLASS_MODE = "class"


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
        """The recorded state; an empty LabState when there is none or it is unreadable."""
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
    """`state.json` as JSON ({} when missing or unreadable)."""
    path = state_dir() / STATE_FILE
    try:
        data = json.loads(path.read_text())
    except (FileNotFoundError, ValueError):
        return {}
    return data if isinstance(data, dict) else {}


def _write(state: dict[str, Any]) -> None:
    path = state_dir() / STATE_FILE
    tmp = path.with_suffix(".tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    os.fchmod(fd, 0o600)  # a leftover temp file keeps its old mode through O_CREAT
    with os.fdopen(fd, "w") as f:
        json.dump(state, f, indent=2, sort_keys=True)
        f.write("\n")
    os.replace(tmp, path)
