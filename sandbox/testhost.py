"""One sandbox host for tests of other parts (bring-your-own-host tests), without touching EC2 yourself.

    with standalone_host(public_key) as (address, host_key_lines):
        ...  # ssh ubuntu@address with the matching private key; pin host_key_lines

It starts a private sandbox daemon in a temporary state dir, imports the key, opens the given ports (and all
ICMP) to 0.0.0.0/0 in a security group, launches one instance, waits for its SSH port, and on exit
terminates it, stops the daemon and removes everything, also when the body raised.
"""

from __future__ import annotations

import contextlib
import shutil
import socket
import tempfile
import time
from collections.abc import Iterator, Sequence
from pathlib import Path

from sandbox import control, disk
from sandbox.errors import SandboxError

REGION = "ap-northeast-2"
UP_TIMEOUT = 90.0  # a bound for a broken boot, not a wait: boots take ~3 s, longer on a busy machine


def sandbox_client(endpoint: str, region: str = REGION):
    """A boto3 EC2 client for a sandbox endpoint (dummy credentials)."""
    import boto3

    return boto3.client(
        "ec2",
        region_name=region,
        endpoint_url=endpoint,
        aws_access_key_id="sandbox",
        aws_secret_access_key="sandbox",
    )


def canonical_focal_ami(ec2) -> str:
    images = ec2.describe_images(
        Owners=["099720109477"],
        Filters=[{"Name": "name", "Values": ["ubuntu/images/hvm-ssd/ubuntu-focal-20.04-amd64-server-*"]}],
    )["Images"]
    return max(images, key=lambda image: image["CreationDate"])["ImageId"]


def wait_for_port(address: str, port: int = 22, timeout: float = UP_TIMEOUT) -> None:
    """Return once `address:port` accepts a TCP connection (sshd's banner is then on its way)."""
    deadline = time.monotonic() + timeout
    while True:
        try:
            with socket.create_connection((address, port), timeout=0.5):
                return
        except OSError:
            if time.monotonic() > deadline:
                raise SandboxError(f"{address}:{port} did not open within {timeout:.0f} s") from None
            time.sleep(0.02)


def console_host_keys(ec2, instance_id: str, timeout: float = UP_TIMEOUT) -> list[str]:
    """The `ssh-ed25519 AAAA... root@host` lines between the console's host-key markers."""
    deadline = time.monotonic() + timeout
    while True:
        output = ec2.get_console_output(InstanceId=instance_id).get("Output", "")
        if "-----END SSH HOST KEY KEYS-----" in output:
            block = output.split("-----BEGIN SSH HOST KEY KEYS-----", 1)[1]
            block = block.split("-----END SSH HOST KEY KEYS-----", 1)[0]
            return [line for line in block.splitlines() if line]
        if time.monotonic() > deadline:
            raise SandboxError(f"{instance_id} printed no host keys within {timeout:.0f} s")
        time.sleep(0.05)


def _open_ports(ec2, group_id: str, ports: Sequence[int]) -> None:
    anywhere = [{"CidrIp": "0.0.0.0/0"}]
    permissions = [{"IpProtocol": "tcp", "FromPort": p, "ToPort": p, "IpRanges": anywhere} for p in ports]
    permissions.append({"IpProtocol": "icmp", "FromPort": -1, "ToPort": -1, "IpRanges": anywhere})
    ec2.authorize_security_group_ingress(GroupId=group_id, IpPermissions=permissions)


@contextlib.contextmanager
def standalone_host(
    public_key: str, ports: Sequence[int] = (22, 12345), host_kind: str = "chroot"
) -> Iterator[tuple[str, list[str]]]:
    """Yield (address, host_key_lines) of a fresh host whose user `ubuntu` accepts `public_key`; by default
    a host without systemd (kind `chroot`), `host_kind="systemd"` for one booting as on EC2."""
    state_dir = Path(tempfile.mkdtemp(prefix="labctl-testhost-"))
    try:
        ec2 = sandbox_client(control.ensure_running(state_dir, say=lambda line: None, host_kind=host_kind))
        ec2.import_key_pair(KeyName="testhost", PublicKeyMaterial=public_key.strip().encode())
        group_id = ec2.create_security_group(GroupName="testhost", Description="labctl test host")["GroupId"]
        _open_ports(ec2, group_id, ports)
        instance = ec2.run_instances(
            ImageId=canonical_focal_ami(ec2),
            InstanceType="t2.micro",
            MinCount=1,
            MaxCount=1,
            KeyName="testhost",
            SecurityGroupIds=[group_id],
        )
        address = instance["Instances"][0]["PublicIpAddress"]
        wait_for_port(address)
        yield address, console_host_keys(ec2, instance["Instances"][0]["InstanceId"])
    finally:
        stop_sandbox(state_dir)
        shutil.rmtree(state_dir, ignore_errors=True)


def stop_sandbox(state_dir: Path) -> None:
    """Terminate every instance of the state dir's daemon, then stop it and remove its files. A stopped
    daemon's saved state (instances and their disks) is discarded with it: a test's sandbox is thrown away."""
    endpoint = control.running_endpoint(state_dir)
    if endpoint:
        ec2 = sandbox_client(endpoint)
        ids = [i["InstanceId"] for r in ec2.describe_instances()["Reservations"] for i in r["Instances"]]
        if ids:
            ec2.terminate_instances(InstanceIds=ids)
    elif control.has_saved_state(state_dir):
        control.cleanup_orphans()  # its hosts' processes are gone before their files go
        disk.remove_all(control.sandbox_dir(state_dir))
    if not control.shutdown_if_idle(state_dir):
        raise SandboxError(f"the sandbox of {state_dir} still has instances after terminating them all")
