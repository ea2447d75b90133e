"""Instances of the sandbox are real hosts: SSH with the key pair, pinned host keys, firewall from the SG,
stop/start/terminate, apt through the gateway's proxy."""

from __future__ import annotations

import ipaddress
import subprocess
from pathlib import Path

import pytest

from labcore.net import SANDBOX_NETWORK
from sandbox import control, network
from sandbox.aptproxy import DEFAULT_CACHE
from sandbox.testhost import console_host_keys, wait_for_port
from tests.support.sandbox import eventually, host_keys_from_console, ping_ok, run, ssh_client, tcp_open

pytestmark = pytest.mark.root


@pytest.fixture(scope="module")
def instance(sandbox):
    """One running instance: (id, address), SSH port open."""
    described = sandbox.launch()[0]
    wait_for_port(described["PublicIpAddress"])
    return described["InstanceId"], described["PublicIpAddress"]


@pytest.fixture
def client(sandbox, instance):
    instance_id, address = instance
    ssh = ssh_client(address, sandbox.key_pem, host_keys_from_console(sandbox.ec2, instance_id))
    yield ssh
    ssh.close()


def test_reported_addresses_are_the_hosts_sandbox_address(sandbox, instance):
    instance_id, address = instance
    described = sandbox.ec2.describe_instances(InstanceIds=[instance_id])["Reservations"][0]["Instances"][0]
    assert ipaddress.ip_address(address) in SANDBOX_NETWORK
    assert described["PrivateIpAddress"] == described["PublicIpAddress"] == address


def test_paramiko_reaches_the_host_with_the_key_and_pinned_host_key(client):
    status, out, _ = run(client, "sudo -n id -u && id -un && hostname")
    assert status == 0
    assert out.split() == ["0", "ubuntu", "ip-" + client.get_transport().getpeername()[0].replace(".", "-")]


def test_a_wrong_host_key_is_rejected(sandbox, instance):
    import paramiko

    _, address = instance
    other = [("ssh-ed25519", "AAAAC3NzaC1lZDI1NTE5AAAAIOZlyX2x5JddcAi1kvMBK+LhK04JPjpLx3RcDwnz/hY+")]
    with pytest.raises(paramiko.SSHException):
        ssh_client(address, sandbox.key_pem, other)


def test_console_shows_host_keys_the_way_cloud_init_prints_them(sandbox, instance):
    console_host_keys(sandbox.ec2, instance[0])  # wait for the buffered console
    output = sandbox.ec2.get_console_output(InstanceId=instance[0])["Output"]
    # the host's real console: cloud-init logs the fingerprints (each line with its syslog prefix) and
    # prints the keys themselves bare, as on EC2
    fingerprints = output.split("-----BEGIN SSH HOST KEY FINGERPRINTS-----")[1].split("-----END")[0]
    assert "256 SHA256:" in fingerprints and "(ED25519)" in fingerprints
    assert "\nssh-ed25519 AAAA" in output.split("-----BEGIN SSH HOST KEY KEYS-----\n")[1]


def test_the_host_is_debian_and_says_so(client):
    _, out, _ = run(client, "cat /etc/os-release")
    assert "bookworm" in out


def test_security_group_decides_reachability(sandbox, instance, client):
    group, (_, address) = sandbox.group_id, instance
    run(client, "setsid nohup nc -lk 12345 >/dev/null 2>&1 </dev/null &")
    eventually(lambda: tcp_open(address, 12345))
    assert ping_ok(address)

    echo_rule, icmp_rule = sandbox.rule("tcp", 12345, "0.0.0.0/0"), sandbox.rule("icmp", -1, "0.0.0.0/0")
    sandbox.ec2.revoke_security_group_ingress(GroupId=group, IpPermissions=[echo_rule, icmp_rule])
    eventually(lambda: not tcp_open(address, 12345, timeout=0.5))
    eventually(lambda: not ping_ok(address))
    assert run(client, "echo still-here")[1].strip() == "still-here"  # established SSH stays up

    sandbox.ec2.authorize_security_group_ingress(GroupId=group, IpPermissions=[echo_rule, icmp_rule])
    eventually(lambda: tcp_open(address, 12345))
    eventually(lambda: ping_ok(address))


def test_revoking_ssh_blocks_new_connections(sandbox, instance):
    ssh_rule = sandbox.rule("tcp", 22, control.SANDBOX_SSH_CIDR)
    sandbox.ec2.revoke_security_group_ingress(GroupId=sandbox.group_id, IpPermissions=[ssh_rule])
    try:
        eventually(lambda: not tcp_open(instance[1], 22, timeout=0.5))
    finally:
        sandbox.ec2.authorize_security_group_ingress(GroupId=sandbox.group_id, IpPermissions=[ssh_rule])
    eventually(lambda: tcp_open(instance[1], 22))


def test_nothing_is_routed_out_of_the_sandbox_network(sandbox):
    forwarding = Path(f"/proc/sys/net/ipv4/conf/{network.BRIDGE}/forwarding").read_text()
    assert forwarding.strip() == "0"
    routes = subprocess.run(["ip", "route", "show", "type", "unreachable"], capture_output=True, text=True)
    assert str(SANDBOX_NETWORK) in routes.stdout
    nat = subprocess.run(["iptables", "-t", "nat", "-S"], capture_output=True, text=True).stdout
    assert "198.51.100." not in nat


def test_status_lists_the_host_with_its_sshd(sandbox, instance):
    report = control.status(sandbox.state_dir)
    assert report["running"] and report["endpoint"] == sandbox.endpoint
    (host,) = [h for h in report["hosts"] if h["instance_id"] == instance[0]]
    assert host["address"] == instance[1] and host["namespace"] == network.netns_name(instance[0])
    assert host["sshd_pid"] and network.pid_alive(host["sshd_pid"])


def test_ensure_running_again_changes_nothing(sandbox):
    assert control.ensure_running(sandbox.state_dir) == sandbox.endpoint


def test_stop_and_start_keep_files_address_and_host_key(sandbox):
    instance_id, address = sandbox.launch()[0]["InstanceId"], None
    described = sandbox.ec2.describe_instances(InstanceIds=[instance_id])["Reservations"][0]["Instances"][0]
    address = described["PublicIpAddress"]
    wait_for_port(address)
    keys = host_keys_from_console(sandbox.ec2, instance_id)
    with ssh_client(address, sandbox.key_pem, keys) as ssh:
        assert run(ssh, "echo kept > ~/note && sudo -n sh -c 'echo root-kept > /etc/lab-note'")[0] == 0

    sandbox.ec2.stop_instances(InstanceIds=[instance_id])
    eventually(lambda: not network.netns_exists(network.netns_name(instance_id)))
    assert not tcp_open(address, 22, timeout=0.5)

    sandbox.ec2.start_instances(InstanceIds=[instance_id])
    described = sandbox.ec2.describe_instances(InstanceIds=[instance_id])["Reservations"][0]["Instances"][0]
    assert described["PublicIpAddress"] == address
    wait_for_port(address)
    # cloud-init prints the keys on an instance's first boot only: the pinned keys must still match
    with ssh_client(address, sandbox.key_pem, keys) as ssh:
        assert run(ssh, "cat ~/note /etc/lab-note")[1].split() == ["kept", "root-kept"]
    sandbox.ec2.terminate_instances(InstanceIds=[instance_id])


def test_terminate_destroys_the_host(sandbox):
    described = sandbox.launch()[0]
    instance_id, address = described["InstanceId"], described["PublicIpAddress"]
    wait_for_port(address)
    host_dir = sandbox.state_dir / "sandbox" / "hosts" / instance_id
    assert host_dir.is_dir()

    sandbox.ec2.terminate_instances(InstanceIds=[instance_id])
    eventually(lambda: not host_dir.exists())
    assert not network.netns_exists(network.netns_name(instance_id))
    assert network.veth_name(instance_id) not in network.list_veths()
    leases = network.all_leases()
    assert not [lease for lease in leases if lease["instance"] == instance_id]
    if address not in [lease["address"] for lease in leases]:  # (else another sandbox took it meanwhile)
        assert not tcp_open(address, 22, timeout=0.5)


def test_the_proxy_refuses_hosts_other_than_the_mirror(sandbox, client):
    script = (
        "import urllib.request, urllib.error\n"
        "try:\n urllib.request.urlopen('http://example.org/', timeout=10)\n"
        "except urllib.error.HTTPError as e:\n print(e.code)\n"
    )
    proxy = control.status(sandbox.state_dir)["proxy"]
    status, out, err = run(client, f'http_proxy={proxy} python3 -c "{script}"')
    assert out.strip() == "403", err


@pytest.mark.slow
def test_apt_get_update_works_through_the_gateway_proxy(client):
    status, out, err = run(client, "sudo -n apt-get update", timeout=240)
    assert status == 0, err
    assert "http://ap-northeast-2.ec2.archive.ubuntu.com/debian bookworm InRelease" in out
    switch = "sudo -n sed -i s/ap-northeast-2.ec2.archive.ubuntu.com/mirror.kakao.com/ /etc/apt/sources.list"
    status, out, err = run(client, f"{switch} && sudo -n apt-get update", timeout=240)
    assert status == 0, err
    assert "http://mirror.kakao.com/debian bookworm InRelease" in out
    status, out, err = run(
        client,
        "sudo -n DEBIAN_FRONTEND=noninteractive apt-get install -y -q make && make --version",
        timeout=240,
    )
    assert status == 0, err
    assert "GNU Make" in out
    assert list(Path(DEFAULT_CACHE).rglob("make_*.deb")), "the proxy caches package files"


def test_a_source_group_rule_admits_the_groups_own_instances_only(sandbox):
    ec2 = sandbox.ec2
    group = ec2.create_security_group(GroupName="peers", Description="peers")["GroupId"]
    ec2.authorize_security_group_ingress(
        GroupId=group,
        IpPermissions=[
            sandbox.rule("tcp", 22, control.SANDBOX_SSH_CIDR),
            {
                "IpProtocol": "tcp",
                "FromPort": 12345,
                "ToPort": 12345,
                "UserIdGroupPairs": [{"GroupId": group}],
            },
        ],
    )
    instances = ec2.run_instances(
        ImageId=sandbox.ami,
        InstanceType="t2.micro",
        MinCount=2,
        MaxCount=2,
        KeyName=sandbox.key_name,
        SecurityGroupIds=[group],
    )["Instances"]
    first, second = (i["PublicIpAddress"] for i in instances)
    try:
        for address in (first, second):
            wait_for_port(address)
        keys = host_keys_from_console(ec2, instances[1]["InstanceId"])
        with ssh_client(second, sandbox.key_pem, keys) as ssh:
            run(ssh, "setsid nohup nc -lk 12345 >/dev/null 2>&1 </dev/null &")
        keys = host_keys_from_console(ec2, instances[0]["InstanceId"])
        with ssh_client(first, sandbox.key_pem, keys) as ssh:
            eventually(lambda: run(ssh, f"nc -z -w 2 {second} 12345")[0] == 0)
        assert not tcp_open(second, 12345, timeout=0.5)  # this machine is not in the group
    finally:
        ec2.terminate_instances(InstanceIds=[i["InstanceId"] for i in instances])


def test_a_host_that_dies_is_booted_again_with_its_files(sandbox):
    import os
    import signal

    described = sandbox.launch()[0]
    instance_id, address = described["InstanceId"], described["PublicIpAddress"]
    wait_for_port(address)
    keys = host_keys_from_console(sandbox.ec2, instance_id)
    with ssh_client(address, sandbox.key_pem, keys) as ssh:
        run(ssh, "echo survived > ~/note")

    first = _recorded_pid(sandbox, instance_id)
    os.killpg(first, signal.SIGKILL)
    eventually(lambda: _recorded_pid(sandbox, instance_id) not in (None, first))
    wait_for_port(address)
    with ssh_client(address, sandbox.key_pem, keys) as ssh:
        assert run(ssh, "cat ~/note")[1].strip() == "survived"
    sandbox.ec2.terminate_instances(InstanceIds=[instance_id])


def _recorded_pid(sandbox, instance_id: str) -> int | None:
    import json

    recorded = json.loads((sandbox.state_dir / "sandbox" / "hosts.json").read_text())
    return recorded["hosts"].get(instance_id, {}).get("pid")
