"""Benchmark: time from run_instances returning to the SSH port being open, for 1 host and for 10 hosts.

Targets: 1 host ≤ 3 s, 10 hosts ≤ 15 s. Needs root; uses a private daemon in a temporary state dir and
removes everything afterwards. Traffic goes only to 127.0.0.1 (the API) and the sandbox's own hosts.

    python3 benchmarks/sandbox_hosts.py
"""

from __future__ import annotations

import socket
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from sandbox import control  # noqa: E402
from sandbox.testhost import canonical_focal_ami, sandbox_client, stop_sandbox  # noqa: E402

TARGETS = {1: 3.0, 10: 15.0}
GIVE_UP = 60.0


def port_open(address: str, port: int = 22) -> bool:
    try:
        with socket.create_connection((address, port), timeout=0.2):
            return True
    except OSError:
        return False


def time_to_ssh(ec2, ami: str, group_id: str, count: int) -> float:
    """Seconds from run_instances returning until every new host's port 22 accepts connections."""
    instances = ec2.run_instances(
        ImageId=ami, InstanceType="t2.micro", MinCount=count, MaxCount=count, SecurityGroupIds=[group_id]
    )["Instances"]
    started = time.monotonic()
    waiting = {i["PublicIpAddress"] for i in instances}
    while waiting and time.monotonic() - started < GIVE_UP:
        waiting = {address for address in waiting if not port_open(address)}
        if waiting:
            time.sleep(0.01)
    elapsed = time.monotonic() - started
    ec2.terminate_instances(InstanceIds=[i["InstanceId"] for i in instances])
    if waiting:
        raise SystemExit(f"{len(waiting)} of {count} hosts never opened port 22 within {GIVE_UP:.0f} s")
    return elapsed


def main() -> int:
    state_dir = Path(tempfile.mkdtemp(prefix="labctl-bench-"))
    try:
        ec2 = sandbox_client(control.ensure_running(state_dir))
        group_id = ec2.create_security_group(GroupName="bench", Description="bench")["GroupId"]
        operator = [{"CidrIp": control.SANDBOX_SSH_CIDR}]
        ec2.authorize_security_group_ingress(
            GroupId=group_id,
            IpPermissions=[{"IpProtocol": "tcp", "FromPort": 22, "ToPort": 22, "IpRanges": operator}],
        )
        ami = canonical_focal_ami(ec2)
        failed = False
        for count, target in TARGETS.items():
            elapsed = time_to_ssh(ec2, ami, group_id, count)
            verdict = "ok" if elapsed <= target else "SLOW"
            failed |= elapsed > target
            print(
                f"{count:2d} host(s): SSH port open {elapsed:.2f} s after run_instances "
                f"(target ≤ {target:.0f} s) {verdict}"
            )
        return 1 if failed else 0
    finally:
        stop_sandbox(state_dir)


if __name__ == "__main__":
    sys.exit(main())
