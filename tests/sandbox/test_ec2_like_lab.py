"""Issue 13's must-show on a booting sandbox host, through the real fabfile and EC2's API.

ONE lab is provisioned for the whole module (`fab provision --target sandbox deploy-echo verify`); the tests
run in file order on it: what runs inside (systemd PID 1, cloud-init from the Ec2 datasource, timedatectl,
the echo unit, IMDSv2), a stop/start through the API (not labctl) after which the echo unit is back by itself
and a re-run passes within a minute with the same pinned host key, and last `--auto-stop` ending `stopped`.
"""

from __future__ import annotations

import io
import json
import os
import socket
import subprocess
import time
from dataclasses import dataclass
from pathlib import Path

import paramiko
import pytest

from lab import deploy
from lab.target import HostTarget
from labctl import host_tasks
from labctl.errors import LabError
from sandbox import control
from sandbox.testhost import canonical_focal_ami, sandbox_client, stop_sandbox, wait_for_port
from tests.support.sandbox import eventually, fab_in, host_keys_from_console, run, ssh_client

pytestmark = [pytest.mark.root, pytest.mark.slow]
RERUN_LIMIT = 60.0  # seconds: `fab provision deploy-echo verify` after a stop/start


def fab(state_dir: Path, *args: str, timeout: float = 400) -> subprocess.CompletedProcess:
    return fab_in(state_dir, *args, timeout=timeout)


@dataclass
class Lab:
    state_dir: Path
    ec2: object
    instance_id: str
    address: str
    key_pem: str
    key_file: str
    host_keys: list[tuple[str, str]]

    def sh(self, command: str) -> tuple[int, str, str]:
        """Run `command` on the host over SSH, accepting only the host keys pinned at the first boot."""
        with ssh_client(self.address, self.key_pem, self.host_keys) as client:
            return run(client, command)

    def out(self, command: str) -> str:
        status, out, err = self.sh(command)
        assert status == 0, f"{command}: exit {status}: {out}{err}"
        return out.strip()

    def described(self) -> dict:
        reservations = self.ec2.describe_instances(InstanceIds=[self.instance_id])["Reservations"]
        return reservations[0]["Instances"][0]

    def state(self) -> str:
        return self.described()["State"]["Name"]


@pytest.fixture(scope="module")
def lab(rootfs, tmp_path_factory) -> Lab:
    state_dir = tmp_path_factory.mktemp("ec2-like-lab")
    try:
        done = fab(state_dir, "provision", "--target", "sandbox", "deploy-echo", "verify")
        assert done.returncode == 0, done.stdout + done.stderr
        endpoint = json.loads((control.sandbox_dir(state_dir) / "daemon.json").read_text())["endpoint"]
        ec2 = sandbox_client(endpoint)  # botocore with the sandbox endpoint (127.0.0.1)
        (instance,) = json.loads(fab(state_dir, "status", "--json").stdout)["instances"]
        keys = host_keys_from_console(ec2, instance["id"])
        key_pem = Path(instance["key_file"]).read_text()
        yield Lab(state_dir, ec2, instance["id"], instance["public_ip"], key_pem, instance["key_file"], keys)
    finally:
        if control.running_endpoint(state_dir):
            fab(state_dir, "teardown")
        stop_sandbox(state_dir)


def echo_unit_owns_port(lab: Lab) -> bool:
    """The process listening on TCP 12345 is the echo unit's main process (its cgroup is the unit's)."""
    main_pid = lab.out(f"systemctl show -p MainPID --value {deploy.UNIT_NAME}")
    listening = lab.out("sudo -n ss -Hltnp 'sport = :12345'")
    return main_pid != "0" and f"pid={main_pid}," in listening


def test_the_host_runs_systemd_cloud_init_timedatectl_and_the_echo_unit(lab):
    assert lab.out("cat /proc/1/comm") == "systemd"
    assert lab.out("systemctl is-system-running") == "running"
    status = lab.out("cloud-init status --long")
    assert "status: done" in status and "DataSourceEc2" in status, status
    assert lab.out("timedatectl show -p Timezone --value") == "Asia/Seoul"
    assert lab.out("date +%Z") == "KST"
    assert echo_unit_owns_port(lab)
    assert lab.out(f"systemctl is-enabled {deploy.UNIT_NAME}") == "enabled"
    assert lab.out(f"systemctl show -p Restart --value {deploy.UNIT_NAME}") == "always"
    pid = lab.out(f"systemctl show -p MainPID --value {deploy.UNIT_NAME}")
    assert f"/system.slice/{deploy.UNIT_NAME}" in lab.out(f"cat /proc/{pid}/cgroup")
    assert lab.sh(f"test -e ~/server-socket/{deploy.PID_FILE}")[0] != 0  # no supervised process
    # Restarts on failure: kill the server, systemd starts a new one.
    lab.out(f"sudo -n kill -KILL {pid}")
    eventually(lambda: lab.out(f"systemctl show -p MainPID --value {deploy.UNIT_NAME}") not in ("0", pid))
    eventually(lambda: echo_unit_owns_port(lab), timeout=15)


IMDS_PROBE = (
    "python3 -c \"import urllib.request as u; B='http://169.254.169.254/latest/'; "
    "t=u.urlopen(u.Request(B+'api/token', method='PUT', "
    "headers={'X-aws-ec2-metadata-token-ttl-seconds': '60'}), timeout=5).read().decode(); "
    "print(u.urlopen(u.Request(B+'meta-data/instance-id', "
    "headers={'X-aws-ec2-metadata-token': t}), timeout=5).read().decode())\""
)


def test_imdsv2_inside_the_host_through_fab_ssh(lab):
    done = fab(lab.state_dir, "ssh", "--command", IMDS_PROBE, timeout=60)
    assert done.returncode == 0, done.stdout + done.stderr
    assert done.stdout.strip().splitlines()[-1] == lab.instance_id


def test_stop_start_through_the_api_then_a_rerun_passes_within_a_minute(lab):
    lab.ec2.stop_instances(InstanceIds=[lab.instance_id])
    eventually(lambda: lab.state() == "stopped", timeout=60, interval=0.5)
    lab.ec2.start_instances(InstanceIds=[lab.instance_id])
    started = time.monotonic()
    eventually(lambda: lab.state() == "running", timeout=30, interval=0.5)

    def active() -> str:
        try:
            return lab.out(f"systemctl is-active {deploy.UNIT_NAME}") == "active"
        except Exception:  # sshd not up yet
            return False

    eventually(active, timeout=45, interval=0.5)  # came back by itself (enabled), same pinned host key
    done = fab(lab.state_dir, "provision", "deploy-echo", "verify", timeout=120)
    took = time.monotonic() - started
    assert done.returncode == 0, done.stdout + done.stderr
    assert took < RERUN_LIMIT, f"start + re-run took {took:.1f} s"
    assert echo_unit_owns_port(lab)


AWS = "/usr/bin/aws"  # Debian's awscli (scripts/bootstrap installs it)
USER_DATA = """#cloud-config
write_files:
  - path: /etc/labctl-from-user-data
    content: written by cloud-init from the AWS CLI's user data
"""


def aws_cli(lab: Lab, tmp_path: Path):
    """`aws ec2 ...` against the lab's sandbox endpoint only: dummy credentials, no config, no IMDS."""
    endpoint = json.loads((control.sandbox_dir(lab.state_dir) / "daemon.json").read_text())["endpoint"]
    env = dict(
        os.environ,
        AWS_ACCESS_KEY_ID="sandbox",
        AWS_SECRET_ACCESS_KEY="sandbox",
        AWS_CONFIG_FILE=str(tmp_path / "no-config"),
        AWS_SHARED_CREDENTIALS_FILE=str(tmp_path / "no-credentials"),
        AWS_EC2_METADATA_DISABLED="true",
        AWS_PAGER="",
    )
    env.pop("AWS_PROFILE", None)

    def ec2(*args: str):
        command = [AWS, "--endpoint-url", endpoint, "--region", "ap-northeast-2", "--output", "json", "ec2"]
        done = subprocess.run([*command, *args], env=env, capture_output=True, text=True, timeout=60)
        assert done.returncode == 0, f"aws ec2 {' '.join(args)}: {done.stderr}"
        return json.loads(done.stdout) if done.stdout.strip() else {}

    return ec2


@pytest.mark.skipif(not Path(AWS).exists(), reason="Debian's awscli is not installed (scripts/bootstrap)")
def test_the_aws_cli_runs_logs_in_stops_starts_and_terminates_an_instance(lab, tmp_path):
    ec2 = aws_cli(lab, tmp_path)
    key_pem = ec2("create-key-pair", "--key-name", "cli", "--key-type", "ed25519")["KeyMaterial"]
    group = ec2("create-security-group", "--group-name", "cli", "--description", "AWS CLI test")["GroupId"]
    ec2(
        "authorize-security-group-ingress",
        *("--group-id", group, "--protocol", "tcp", "--port", "22", "--cidr", control.SANDBOX_SSH_CIDR),
    )
    (user_data := tmp_path / "user-data.yaml").write_text(USER_DATA)
    focal = "Name=name,Values=ubuntu/images/hvm-ssd/ubuntu-focal-20.04-amd64-server-*"
    images = ec2("describe-images", "--owners", "099720109477", "--filters", focal)["Images"]
    image = max(images, key=lambda found: found["CreationDate"])["ImageId"]
    (instance,) = ec2(
        "run-instances",
        *("--image-id", image, "--instance-type", "t3.micro", "--count", "1", "--key-name", "cli"),
        *("--security-group-ids", group, "--user-data", f"file://{user_data}"),
    )["Instances"]
    instance_id = instance["InstanceId"]

    def described() -> dict:
        return ec2("describe-instances", "--instance-ids", instance_id)["Reservations"][0]["Instances"][0]

    def console_keys() -> str:
        output = ec2("get-console-output", "--instance-id", instance_id).get("Output") or ""
        return output if "-----END SSH HOST KEY KEYS-----" in output else ""

    console = eventually(console_keys, timeout=90, interval=1.0)
    assert "-----BEGIN SSH HOST KEY KEYS-----" in console
    block = console.split("-----BEGIN SSH HOST KEY KEYS-----")[1].split("-----END SSH HOST KEY KEYS-----")[0]
    host_keys = [tuple(line.split()[:2]) for line in block.splitlines() if line.strip()]
    assert {key_type for key_type, _ in host_keys} == {"ssh-ed25519", "ecdsa-sha2-nistp256"}  # no rsa here
    address = described()["PublicIpAddress"]

    def login(command: str) -> str:
        with ssh_client(address, key_pem, host_keys) as client:
            status, out, err = run(client, command)
        assert status == 0, out + err
        return out

    assert login("cat /etc/labctl-from-user-data") == "written by cloud-init from the AWS CLI's user data"
    assert "status: done" in login("cloud-init status --wait")

    ec2("stop-instances", "--instance-ids", instance_id)
    eventually(lambda: described()["State"]["Name"] == "stopped", timeout=60, interval=0.5)
    ec2("start-instances", "--instance-ids", instance_id)
    eventually(lambda: described()["State"]["Name"] == "running", timeout=30, interval=0.5)

    def logged_in_again() -> str:
        try:
            return login("cat /etc/labctl-from-user-data")
        except Exception:  # sshd not up yet; a changed host key would never pass either
            return ""

    assert eventually(logged_in_again, timeout=45, interval=0.5).startswith("written by cloud-init")

    ec2("terminate-instances", "--instance-ids", instance_id)
    eventually(lambda: described()["State"]["Name"] == "terminated", timeout=60, interval=0.5)
    ec2("delete-security-group", "--group-id", group)
    ec2("delete-key-pair", "--key-name", "cli")


SLOW_FAILING_USER_DATA = """#cloud-config
runcmd:
  - sleep 12
  - touch /var/tmp/user-data-ran
  - exit 3
"""


def ed25519_host_key(address: str) -> tuple[str, str]:
    """The host's ed25519 key, read from the SSH handshake (its console prints keys only after user data)."""
    sock = socket.create_connection((address, 22), timeout=10)
    transport = paramiko.Transport(sock)
    try:
        transport.get_security_options().key_types = ["ssh-ed25519"]
        transport.start_client(timeout=10)
        key = transport.get_remote_server_key()
        return key.get_name(), key.get_base64()
    finally:
        transport.close()


def test_the_cloud_init_wait_is_real_and_its_error_is_reported(lab):
    """User data still runs (then fails) when SSH is up: provision waits for it, then names the error."""
    (instance,) = lab.ec2.run_instances(
        ImageId=canonical_focal_ami(lab.ec2),
        InstanceType="t3.micro",
        MinCount=1,
        MaxCount=1,
        KeyName=lab.described()["KeyName"],
        SecurityGroupIds=[group["GroupId"] for group in lab.described()["SecurityGroups"]],
        UserData=SLOW_FAILING_USER_DATA,
    )["Instances"]
    instance_id, address = instance["InstanceId"], instance["PublicIpAddress"]
    try:
        wait_for_port(address, timeout=60)
        keys = (ed25519_host_key(address),)
        target = HostTarget("slow-1", address, "ubuntu", lab.key_file, 22, keys, "sandbox", instance_id)
        with ssh_client(address, lab.key_pem, list(target.host_keys)) as client:
            assert "status: running" in run(client, "cloud-init status")[1]  # user data still running
        with pytest.raises(LabError, match="cloud-init finished with status 'error'.*cloud-init-output"):
            host_tasks.provision_hosts([target], out=io.StringIO())
        with ssh_client(address, lab.key_pem, list(target.host_keys)) as client:
            assert run(client, "test -e /var/tmp/user-data-ran")[0] == 0  # it waited for the user data
    finally:
        lab.ec2.terminate_instances(InstanceIds=[instance_id])


def test_auto_stop_shuts_the_host_down_and_the_instance_ends_stopped(lab):
    done = fab(lab.state_dir, "provision", "--auto-stop", "0.0167", timeout=120)  # 1/60 h: +1 min
    assert done.returncode == 0, done.stdout + done.stderr
    assert "shutdown -h scheduled" in done.stdout
    # No SSH check here: with a shutdown less than 5 minutes away systemd writes /run/nologin (as on EC2).
    eventually(lambda: lab.state() == "stopped", timeout=100, interval=1.0)
    assert lab.described()["StateReason"]["Code"] == "Client.InstanceInitiatedShutdown"
