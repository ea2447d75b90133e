"""Benchmark of booting hosts: seconds from RunInstances to a working SSH login (pinned host key, the key
pair's key) for N hosts launched at once, and each host's memory (its v1 memory cgroup, after cloud-init
finished). Needs root; a private daemon in a temporary state dir, removed afterwards.

The hosts are t3.micro (labctl's default type, Nitro) and their host keys are read as labctl reads them
there: `GetConsoleOutput(Latest=True)`, the live console (the buffered one of a Xen type is posted only
seconds after cloud-init finished, see sandbox/README.md). Per host three times, counted from just before
RunInstances is sent: port 22 open, host keys on the console, SSH login works. Target (issue 13): a host is
SSH-ready ≤ 5 s after RunInstances; judged on the median host.

    python3 benchmarks/boot_hosts.py [N]
"""

from __future__ import annotations

import os
import statistics
import sys
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from sandbox import cgroups, control  # noqa: E402
from sandbox.testhost import canonical_focal_ami, sandbox_client, stop_sandbox, wait_for_port  # noqa: E402
from tests.support.sandbox import run, ssh_client  # noqa: E402

GIVE_UP = 120.0
TARGET_SECONDS = 5.0
INSTANCE_TYPE = "t3.micro"
KEYS_BEGIN = "-----BEGIN SSH HOST KEY KEYS-----"
KEYS_END = "-----END SSH HOST KEY KEYS-----"


def live_host_keys(ec2, instance_id: str, began: float) -> list[tuple[str, str]]:
    """(type, base64) of the host keys on the live console, polled every 50 ms till cloud-init prints them."""
    while True:
        output = ec2.get_console_output(InstanceId=instance_id, Latest=True).get("Output") or ""
        if KEYS_END in output:
            block = output.split(KEYS_BEGIN)[1].split(KEYS_END)[0]
            return [tuple(line.split()[:2]) for line in block.splitlines() if line.strip()]
        if time.monotonic() - began > GIVE_UP:
            raise TimeoutError(f"no host keys on {instance_id}'s console after {GIVE_UP:.0f} s")
        time.sleep(0.05)


def ready_after(ec2, key_pem: str, instance: dict, began: float) -> tuple[float, float, float]:
    """Seconds from `began` until port 22 opens, the keys are on the console and an SSH login works;
    then waits for cloud-init to finish (so the memory figure is taken after boot)."""
    address = instance["PublicIpAddress"]
    wait_for_port(address, timeout=GIVE_UP)
    port_open = time.monotonic() - began
    keys = live_host_keys(ec2, instance["InstanceId"], began)
    keys_shown = time.monotonic() - began
    while True:
        try:
            client = ssh_client(address, key_pem, keys)
            break
        except Exception:
            if time.monotonic() - began > GIVE_UP:
                raise
            time.sleep(0.05)
    login = time.monotonic() - began
    run(client, "cloud-init status --wait", timeout=GIVE_UP)
    client.close()
    return port_open, keys_shown, login


def memory_mib(instance_id: str) -> tuple[float, float]:
    """(charged, anonymous) MiB of the host's memory cgroup; (0, 0) without a v1 memory hierarchy."""
    group = cgroups.ROOT / "memory" / cgroups.GROUP / instance_id
    if not group.is_dir():
        return 0.0, 0.0
    stat = dict(line.split() for line in (group / "memory.stat").read_text().splitlines())
    return int((group / "memory.usage_in_bytes").read_text()) / 2**20, int(stat["total_rss"]) / 2**20


def spread(values: list[float]) -> str:
    return f"{min(values):.2f} / {statistics.median(values):.2f} / {max(values):.2f} s"


def main(count: int) -> None:
    load_before = os.getloadavg()
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
        ami = canonical_focal_ami(ec2)
        began = time.monotonic()
        instances = ec2.run_instances(
            ImageId=ami,
            InstanceType=INSTANCE_TYPE,
            MinCount=count,
            MaxCount=count,
            KeyName="bench",
            SecurityGroupIds=[group],
        )["Instances"]
        with ThreadPoolExecutor(count) as pool:
            times = list(pool.map(lambda i: ready_after(ec2, key["KeyMaterial"], i, began), instances))
        memory = [memory_mib(i["InstanceId"]) for i in instances]
        load_after = os.getloadavg()
        logins = [login for _, _, login in times]
        print(
            f"{count} {INSTANCE_TYPE} host(s) launched at once; load average {load_before[0]:.2f} before, "
            f"{load_after[0]:.2f} after (1 min)"
        )
        print(f"  port 22 open        {spread([t[0] for t in times])} (min/median/max after RunInstances)")
        print(f"  host keys on console {spread([t[1] for t in times])}")
        print(f"  SSH login works     {spread(logins)}")
        verdict = "met" if statistics.median(logins) <= TARGET_SECONDS else "MISSED"
        print(f"  target: SSH-ready <= {TARGET_SECONDS:.0f} s after RunInstances (median host): {verdict}")
        charged = [a for a, _ in memory]
        print(
            "  memory per host after cloud-init, MiB charged (anonymous): "
            + ", ".join(f"{a:.0f} ({b:.0f})" for a, b in memory)
            + f"; total {sum(charged):.0f} MiB, median {statistics.median(charged):.0f} MiB"
        )
    finally:
        stop_sandbox(state_dir)


if __name__ == "__main__":
    main(int(sys.argv[1]) if len(sys.argv) > 1 else 1)
