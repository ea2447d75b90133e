"""Host keys pinned from an instance's console, remembered per instance id for as long as the instance lives.

The console output stays the only source of trust: keys are remembered only after they were read from it.
cloud-init generates the host keys and prints them once per instance (its semaphores live on the root
volume, with the keys), so a stop/start or a reboot keeps the keys but prints nothing new: the keys are
therefore pinned to the instance id alone, never to a boot. A host that later presents another key is
refused (`lab.connect.HostKeyMismatch`) and the pinned keys are kept; only `fab forget-host-keys` (after
checking the console) or a teardown drops them. The last public address is kept too, as a guess for an
early connection. The file is `pinned_host_keys.json` (0600) in the state directory; a damaged file counts
as empty.
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


def remembered_keys(state_dir: Path, instance: dict) -> HostKeys:
    """The keys pinned earlier for `instance` (any boot of it); () when none (read the console then)."""
    entry = _load(state_dir).get(instance["InstanceId"])
    return _keys(entry) if isinstance(entry, dict) else ()


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
    """Remember `keys` (read from the console of `instance`, or pinned earlier) and its current address.

    Writes only when something changed, so a re-run of a running instance leaves the file alone.
    """
    entry = {"address": instance.get("PublicIpAddress"), "keys": [list(key) for key in keys]}
    with _WRITING:
        entries = _load(state_dir)
        if entries.get(instance["InstanceId"]) == entry:
            return
        entries[instance["InstanceId"]] = entry
        _save(state_dir, entries)


def pinned_ids(state_dir: Path) -> list[str]:
    """The instance ids that have pinned keys, sorted."""
    return sorted(iid for iid, entry in _load(state_dir).items() if isinstance(entry, dict) and _keys(entry))


def forget_keys(state_dir: Path, instance_id: str) -> bool:
    """Drop what was remembered for `instance_id` (the next run reads its console again); False if nothing."""
    with _WRITING:
        entries = _load(state_dir)
        if entries.pop(instance_id, None) is None:
            return False
        _save(state_dir, entries)
        return True


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
