"""The main job on the sandbox through the real entry points: fab provision (cloud part), the host steps,
fab deploy-echo and verify, a second run that changes nothing, then verify failing for the right reason
once the security group loses its 12345 rule; fab teardown always runs.

`fab provision` runs the cloud part and then the host steps; the second round goes through the Python API
to check each step's status exactly.
"""

from __future__ import annotations

import io
import os
import re
import socket
import subprocess
import sys
from pathlib import Path

import pytest

from lab.result import OK
from labctl import host_tasks
from tests.lab.conftest import ECHO_PORT, eventually

pytestmark = [pytest.mark.root, pytest.mark.slow]

PROJECT = Path(__file__).resolve().parents[2]
FAB = Path(sys.executable).with_name("fab")  # the fab of this interpreter's environment
REGION = "ap-northeast-2"


@pytest.fixture
def lab_env(tmp_path, monkeypatch):
    if os.geteuid() != 0:
        pytest.skip("needs root")
    pytest.importorskip("sandbox.control", reason="sandbox not available")
    targets = pytest.importorskip("labctl.targets", reason="cloud layer not available")
    state = tmp_path / "state"
    monkeypatch.setenv("LAB_STATE_DIR", str(state))
    monkeypatch.setenv("LAB_TARGET", "sandbox")
    env = dict(os.environ)

    def fab(*args: str) -> subprocess.CompletedProcess:
        return subprocess.run(
            [str(FAB), *args], cwd=PROJECT, env=env, capture_output=True, text=True, timeout=280
        )

    try:
        yield fab, targets
    finally:
        down = fab("teardown")
        assert down.returncode == 0, down.stdout + down.stderr


def tcp_times_out(address: str, port: int) -> bool:
    try:
        with socket.create_connection((address, port), timeout=1):
            return False
    except socket.timeout:
        return True
    except OSError:
        return False


def revoke_echo_rule(targets, instance_id: str) -> None:
    ec2 = targets.connect("sandbox", REGION, start_sandbox=False).ec2
    instance = ec2.describe_instances(InstanceIds=[instance_id])["Reservations"][0]["Instances"][0]
    group_id = instance["SecurityGroups"][0]["GroupId"]
    group = ec2.describe_security_groups(GroupIds=[group_id])["SecurityGroups"][0]
    rules = [p for p in group["IpPermissions"] if p.get("FromPort") == ECHO_PORT]
    assert rules, "provision opened 12345"
    ec2.revoke_security_group_ingress(GroupId=group_id, IpPermissions=rules)


def test_main_job_end_to_end(lab_env):
    fab, targets = lab_env
    up = fab("provision", "--target", "sandbox")
    assert up.returncode == 0, up.stdout + up.stderr
    assert up.stdout.splitlines()[0].startswith("provision: target sandbox, region ap-northeast-2")
    for step in ("apt mirror", "timezone", ".vimrc", "packages", "work dir"):
        assert re.search(rf"\] {re.escape(step)} +changed", up.stdout), up.stdout

    deployed = fab("deploy-echo")
    assert deployed.returncode == 0, deployed.stdout + deployed.stderr
    checked = fab("verify")
    assert checked.returncode == 0, checked.stdout + checked.stderr
    assert "FAILED" not in checked.stdout

    again = fab("provision")
    assert again.returncode == 0, again.stdout + again.stderr
    hosts = targets.host_targets()
    second = host_tasks.provision_hosts(hosts, out=io.StringIO())
    assert {r.status for r in second.results} == {OK}
    redeploy = host_tasks.deploy_echo(hosts, out=io.StringIO())
    assert {r.status for r in redeploy.results} == {OK}

    revoke_echo_rule(targets, hosts[0].instance_id)
    assert eventually(lambda: tcp_times_out(hosts[0].address, ECHO_PORT))
    blocked = fab("verify")
    assert blocked.returncode == 1
    assert (
        f"TCP {ECHO_PORT} timed out: the security group has no rule for {ECHO_PORT} from your address"
        in blocked.stdout
    )
    assert blocked.stderr == ""
