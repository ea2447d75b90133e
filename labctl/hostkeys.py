"""Parse the SSH host keys cloud-init prints on the console, to pin them before the first SSH connection."""

from __future__ import annotations

import base64
import binascii
import re

BEGIN = "-----BEGIN SSH HOST KEY KEYS-----"
END = "-----END SSH HOST KEY KEYS-----"
_KEY_LINE = re.compile(r"((?:ssh|ecdsa|sk)-[A-Za-z0-9@.-]+)\s+([A-Za-z0-9+/]+={0,2})(?:\s|$)")


def _blocks(text: str) -> list[str]:
    """The text between each BEGIN/END marker pair (the last block is the freshest)."""
    blocks, rest = [], text
    while BEGIN in rest:
        _, _, after = rest.partition(BEGIN)
        block, found_end, rest = after.partition(END)
        if not found_end:
            break
        blocks.append(block)
    return blocks


def _key_from_line(line: str) -> tuple[str, str] | None:
    match = _KEY_LINE.search(line)
    if not match:
        return None
    key_type, blob = match.groups()
    try:
        decoded = base64.b64decode(blob, validate=True)
    except (binascii.Error, ValueError):
        return None
    name_length = int.from_bytes(decoded[:4], "big")
    if decoded[4 : 4 + name_length].decode("ascii", errors="replace") != key_type:
        return None
    return key_type, blob


def parse_host_keys(console_text: str) -> tuple[tuple[str, str], ...]:
    """(key type, base64) pairs from the last complete host-key block of `console_text`; () if none."""
    blocks = _blocks(console_text.replace("\r", ""))
    if not blocks:
        return ()
    keys = (_key_from_line(line) for line in blocks[-1].splitlines())
    return tuple(dict.fromkeys(key for key in keys if key))
