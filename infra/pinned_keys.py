"""Host keys pinned from an instance's console, remembered per boot so a re-run skips GetConsoleOutput.

The console output stays the only source of trust: keys are remembered only after they were read from it,
with the instance id, its launch time and its public address. A later run uses them only when all three
still match (a stop/start gives a new launch time and usually a new address, a new instance a new id), and
SSH still accepts exactly these keys and nothing else. The file is `pinned_host_keys.json` (0600) in the
state directory; a damaged file counts as empty.
"""

from __future__ import annotations

import ipaddress
import json
import os
import threading
from pathlib import Path

PINNED_KEYS_FILE = "pinned_host_keys.json"
HostKeys = tuple[tuple[str, str], ...]
_WRITING = threading.Lock()  # class mode pins several instances at once


def boot_of(instance: dict) -> str:
    """What identifies one boot of an instance: launch time and public address."""
    return f"{instance.get('LaunchTime')}|{instance.get('PublicIpAddress')}"


def remembered_keys(state_dir: Path, instance: dict) -> HostKeys:
    """The keys pinned earlier for this boot of `instance`; () when none (read the console then)."""
    entry = _load(state_dir).get(instance["InstanceId"])
    if not isinstance(entry, dict) or entry.get("boot") != boot_of(instance):
        return ()
    return _keys(entry)


def last_seen(state_dir: Path, instance_id: str) -> tuple[str, HostKeys] | None:
    """The address and pinned keys of `instance_id` when the last run used it (no API call: a guess)."""
    entry = _load(state_dir).get(instance_id)
    if not isinstance(entry, dict) or not _is_ip(entry.get("address")) or not _keys(entry):
        return None
    return entry["address"], _keys(entry)


def _is_ip(address: object) -> bool:
    try:
        ipaddress.ip_address(address)
    except ValueError:
        return False
    return True


def _keys(entry: dict) -> HostKeys:
    try:
        return tuple((str(kind), str(blob)) for kind, blob in entry.get("keys") or ())
    except (TypeError, ValueError):
        return ()


def remember_keys(state_dir: Path, instance: dict, keys: HostKeys) -> None:
    """Remember `keys`, just read from the console of `instance`, for its current boot."""
    with _WRITING:
        entries = _load(state_dir)
        entries[instance["InstanceId"]] = {
            "boot": boot_of(instance),
            "address": instance.get("PublicIpAddress"),
            "keys": [list(key) for key in keys],
        }
        _save(state_dir, entries)


def forget_keys(state_dir: Path, instance_id: str) -> None:
    """Drop what was remembered for `instance_id` (the next run reads its console again)."""
    with _WRITING:
        entries = _load(state_dir)
        if entries.pop(instance_id, None) is not None:
            _save(state_dir, entries)


def forget_all(state_dir: Path) -> None:
    """Drop every remembered key (after a teardown)."""
    with _WRITING:
        (state_dir / PINNED_KEYS_FILE).unlink(missing_ok=True)


def _load(state_dir: Path) -> dict:
    try:
        entries = json.loads((state_dir / PINNED_KEYS_FILE).read_text())
    except (OSError, ValueError):
        return {}
    return entries if isinstance(entries, dict) else {}


def _save(state_dir: Path, entries: dict) -> None:
    """Write atomically with mode 0600."""
    path = state_dir / PINNED_KEYS_FILE
    tmp = path.with_name(f"{PINNED_KEYS_FILE}.{os.getpid()}.tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    os.fchmod(fd, 0o600)
    with os.fdopen(fd, "w") as f:
        json.dump(entries, f, indent=2, sort_keys=True)
        f.write("\n")
    os.replace(tmp, path)
