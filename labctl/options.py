"""What `fab provision` and `fab plan` accept, for one lab and for a class alike.

Every option is checked here, where it enters, before anything is created or started (the sandbox daemon
included), and a dry run fails on a bad value exactly like the real run. What only the cloud can answer
(the AMI exists and is not Windows, the type is offered in the region) is checked by the cloud part before
its first creation; the lab's target, region and name by `labctl.labref.resolve_lab`, before connecting.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from infra import ami, autostop, cidr, instance_types, instances, keys
from labctl.errors import LabError

MAX_INSTANCES = 20  # instances of one lab (class mode makes one lab per student instead)


@dataclass(frozen=True)
class ProvisionOptions:
    """Everything `fab provision` / `fab plan` accept. None means: recorded state, else the default.

    `auto_stop` HOURS (or `off`) becomes hours (or autostop.OFF); the other values are kept as given.
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
        instance_types.validate_type_name(self.instance_type)
        ami.validate_release(self.release)
        if self.ami is not None:
            ami.validate_ami_id(self.ami)
        if self.public_key is not None:
            keys.read_public_key(Path(self.public_key))  # readable, and an OpenSSH public key
        cidr.check_source_flags(self.ssh_cidr, self.open_world)
        if not isinstance(self.count, int) or not 1 <= self.count <= MAX_INSTANCES:
            raise LabError(f"count {self.count!r} is out of range: 1 to {MAX_INSTANCES} instances per lab")
        if self.auto_stop is not None:
            object.__setattr__(self, "auto_stop", autostop.validate_hours(self.auto_stop))
