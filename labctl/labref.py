"""Which lab a task acts on: its target, region and name, from the flags, else the recorded state."""

from __future__ import annotations

import re
from dataclasses import dataclass

from infra import regions
from labctl import targets
from labctl.errors import LabError
from labctl.state import LabState

_LAB_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_-]{0,39}$")


@dataclass(frozen=True)
class LabRef:
    """Which lab a task acts on."""

    target: str
    region: str
    lab: str


def validate_lab_name(name: str) -> str:
    if not _LAB_NAME.match(name or ""):
        raise LabError(f"invalid lab --name {name!r}: use up to 40 letters, digits, '-' or '_'")
    return name


def resolve_lab(target: str | None, region: str | None, name: str | None, recorded: LabState) -> LabRef:
    """Flags first, then the `recorded` state, then the defaults; region and name are validated."""
    return LabRef(
        target=targets.choose_target(target, recorded.target),
        region=regions.validate_region(region or recorded.region or regions.DEFAULT_REGION),
        lab=validate_lab_name(name or recorded.lab or targets.DEFAULT_LAB),
    )
