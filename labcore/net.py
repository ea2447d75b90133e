"""Addresses and ports that several layers share, and where the tool may open connections.

Never to an emulator's invented public addresses: only real AWS answers, or the sandbox range.
"""

from __future__ import annotations

import ipaddress
from urllib.parse import urlparse

from labcore.errors import LabError

SANDBOX_NETWORK = ipaddress.ip_network("198.51.100.0/24")
SANDBOX_GATEWAY = "198.51.100.1"
ECHO_PORT = 12345


class UnsafeAddress(LabError):
    """An emulator returned an address outside the sandbox range: connecting to it could reach a stranger."""


def is_aws_endpoint(endpoint_url: str | None) -> bool:
    """True when no override is set or the override is a real AWS endpoint."""
    if not endpoint_url:
        return True
    host = urlparse(endpoint_url).hostname or ""
    return host.endswith(".amazonaws.com") or host.endswith(".amazonaws.com.cn")


def is_sandbox_address(address: str) -> bool:
    try:
        return ipaddress.ip_address(address) in SANDBOX_NETWORK
    except ValueError:
        return False


def check_connectable(address: str, endpoint_url: str | None) -> str:
    """Return `address` if the tool may connect to it, else raise UnsafeAddress.

    Addresses that an emulator endpoint returned are only reachable when they lie in the sandbox range;
    anything else (moto's invented 54.x addresses, DNS names) would be a stranger's machine.
    """
    if is_aws_endpoint(endpoint_url) or is_sandbox_address(address):
        return address
    raise UnsafeAddress(
        f"refusing to connect to {address}: it came from the emulator at {endpoint_url} and is not a "
        f"sandbox address ({SANDBOX_NETWORK}); use --cloud-only with an emulator, or --target sandbox"
    )
