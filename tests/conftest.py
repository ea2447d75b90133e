"""Shared fixtures. pytest-socket (pyproject addopts) lets tests reach only loopback and the sandbox net."""

from __future__ import annotations

import os
import socket

import pytest

from tests.lab.local_sshd import local_sshd


def pytest_collection_modifyitems(config, items):
    if os.geteuid() == 0:
        return
    skip_root = pytest.mark.skip(reason="needs root (network namespaces, sshd, iptables)")
    for item in items:
        if "root" in item.keywords:
            item.add_marker(skip_root)


@pytest.fixture
def free_port() -> int:
    """A TCP port on 127.0.0.1 that was free a moment ago."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture
def sshd(tmp_path):
    """A private OpenSSH server on 127.0.0.1 for one test (root only): `tests.lab.local_sshd`."""
    if os.geteuid() != 0:
        pytest.skip("needs root to run a private sshd")
    with local_sshd(tmp_path) as server:
        yield server
