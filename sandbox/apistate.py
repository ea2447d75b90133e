"""The sandbox's API state on disk: it outlives its daemon, as EC2's state outlives a control-plane hiccup.

`api-state.pickle`: moto's EC2 backends of every account and region the daemon served (instances with their
ids, states, addresses and tags, key pairs with their public keys, security groups and rules, ...), pickled.
`api-state.json`: what other processes need without loading moto (orphan cleanup, `status` of a stopped
daemon): instance id → state, region, address. Both are written atomically (temporary file, fsync, rename)
after every API call that may change something and whenever the reconciler sees the instances change; a
restarted daemon loads them before its API answers, so the same instances come back with the same ids.
"""

from __future__ import annotations

import json
import logging
import os
import pickle
import threading
from pathlib import Path

log = logging.getLogger("sandbox.apistate")

PICKLE_FILE = "api-state.pickle"
SUMMARY_FILE = "api-state.json"
LIVE_STATES = ("pending", "running", "stopping", "stopped", "shutting-down")
READ_ONLY_PREFIXES = ("describe_", "get_", "list_")


def _write_atomically(path: Path, data: bytes) -> None:
    tmp = path.with_name(path.name + ".tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "wb") as f:
        f.write(data)
        f.flush()
        os.fsync(f.fileno())
    os.replace(tmp, path)


def saved_instances(sandbox_dir: Path) -> dict[str, dict]:
    """Instance id → {state, region, address} of the saved API state ({} when there is none)."""
    try:
        return dict(json.loads((sandbox_dir / SUMMARY_FILE).read_text()).get("instances", {}))
    except (OSError, ValueError, AttributeError):
        return {}


def live_saved_instances(sandbox_dir: Path) -> dict[str, dict]:
    """The saved instances that still exist (not terminated): their hosts' files must be kept."""
    return {i: v for i, v in saved_instances(sandbox_dir).items() if v.get("state") in LIVE_STATES}


def saved_host_kind(sandbox_dir: Path) -> str | None:
    """The host kind (`systemd`, `chroot`) of the daemon that saved the state, None when unknown."""
    try:
        return json.loads((sandbox_dir / SUMMARY_FILE).read_text()).get("host_kind")
    except (OSError, ValueError, AttributeError):
        return None


def has_saved_state(sandbox_dir: Path) -> bool:
    return (sandbox_dir / PICKLE_FILE).exists()


class ApiState:
    """Saves and loads moto's EC2 backends for one daemon. API calls and saves are serialised by `lock`."""

    def __init__(self, sandbox_dir: Path, host_kind: str):
        self.sandbox_dir = sandbox_dir
        self.host_kind = host_kind
        self.lock = threading.RLock()
        self.changed = threading.Event()
        self._last: bytes = b""

    def install_change_hook(self) -> None:
        """Every EC2 API call that is not a Describe/Get/List marks the state changed (after it ran)."""
        from moto.core.responses import BaseResponse

        original = BaseResponse.call_action
        state = self

        def call_action(self):
            with state.lock:
                try:
                    return original(self)
                finally:
                    action = getattr(self, "_get_action", lambda: "")() or ""
                    if not _snake(action).startswith(READ_ONLY_PREFIXES):
                        state.changed.set()

        BaseResponse.call_action = call_action

    def save_if_changed(self) -> bool:
        if not self.changed.is_set():
            return False
        self.changed.clear()
        return self.save()

    def save(self) -> bool:
        """Write the backends (and the summary) when they differ from the last save; True if written."""
        from moto.ec2.models import ec2_backends

        with self.lock:
            backends = {a: dict(dict.items(r)) for a, r in dict.items(ec2_backends)}
            data = pickle.dumps(backends, protocol=pickle.HIGHEST_PROTOCOL)
            if data == self._last:
                return False
            summary = {
                "host_kind": self.host_kind,
                "instances": {
                    instance.id: {
                        "state": instance.state,
                        "region": region,
                        "address": instance.private_ip_address or "",
                    }
                    for regions in backends.values()
                    for region, backend in regions.items()
                    for instance in backend.all_instances()
                },
            }
            _write_atomically(self.sandbox_dir / PICKLE_FILE, data)
            _write_atomically(self.sandbox_dir / SUMMARY_FILE, json.dumps(summary, indent=1).encode())
            self._last = data
            return True

    def load(self) -> dict[str, dict]:
        """Put the saved backends into moto (before its server starts); returns the summary of their
        instances. Nothing saved: nothing done."""
        from moto.ec2.models import ec2_backends

        path = self.sandbox_dir / PICKLE_FILE
        if not path.exists():
            return {}
        with self.lock:
            data = path.read_bytes()
            backends = pickle.loads(data)
            for account, regions in backends.items():
                for region, backend in regions.items():
                    ec2_backends[account][region] = backend
            self._last = data
        log.info("API state loaded from %s", path)
        return saved_instances(self.sandbox_dir)


def _snake(action: str) -> str:
    from moto.core.utils import camelcase_to_underscores

    return camelcase_to_underscores(action)
