"""The operator's public IPv4 address, used as the default source of the lab's ingress rules.

This is the one function that looks it up; tests replace it. It is only called for real AWS (no endpoint
override), never for an emulator or the sandbox.
"""

from __future__ import annotations

import ipaddress
import urllib.request

from infra.errors import CloudError

CHECKIP_URL = "https://checkip.amazonaws.com/"


def operator_public_ip(timeout: float = 5.0) -> str:
    """Ask the checkip service for this machine's public IPv4 address."""
    try:
        with urllib.request.urlopen(CHECKIP_URL, timeout=timeout) as response:  # noqa: S310 - fixed https URL
            text = response.read(64).decode("ascii", errors="replace").strip()
        return str(ipaddress.IPv4Address(text))
    except (OSError, ValueError):
        raise CloudError(
            "could not find your public IP address for the security group: pass --ssh-cidr A.B.C.D/32"
        ) from None
