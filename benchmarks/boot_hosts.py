"""Benchmark of booting hosts: seconds from RunInstances to a working SSH login (pinned host key, the key
pair's key) for N hosts launched at once, and each host's memory (its v1 memory cgroup, after cloud-init
finished). Needs root; a private daemon in a temporary state dir, removed afterwards.

    python3 benchmarks/boot_hosts.py [N]
"""

from __future__ import annotations

import statistics
import sys
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from sandbox import cgroups, control  # noqa: E402
from sandbox.testhost import canonical_focal_ami, sandbox_client, stop_sandbox, wait_for_port  # noqa: E402
from tests.support.sandbox import host_keys_from_console, run, ssh_client  # noqa: E402

GIVE_UP = 120.0


def ready_after(ec2, key_pem: str, instance: dict, began: float) -> float:
    """Seconds from `began` until an SSH login works; then waits for cloud-init to finish."""
    while True:
        try:
            wait_for_port(instance["PublicIpAddress"], timeout=GIVE_UP)
            keys = host_keys_from_console(ec2, instance["InstanceId"])
            client = ssh_client(instance["PublicIpAddress"], key_pem, keys)
        except Exception:
            if time.monotonic() - began > GIVE_UP:
                raise
            time.sleep(0.1)
            continue
        seconds = time.monotonic() - began
        run(client, "cloud-init status --wait", timeout=GIVE_UP)
        client.close()
        return seconds


def memory_mib(instance_id: str) -> tuple[float, float]:
    """(charged, anonymous) MiB of the host's memory cgroup; (0, 0) without a v1 memory hierarchy."""
    group = cgroups.ROOT / "memory" / cgroups.GROUP / instance_id
    if not group.is_dir():
        return 0.0, 0.0
    stat = dict(line.split() for line in (group / "memory.stat").read_text().splitlines())
    return int((group / "memory.usage_in_bytes").read_text()) / 2**20, int(stat["total_rss"]) / 2**20


def main(count: int) -> None:
    state_dir = Path(tempfile.mkdtemp(prefix="labctl-boot-bench-"))
    try:
        ec2 = sandbox_client(control.ensure_running(state_dir))
        key = ec2.create_key_pair(KeyName="bench", KeyType="ed25519")
        group = ec2.create_security_group(GroupName="bench", Description="bench")["GroupId"]
        anywhere = [{"CidrIp": control.SANDBOX_SSH_CIDR}]
        ec2.authorize_security_group_ingress(
            GroupId=group,
            IpPermissions=[{"IpProtocol": "tcp", "FromPort": 22, "ToPort": 22, "IpRanges": anywhere}],
        )
        began = time.monotonic()
        instances = ec2.run_instances(
            ImageId=canonical_focal_ami(ec2),
            InstanceType="t2.micro",
            MinCount=count,
            MaxCount=count,
            KeyName="bench",
            SecurityGroupIds=[group],
        )["Instances"]
        with ThreadPoolExecutor(count) as pool:
            times = list(pool.map(lambda i: ready_after(ec2, key["KeyMaterial"], i, began), instances))
        memory = [memory_mib(i["InstanceId"]) for i in instances]
        print(
            f"{count} host(s): SSH login works after {min(times):.2f} / {statistics.median(times):.2f} / "
            f"{max(times):.2f} s (min/median/max); load {Path('/proc/loadavg').read_text().split()[0]}"
        )
        print(
            "memory per host, MiB charged (anonymous): " + ", ".join(f"{a:.0f} ({b:.0f})" for a, b in memory)
        )
    finally:
        stop_sandbox(state_dir)


if __name__ == "__main__":
    main(int(sys.argv[1]) if len(sys.argv) > 1 else 1)
