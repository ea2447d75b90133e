"""Sandbox fixtures: a daemon in a temporary state dir per test module, torn down even on failure.

The root filesystem is built once and cached on disk (/var/cache/labctl or $LAB_SANDBOX_ROOTFS).
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

import pytest

from sandbox import control
from sandbox.console import DELAY_ENV, delay_from_env
from sandbox.testhost import canonical_focal_ami, sandbox_client, stop_sandbox

OPERATOR_CIDR = control.SANDBOX_SSH_CIDR


@dataclass
class Sandbox:
    state_dir: Path
    endpoint: str
    ec2: object
    key_pem: str
    key_name: str
    group_id: str
    ami: str

    def launch(self, count: int = 1) -> list[dict]:
        return self.ec2.run_instances(
            ImageId=self.ami,
            InstanceType="t2.micro",
            MinCount=count,
            MaxCount=count,
            KeyName=self.key_name,
            SecurityGroupIds=[self.group_id],
        )["Instances"]

    def rule(self, protocol: str, port: int, cidr: str) -> dict:
        return {"IpProtocol": protocol, "FromPort": port, "ToPort": port, "IpRanges": [{"CidrIp": cidr}]}


TEST_CONSOLE_DELAY = "3"


@pytest.fixture(scope="session", autouse=True)
def console_delay() -> float:
    """The buffered console's delay of the daemons these tests start (shorter than the default, still long
    enough to see the console empty right after a launch)."""
    before = os.environ.get(DELAY_ENV)
    os.environ.setdefault(DELAY_ENV, TEST_CONSOLE_DELAY)
    yield delay_from_env()
    if before is None:
        os.environ.pop(DELAY_ENV, None)


@pytest.fixture(scope="session")
def rootfs():
    if os.geteuid() != 0:
        pytest.skip("needs root")
    from sandbox.rootfs import ensure_rootfs

    return ensure_rootfs()


@pytest.fixture(scope="module")
def sandbox(rootfs, tmp_path_factory) -> Sandbox:
    """A running daemon with an ed25519 key pair and a security group open for SSH, TCP 12345 and ICMP."""
    state_dir = tmp_path_factory.mktemp("state")
    try:
        endpoint = control.ensure_running(state_dir)
        ec2 = sandbox_client(endpoint)
        key = ec2.create_key_pair(KeyName="lab", KeyType="ed25519")
        group_id = ec2.create_security_group(GroupName="lab", Description="lab")["GroupId"]
        box = Sandbox(state_dir, endpoint, ec2, key["KeyMaterial"], "lab", group_id, canonical_focal_ami(ec2))
        ec2.authorize_security_group_ingress(
            GroupId=group_id,
            IpPermissions=[
                box.rule("tcp", 22, OPERATOR_CIDR),
                box.rule("tcp", 12345, "0.0.0.0/0"),
                box.rule("icmp", -1, "0.0.0.0/0"),
            ],
        )
        yield box
    finally:
        stop_sandbox(state_dir)
        assert control.running_endpoint(state_dir) is None


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_makereport(item, call):
    """A failed sandbox test shows the end of the daemon's log and of each host's console in its report."""
    outcome = yield
    report = outcome.get_result()
    box = item.funcargs.get("sandbox") if report.when == "call" and report.failed else None
    if isinstance(box, Sandbox):
        sandbox_dir = control.sandbox_dir(box.state_dir)
        logs = [sandbox_dir / "daemon.log", *sorted(sandbox_dir.glob("hosts/*/console.log"))]
        for log in logs:
            report.sections.append((f"sandbox log {log.relative_to(box.state_dir)}", _tail(log)))


def _tail(path: Path, lines: int = 40) -> str:
    try:
        return "\n".join(path.read_text(errors="replace").splitlines()[-lines:])
    except OSError as exc:
        return f"(unreadable: {exc})"
