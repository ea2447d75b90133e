"""The issue's end-to-end check through the real fabfile: provision --target sandbox --cloud-only, then
paramiko reaches the host with the saved key and pinned host key, status --json shows the sandbox, teardown
leaves nothing of that daemon (and no bridge when no other sandbox runs)."""

from __future__ import annotations

import json
import subprocess
from pathlib import Path

import pytest

from labcore.net import is_sandbox_address
from sandbox import control, network
from sandbox.registry import live_daemons
from sandbox.testhost import sandbox_client
from tests.support.sandbox import fab_in, host_keys_from_console, processes_marked_by, run, ssh_client

pytestmark = pytest.mark.root


def fab(state_dir: Path, *args: str) -> subprocess.CompletedProcess:
    return fab_in(state_dir, *args, timeout=240)


@pytest.fixture
def state_dir(rootfs, tmp_path):
    yield tmp_path
    if control.running_endpoint(tmp_path):
        fab(tmp_path, "teardown")
    from sandbox.testhost import stop_sandbox

    stop_sandbox(tmp_path)


def test_provision_status_teardown_through_fab(state_dir):
    provisioned = fab(state_dir, "provision", "--target", "sandbox", "--cloud-only")
    assert provisioned.returncode == 0, provisioned.stdout + provisioned.stderr

    report = json.loads(fab(state_dir, "status", "--json").stdout)
    endpoint = report["endpoint"]
    assert endpoint == control.running_endpoint(state_dir)
    (instance,) = report["instances"]
    address = instance["public_ip"]
    assert is_sandbox_address(address) and instance["private_ip"] == address
    assert [h["address"] for h in report["sandbox"]["hosts"]] == [address]
    assert oct(Path(instance["key_file"]).stat().st_mode & 0o777) == "0o600"

    keys = host_keys_from_console(sandbox_client(endpoint), instance["id"])
    with ssh_client(address, Path(instance["key_file"]).read_text(), keys) as ssh:
        assert run(ssh, "sudo -n id -u")[1].strip() == "0"

    daemon = report["sandbox"]["pid"]
    torn_down = fab(state_dir, "teardown")
    assert torn_down.returncode == 0, torn_down.stdout + torn_down.stderr
    assert control.running_endpoint(state_dir) is None
    assert not network.pid_alive(daemon) and processes_marked_by(daemon) == []
    assert network.netns_name(instance["id"]) not in network.list_netns()
    assert network.veth_name(instance["id"]) not in network.list_veths()
    assert not (state_dir / "sandbox").exists()
    assert not network.bridge_exists() or live_daemons()  # the bridge stays only while another sandbox runs
