"""SSH connections opened while the cloud check still runs, to hosts whose keys are pinned already.

A re-run spends 0.2-0.3 s importing botocore and asking EC2 which instances to use; the SSH handshake with
the instance the last run used (about 0.1 s here, several round trips on AWS) can happen meanwhile, in a
background thread. A connection opened early is handed to the task only when the task's own host target
turns out to be exactly the one it was opened for (same instance, address, user, port, key file and
pinned host keys) and with the same Fabric config; otherwise it is closed unused. Nothing runs on it
before that. It tries once (no waiting for SSH): any problem only means the task connects as usual,
with the usual checks and messages.
"""

from __future__ import annotations

import threading
from typing import Any

from fabric import Config, Connection

from lab.connect import open_connection
from lab.target import HostTarget

ONE_TRY = 0.0  # ssh_timeout for open_connection: one probe, no waiting


class _Attempt:
    """One early connection being opened in a daemon thread (it never delays the process's exit)."""

    def __init__(self, host: HostTarget, config: Config | None) -> None:
        self.config = config
        self.conn: Connection | None = None
        self._done = threading.Event()
        self._lock = threading.Lock()
        self._unwanted = False
        threading.Thread(target=self._open, args=(host,), daemon=True, name="early-ssh").start()

    def _open(self, host: HostTarget) -> None:
        try:
            conn = open_connection(host, ssh_timeout=ONE_TRY, config=self.config)
        except Exception:  # noqa: BLE001 - any failure: the task connects the usual way and reports it
            conn = None
        with self._lock:
            self.conn = conn
            self._done.set()
            if self._unwanted:
                self._close_conn()

    def result(self) -> Connection | None:
        """The open connection (waiting for the attempt to finish), None if it failed."""
        self._done.wait()
        return self.conn

    def close(self) -> None:
        """Close the connection now, or as soon as the attempt finishes (never waits for it)."""
        with self._lock:
            self._unwanted = True
            if self._done.is_set():
                self._close_conn()

    def _close_conn(self) -> None:
        if self.conn is not None:
            self.conn.close()
            self.conn = None


_ATTEMPTS: dict[HostTarget, _Attempt] = {}
_LOCK = threading.Lock()


def start(hosts: list[HostTarget], *, config: Config | None = None) -> None:
    """Begin connecting to each host that has pinned host keys (bring-your-own hosts are left alone)."""
    for host in hosts:
        if not host.host_keys:
            continue
        with _LOCK:
            old = _ATTEMPTS.pop(host, None)
            _ATTEMPTS[host] = _Attempt(host, config)
        if old is not None:
            old.close()


def take(host: HostTarget, config: Config | None) -> Connection | None:
    """The early connection for exactly `host` and `config`, if one was opened and is still up."""
    with _LOCK:
        attempt = _ATTEMPTS.pop(host, None)
    if attempt is None:
        return None
    conn = attempt.result()
    if conn is None:
        return None
    if attempt.config is not config or not _alive(conn):
        conn.close()
        return None
    return conn


def close_unused() -> None:
    """Close every early connection no task took (its host was not the task's after all)."""
    with _LOCK:
        attempts = list(_ATTEMPTS.values())
        _ATTEMPTS.clear()
    for attempt in attempts:
        attempt.close()


def _alive(conn: Any) -> bool:
    transport = conn.transport
    return transport is not None and transport.is_active()
