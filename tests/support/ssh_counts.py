"""Counting SSH work in this process: transports started and commands sent."""

from __future__ import annotations

from collections import Counter
from contextlib import contextmanager

import paramiko


@contextmanager
def counting_ssh(monkeypatch):
    """Count real SSH transports started and exec requests sent (all threads) while the block runs."""
    counts: Counter = Counter()
    start_client = paramiko.Transport.start_client
    exec_command = paramiko.Channel.exec_command

    def counted_start(self, *args, **kwargs):
        counts["connections"] += 1
        return start_client(self, *args, **kwargs)

    def counted_exec(self, command):
        counts["commands"] += 1
        return exec_command(self, command)

    with monkeypatch.context() as patch:
        patch.setattr(paramiko.Transport, "start_client", counted_start)
        patch.setattr(paramiko.Channel, "exec_command", counted_exec)
        yield counts
