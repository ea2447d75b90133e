"""The source CIDR of the lab's ingress rules: --ssh-cidr, --open-world, or the operator's own /32."""

from __future__ import annotations

import ipaddress
from typing import Callable, NamedTuple

from infra.errors import CloudError
from labcore.net import SANDBOX_GATEWAY

WORLD = "0.0.0.0/0"


class SourceCidr(NamedTuple):
    cidr: str
    warning: str | None = None


def validate_cidr(text: str) -> str:
    """Return `text` as a normalized IPv4 CIDR, or raise a CloudError."""
    try:
        network = ipaddress.ip_network(text.strip(), strict=False)
    except ValueError:
        raise CloudError(f"invalid --ssh-cidr {text!r}: expected an IPv4 network like A.B.C.D/32") from None
    if network.version != 4:
        raise CloudError(f"--ssh-cidr {text!r} is IPv6: the lab's rules are IPv4, pass an IPv4 CIDR")
    return str(network)


def check_source_flags(ssh_cidr: str | None, open_world: bool) -> None:
    """--ssh-cidr and --open-world on their own: a valid IPv4 CIDR, and not both; CloudError if not."""
    if open_world and ssh_cidr:
        raise CloudError("--open-world and --ssh-cidr contradict each other: pass only one")
    if ssh_cidr:
        validate_cidr(ssh_cidr)


def resolve_source_cidr(
    ssh_cidr: str | None, open_world: bool, real_aws: bool, lookup_ip: Callable[[], str]
) -> SourceCidr:
    """Pick the source CIDR; `lookup_ip` (the operator's public IP) is only called for real AWS."""
    check_source_flags(ssh_cidr, open_world)
    if open_world:
        return SourceCidr(WORLD, "--open-world: SSH, ICMP and port 12345 are open to the whole internet")
    if ssh_cidr:
        return SourceCidr(validate_cidr(ssh_cidr))
    if not real_aws:
        return SourceCidr(f"{SANDBOX_GATEWAY}/32")
    return SourceCidr(validate_cidr(f"{lookup_ip()}/32"))
