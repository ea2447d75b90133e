"""Structured outcomes of cloud actions, so reports and re-runs can say exactly what changed."""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import asdict, dataclass

CREATED = "created"
CHANGED = "changed"
STARTED = "started"
OK = "ok"
DELETED = "deleted"
ABSENT = "absent"
KEPT = "kept"
FOREIGN = "not ours"

CHANGE_STATUSES = {CREATED, CHANGED, STARTED, DELETED}


@dataclass(frozen=True)
class Result:
    """One resource's outcome. `planned` marks what a run would do (plan / dry-run) without doing it."""

    status: str
    resource: str
    message: str = ""
    planned: bool = False

    @property
    def is_change(self) -> bool:
        return self.status in CHANGE_STATUSES

    def as_dict(self) -> dict:
        return asdict(self)


def any_change(results: Iterable[Result]) -> bool:
    """True when at least one result changed (or would change) something."""
    return any(result.is_change for result in results)
