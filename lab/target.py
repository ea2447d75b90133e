"""What the host steps need to know about one machine, whatever target it came from."""

from __future__ import annotations

from dataclasses import dataclass, field


@dataclass(frozen=True)
class HostTarget:
    """One host to configure over SSH.

    `address` has already passed `labcore.net.check_connectable`. `host_keys` are the pinned
    (key type, base64) pairs read from the instance's console output; empty for a bring-your-own host,
    which uses known_hosts (or first-use trust when the user asked for it).
    """

    name: str
    address: str
    user: str = "ubuntu"
    key_file: str | None = None
    port: int = 22
    host_keys: tuple[tuple[str, str], ...] = field(default_factory=tuple)
    target: str = "aws"  # aws | sandbox | byo
    instance_id: str | None = None
