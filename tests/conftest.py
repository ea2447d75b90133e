"""Shared fixtures. pytest-socket (pyproject addopts) lets tests reach only loopback and the sandbox net."""

from __future__ import annotations

import os
import subprocess
from collections import Counter

import paramiko
import pytest

import tests.support.fab
from tests.support.fab import FAB, REPO, isolated_fab_env, moto_server_process
from tests.support.local_sshd import local_sshd


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
    return tests.support.fab.free_port()  # (the module: `fab` is a fixture here)


@pytest.fixture
def sshd(tmp_path):
    """A private OpenSSH server on 127.0.0.1 for one test (root only): `tests.support.local_sshd`."""
    if os.geteuid() != 0:
        pytest.skip("needs root to run a private sshd")
    with local_sshd(tmp_path) as server:
        yield server


@pytest.fixture
def ssh_connections(monkeypatch) -> Counter:
    """Every SSH connection this process opens from now on, counted by (address, port)."""
    opened: Counter = Counter()
    real_connect = paramiko.SSHClient.connect

    def counting_connect(self, hostname, port=22, *args, **kwargs):
        opened[(hostname, port)] += 1
        return real_connect(self, hostname, port, *args, **kwargs)

    monkeypatch.setattr(paramiko.SSHClient, "connect", counting_connect)
    return opened


@pytest.fixture
def sshd_for_every_instance(sshd, monkeypatch):
    """The private sshd stands in for every lab instance labctl connects to (moto's addresses are nobody's):
    `labctl.targets.host_target` gives a pinned target on 127.0.0.1. Yields the sshd."""
    from lab.target import HostTarget
    from labctl import targets

    def local_host(cloud, instance: dict, key_file, out=None) -> HostTarget:
        return HostTarget(
            name=instance["InstanceId"],
            address="127.0.0.1",
            user="root",
            key_file=sshd.client_key,
            port=sshd.port,
            host_keys=((sshd.host_key_type, sshd.host_key_b64),),
            target="aws",
            instance_id=instance["InstanceId"],
        )

    monkeypatch.setattr(targets, "host_target", local_host)
    yield sshd


@pytest.fixture
def moto_server(tmp_path, free_port):
    """A moto server with the Canonical catalogue, stopped (by its PID) after the test."""
    with moto_server_process(tmp_path / "amis.json", free_port) as endpoint:
        yield endpoint


@pytest.fixture
def fab(moto_server, tmp_path):
    """Run `fab ARGS` from the repo root against the moto server; returns the CompletedProcess."""
    env = isolated_fab_env(tmp_path, AWS_ENDPOINT_URL=moto_server)

    def run(*args: str) -> subprocess.CompletedProcess:
        return subprocess.run(
            [str(FAB), *args], cwd=REPO, env=env, capture_output=True, text=True, timeout=120
        )

    return run
