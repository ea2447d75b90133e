"""What `fab provision` and `fab plan` accept, for one lab and for a class alike."""

from __future__ import annotations

from dataclasses import dataclass

from infra import ami, autostop, instances


@dataclass(frozen=True)
class ProvisionOptions:
    """Everything `fab provision` / `fab plan` accept. None means: recorded state, else the default.

    `auto_stop` is checked here, where it enters: HOURS (or `off`) becomes hours (or autostop.OFF).
    """

    target: str | None = None
    region: str | None = None
    name: str | None = None
    instance_type: str = instances.DEFAULT_INSTANCE_TYPE
    release: str = ami.DEFAULT_RELEASE
    ami: str | None = None
    public_key: str | None = None
    ssh_cidr: str | None = None
    open_world: bool = False
    cloud_only: bool = False
    dry_run: bool = False
    count: int = 1
    auto_stop: float | None = None

    def __post_init__(self) -> None:
        if self.auto_stop is not None:
            object.__setattr__(self, "auto_stop", autostop.validate_hours(self.auto_stop))
