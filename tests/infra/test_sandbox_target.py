"""The cloud tasks against the real sandbox target: a daemon, a namespace host, pinned-key SSH."""

from __future__ import annotations

import base64
import io
import os

import pytest

from labcore.net import is_sandbox_address
from labctl import targets
from labctl.options import ProvisionOptions
from labctl.output import Report
from labctl.single import provisioning
from labctl.state import state_dir
from labctl.status import status_data
from labctl.teardown import teardown

pytestmark = [pytest.mark.root, pytest.mark.slow]


@pytest.fixture
def sandbox_lab(monkeypatch):
    """Run with the sandbox target; afterwards stop its daemon and hosts (also when the test failed)."""
    if os.geteuid() != 0:
        pytest.skip("needs root")
    from sandbox.rootfs import rootfs_path

    if not rootfs_path().exists():
        pytest.skip("the sandbox root filesystem is not built yet (fab provision --target sandbox builds it)")
    from sandbox.testhost import stop_sandbox

    try:
        yield
    finally:
        stop_sandbox(state_dir())


def _provision() -> tuple[list[dict], list[str]]:
    out = io.StringIO()
    options = ProvisionOptions(target="sandbox", cloud_only=True)
    return provisioning.provision(options, Report(out, io.StringIO())), out.getvalue().splitlines()


def _ssh_with_pinned_key(host) -> str:
    import paramiko

    from sandbox.testhost import wait_for_port

    wait_for_port(host.address)
    client = paramiko.SSHClient()
    for key_type, blob in host.host_keys:
        client.get_host_keys().add(
            host.address, key_type, paramiko.PKey.from_type_string(key_type, base64.b64decode(blob))
        )
    client.set_missing_host_key_policy(paramiko.RejectPolicy())
    try:
        client.connect(
            host.address, username=host.user, key_filename=host.key_file, timeout=20, look_for_keys=False
        )
        _, stdout, _ = client.exec_command("id -un")
        return stdout.read().decode().strip()
    finally:
        client.close()


def test_sandbox_provision_is_idempotent_reachable_and_torn_down(sandbox_lab):
    (instance,), lines = _provision()
    assert lines[0] == "provision: target sandbox, region ap-northeast-2, lab netlab"
    assert is_sandbox_address(instance["PublicIpAddress"])

    _, again = _provision()
    assert again[-1].startswith("nothing to do")

    (host,) = targets.host_targets()
    assert host.target == "sandbox" and host.host_keys
    assert _ssh_with_pinned_key(host) == "ubuntu"

    data = status_data()
    assert data["endpoint"].startswith("http://127.0.0.1:") and data["sandbox"]["running"] is True
    assert {r["source"] for r in data["security_group"]["rules"]} == {"198.51.100.1/32"}

    results = teardown(report=Report(io.StringIO()))
    assert any(r.status == "deleted" and instance["InstanceId"] in r.resource for r in results)
    after = status_data()
    assert after["sandbox"]["running"] is False and after["instances"] == []
