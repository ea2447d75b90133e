"""Fixtures for real-SSH tests: one sandbox host per test module, built from the sandbox's own helpers.

Skipped (not failed) when not root or when the sandbox package is not there yet.
"""

from __future__ import annotations

import os
import time
from dataclasses import dataclass, replace
from pathlib import Path

import pytest

from lab.target import HostTarget

ECHO_PORT = 12345


@dataclass
class SandboxHost:
    """A running sandbox instance and the handles tests need to change its security group."""

    target: HostTarget
    ec2: object
    group_id: str
    instance_id: str

    def rule(self, port: int) -> dict:
        return {"IpProtocol": "tcp", "FromPort": port, "ToPort": port, "IpRanges": [{"CidrIp": "0.0.0.0/0"}]}

    def block(self, port: int) -> None:
        self.ec2.revoke_security_group_ingress(GroupId=self.group_id, IpPermissions=[self.rule(port)])

    def allow(self, port: int) -> None:
        self.ec2.authorize_security_group_ingress(GroupId=self.group_id, IpPermissions=[self.rule(port)])

    def as_byo(self) -> HostTarget:
        """The same host seen as a bring-your-own host: no pinned keys (known_hosts / first-use trust)."""
        return replace(self.target, host_keys=(), target="byo", name="byo-" + self.target.name)


def parse_key_lines(lines: list[str]) -> tuple[tuple[str, str], ...]:
    return tuple((line.split()[0], line.split()[1]) for line in lines)


def running_host(tmp_path_factory, kind: str):
    """A sandbox daemon of host kind `kind` with one running instance (yielded), stopped afterwards."""
    if os.geteuid() != 0:
        pytest.skip("needs root (network namespaces, sshd, iptables)")
    testhost = pytest.importorskip("sandbox.testhost", reason="sandbox test-host helper not available")
    control = pytest.importorskip("sandbox.control")
    rootfs = pytest.importorskip("sandbox.rootfs")
    rootfs.ensure_rootfs(kind=kind)
    state_dir = tmp_path_factory.mktemp("sandbox-state")
    keys_dir = tmp_path_factory.mktemp("keys")
    try:
        endpoint = control.ensure_running(state_dir, say=lambda line: None, host_kind=kind)
        ec2 = testhost.sandbox_client(endpoint)
        key = ec2.create_key_pair(KeyName="lab", KeyType="ed25519")
        key_file = keys_dir / "lab.pem"
        key_file.touch(mode=0o600)
        key_file.write_text(key["KeyMaterial"])
        group_id = ec2.create_security_group(GroupName="lab", Description="lab host tests")["GroupId"]
        box = SandboxHost(HostTarget("pending", "0.0.0.0"), ec2, group_id, "")
        ec2.authorize_security_group_ingress(
            GroupId=group_id,
            IpPermissions=[
                box.rule(22),
                box.rule(ECHO_PORT),
                {"IpProtocol": "icmp", "FromPort": -1, "ToPort": -1, "IpRanges": [{"CidrIp": "0.0.0.0/0"}]},
            ],
        )
        instance = ec2.run_instances(
            ImageId=testhost.canonical_focal_ami(ec2),
            InstanceType="t2.micro",
            MinCount=1,
            MaxCount=1,
            KeyName="lab",
            SecurityGroupIds=[group_id],
        )["Instances"][0]
        address = instance["PublicIpAddress"]
        host_keys = parse_key_lines(testhost.console_host_keys(ec2, instance["InstanceId"]))
        box.target = HostTarget(
            "lab-1", address, "ubuntu", str(key_file), 22, host_keys, "sandbox", instance["InstanceId"]
        )
        box.instance_id = instance["InstanceId"]
        yield box
    finally:
        testhost.stop_sandbox(state_dir)


@pytest.fixture(scope="module")
def sandbox_host(tmp_path_factory) -> SandboxHost:
    """A host without systemd (kind `chroot`: sshd under a tiny init): the lab's fallbacks."""
    yield from running_host(tmp_path_factory, "chroot")


@pytest.fixture(scope="module")
def booted_host(tmp_path_factory) -> SandboxHost:
    """A host booted as an EC2 instance (kind `systemd`: systemd PID 1, cloud-init, sshd): the lab's
    systemd branches run for real on it."""
    yield from running_host(tmp_path_factory, "systemd")


def eventually(check, timeout: float = 20.0, interval: float = 0.1):
    deadline = time.monotonic() + timeout
    while True:
        value = check()
        if value or time.monotonic() > deadline:
            return value
        time.sleep(interval)


@pytest.fixture
def state_dir(tmp_path, monkeypatch) -> Path:
    """A private LAB_STATE_DIR (first-use known_hosts land here, not in the project's .lab/)."""
    path = tmp_path / "state"
    monkeypatch.setenv("LAB_STATE_DIR", str(path))
    return path
