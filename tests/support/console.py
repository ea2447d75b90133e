"""Host keys as an instance's console shows them (cloud-init's block), for the console and target tests."""

from __future__ import annotations

from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey


def _openssh_public(private) -> tuple[str, str]:
    text = private.public_key().public_bytes(
        serialization.Encoding.OpenSSH, serialization.PublicFormat.OpenSSH
    )
    key_type, blob = text.decode().split()[:2]
    return key_type, blob


ED25519 = _openssh_public(Ed25519PrivateKey.generate())
ECDSA = _openssh_public(ec.generate_private_key(ec.SECP256R1()))


def console_text(*keys: tuple[str, str], prefix: str = "") -> str:
    lines = [f"{prefix}{key_type} {blob} root@ip-172-31-0-5\r" for key_type, blob in keys]
    return "\n".join(
        [
            "[   12.3] cloud-init[900]: Cloud-init v. 23.1 running 'modules:final'",
            "-----BEGIN SSH HOST KEY FINGERPRINTS-----",
            "256 SHA256:abc root@ip (ED25519)",
            "-----END SSH HOST KEY FINGERPRINTS-----",
            "-----BEGIN SSH HOST KEY KEYS-----",
            *lines,
            "-----END SSH HOST KEY KEYS-----",
            "Cloud-init v. 23.1 finished",
        ]
    )
