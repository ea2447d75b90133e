"""A sandbox instance boots like an EC2 Ubuntu instance: systemd as PID 1 under systemd-nspawn, cloud-init
(Ec2 datasource once the metadata service of sandbox/imds.py is there, else its None fallback), sshd; stop is
a clean shutdown, start boots the same disk again (files and host keys kept, keys not printed again),
`poweroff` inside stops the instance, terminate leaves no container, mount or cgroup behind."""

from __future__ import annotations

import importlib.util
import time

import pytest

from sandbox import cgroups, container, control, host, network
from sandbox.testhost import wait_for_port
from tests.support.sandbox import eventually, host_keys_from_console, run, ssh_client

pytestmark = [pytest.mark.root, pytest.mark.slow]

# TODO(lead): with sandbox/imds.py merged and wired into the daemon, cloud-init must use the Ec2 datasource;
# this switches by itself once the module exists.
IMDS_MERGED = importlib.util.find_spec("sandbox.imds") is not None
KEYS_BEGIN = "-----BEGIN SSH HOST KEY KEYS-----"
SSH_READY_TIMEOUT = 30.0


def describe(sandbox, instance_id: str) -> dict:
    return sandbox.ec2.describe_instances(InstanceIds=[instance_id])["Reservations"][0]["Instances"][0]


def ssh_when_ready(sandbox, instance_id: str, address: str, keys=None):
    """An SSH client as soon as the key login works (cloud-init has made the user by then)."""
    deadline = time.monotonic() + SSH_READY_TIMEOUT
    while True:
        try:
            wait_for_port(address, timeout=SSH_READY_TIMEOUT)
            pinned = keys or host_keys_from_console(sandbox.ec2, instance_id)
            return ssh_client(address, sandbox.key_pem, pinned)
        except Exception:
            if time.monotonic() > deadline:
                raise
            time.sleep(0.1)


@pytest.fixture(scope="module")
def booted(sandbox):
    """One booted instance: (id, address, pinned host keys, seconds from RunInstances to an SSH login)."""
    began = time.monotonic()
    described = sandbox.launch()[0]
    instance_id, address = described["InstanceId"], described["PublicIpAddress"]
    client = ssh_when_ready(sandbox, instance_id, address)
    ready = time.monotonic() - began
    client.close()
    yield instance_id, address, host_keys_from_console(sandbox.ec2, instance_id), ready
    sandbox.ec2.terminate_instances(InstanceIds=[instance_id])


@pytest.fixture
def client(sandbox, booted):
    ssh = ssh_when_ready(sandbox, booted[0], booted[1], booted[2])
    yield ssh
    ssh.close()


def test_ssh_is_ready_within_seconds_of_run_instances(booted):
    print(f"SSH ready {booted[3]:.2f} s after RunInstances")
    assert booted[3] < 15.0  # target 5 s on an idle machine; CI shares 2 CPUs


def test_pid_1_is_systemd_and_the_system_runs(client):
    assert run(client, "cat /proc/1/comm")[1].strip() == "systemd"
    _, state, _ = run(client, "systemctl is-system-running --wait", timeout=60)
    _, failed, _ = run(client, "systemctl list-units --failed --plain --no-legend")
    print("failed units:", failed.strip() or "none")
    assert state.strip() in ("running", "degraded"), failed
    assert run(client, "systemd-detect-virt --container")[1].strip() == "systemd-nspawn"


def test_cloud_init_is_done_with_the_expected_datasource(client):
    status, out, err = run(client, "cloud-init status --wait --long", timeout=60)
    assert "status: done" in out, out + err
    expected = "DataSourceEc2" if IMDS_MERGED else "DataSourceNone"
    assert expected in out, out


def test_user_ubuntu_has_passwordless_sudo_and_its_hostname_resolves(client):
    status, out, err = run(client, "sudo -n id -un && id -un && hostname && getent hosts $(hostname)")
    assert status == 0 and "unable to resolve" not in err, err
    address = client.get_transport().getpeername()[0]
    assert out.split()[:3] == ["root", "ubuntu", "ip-" + address.replace(".", "-")]


def test_systemd_tools_work_inside(client):
    command = "sudo -n timedatectl set-timezone Asia/Seoul && timedatectl show -p Timezone"
    status, out, err = run(client, command)
    assert status == 0 and out.strip() == "Timezone=Asia/Seoul", err
    assert run(client, "sudo -n systemctl is-active ssh")[1].strip() == "active"


def test_the_console_holds_the_latest_boot_with_host_keys_on_the_first(sandbox, booted):
    text, started = host.console_snapshot(sandbox.state_dir / "sandbox" / "hosts" / booted[0])
    assert started is not None and time.time() - 600 < started <= time.time()
    assert "cloud-init" in text and KEYS_BEGIN in text, text[-2000:]
    printed = text.split(KEYS_BEGIN)[1].split("-----END SSH HOST KEY KEYS-----")[0]
    assert "ssh-ed25519 " + booted[2][0][1] in printed or any(k[1] in printed for k in booted[2])


def test_stop_start_keeps_files_and_host_key_and_prints_no_keys_again(sandbox):
    described = sandbox.launch()[0]
    instance_id, address = described["InstanceId"], described["PublicIpAddress"]
    host_dir = sandbox.state_dir / "sandbox" / "hosts" / instance_id
    try:
        with ssh_when_ready(sandbox, instance_id, address) as ssh:
            keys = host_keys_from_console(sandbox.ec2, instance_id)
            assert run(ssh, "echo kept > ~/note && sudo -n sh -c 'echo root-kept > /etc/lab-note'")[0] == 0
            before = run(ssh, "cat /etc/ssh/ssh_host_ed25519_key.pub /etc/machine-id")[1]
            run(ssh, "cloud-init status --wait", timeout=60)  # the keys are printed in its last stage
        first_boot, first_started = host.console_snapshot(host_dir)

        sandbox.ec2.stop_instances(InstanceIds=[instance_id])
        eventually(lambda: describe(sandbox, instance_id)["State"]["Name"] == "stopped")
        eventually(lambda: not network.netns_exists(network.netns_name(instance_id)), timeout=30)
        assert not [d for d in cgroups.host_dirs(instance_id) if d.exists()]
        shutdown_text, _ = host.console_snapshot(host_dir)
        assert "Reached target shutdown.target" in shutdown_text, shutdown_text[-1500:]  # a clean shutdown
        assert shutdown_text.rstrip().endswith("Halting system."), shutdown_text[-1500:]

        sandbox.ec2.start_instances(InstanceIds=[instance_id])
        assert describe(sandbox, instance_id)["PublicIpAddress"] == address
        with ssh_when_ready(sandbox, instance_id, address, keys) as ssh:  # pinned keys: same host key
            assert run(ssh, "cat ~/note /etc/lab-note")[1].split() == ["kept", "root-kept"]
            assert run(ssh, "cat /etc/ssh/ssh_host_ed25519_key.pub /etc/machine-id")[1] == before
            assert "status: done" in run(ssh, "cloud-init status --wait", timeout=60)[1]
        second_boot, second_started = host.console_snapshot(host_dir)
        assert second_started > first_started
        assert KEYS_BEGIN in first_boot and KEYS_BEGIN not in second_boot
    finally:
        sandbox.ec2.terminate_instances(InstanceIds=[instance_id])
    eventually(lambda: not host_dir.exists(), timeout=30)
    assert not [d for d in cgroups.host_dirs(instance_id) if d.exists()]


def test_poweroff_inside_stops_the_instance(sandbox):
    described = sandbox.launch()[0]
    instance_id, address = described["InstanceId"], described["PublicIpAddress"]
    try:
        with ssh_when_ready(sandbox, instance_id, address) as ssh:
            ssh.exec_command("sudo -n poweroff")
        eventually(lambda: describe(sandbox, instance_id)["State"]["Name"] == "stopped", timeout=30)
        reason = describe(sandbox, instance_id)["StateReason"]["Code"]
        assert reason == "Client.InstanceInitiatedShutdown"
        assert not [d for d in cgroups.host_dirs(instance_id) if d.exists()]
    finally:
        sandbox.ec2.terminate_instances(InstanceIds=[instance_id])


def test_status_names_the_containers_sshd(sandbox, booted):
    (entry,) = [h for h in control.status(sandbox.state_dir)["hosts"] if h["instance_id"] == booted[0]]
    assert entry["kind"] == "systemd"
    assert entry["sshd_pid"] == container.sshd_pid(booted[0]) and network.pid_alive(entry["sshd_pid"])


def test_reboot_inside_boots_the_same_host_again(sandbox):
    described = sandbox.launch()[0]
    instance_id, address = described["InstanceId"], described["PublicIpAddress"]
    host_dir = sandbox.state_dir / "sandbox" / "hosts" / instance_id
    try:
        with ssh_when_ready(sandbox, instance_id, address) as ssh:
            keys = host_keys_from_console(sandbox.ec2, instance_id)
            run(ssh, "echo before-reboot > ~/note")
            _, first_started = host.console_snapshot(host_dir)
            ssh.exec_command("sudo -n reboot")
        eventually(lambda: (host.console_snapshot(host_dir)[1] or 0) > first_started, timeout=30)
        with ssh_when_ready(sandbox, instance_id, address, keys) as ssh:
            assert run(ssh, "cat ~/note")[1].strip() == "before-reboot"
        assert describe(sandbox, instance_id)["State"]["Name"] == "running"
    finally:
        sandbox.ec2.terminate_instances(InstanceIds=[instance_id])
