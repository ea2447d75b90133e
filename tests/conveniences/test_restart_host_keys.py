"""Issue 14 through the real `fab` on the sandbox (root): the instance is stopped and started through the
API (not through labctl), then `fab provision deploy-echo verify` passes with the same pinned host key, well
within a minute, without waiting for the console (cloud-init prints the keys once per instance).
"""

from __future__ import annotations

import json
import time

import pytest

from tests.conveniences.test_fab_sandbox import Lab, only_instance

pytestmark = [pytest.mark.root, pytest.mark.slow]


@pytest.fixture(scope="module")
def lab(tmp_path_factory):
    import os

    if os.geteuid() != 0:
        pytest.skip("needs root (network namespaces, sshd, iptables)")
    testhost = pytest.importorskip("sandbox.testhost", reason="sandbox not available")
    box = Lab(tmp_path_factory.mktemp("lab state"))
    try:
        up = box.fab("provision", "--target", "sandbox")
        assert up.returncode == 0, up.stdout + up.stderr
        yield box
    finally:
        box.fab("teardown")
        testhost.stop_sandbox(box.state)


def pinned(lab: Lab) -> dict:
    return {
        iid: entry["keys"]
        for iid, entry in json.loads((lab.state / "pinned_host_keys.json").read_text()).items()
    }


def test_a_stop_and_start_through_the_api_keeps_the_pinned_key_and_needs_no_console_wait(lab):
    from sandbox import control
    from sandbox.testhost import sandbox_client

    instance_id = only_instance(lab)["id"]
    before = pinned(lab)
    assert list(before) == [instance_id] and before[instance_id]
    ec2 = sandbox_client(control.running_endpoint(lab.state))
    ec2.stop_instances(InstanceIds=[instance_id])
    ec2.get_waiter("instance_stopped").wait(InstanceIds=[instance_id], WaiterConfig={"Delay": 1})
    ec2.start_instances(InstanceIds=[instance_id])
    ec2.get_waiter("instance_running").wait(InstanceIds=[instance_id], WaiterConfig={"Delay": 1})

    started = time.monotonic()
    done = lab.fab("provision", "deploy-echo", "verify", timeout=120)
    took = time.monotonic() - started
    assert done.returncode == 0, done.stdout + done.stderr
    assert took < 60, f"took {took:.0f} s"
    assert "waiting for the host keys" not in done.stdout + done.stderr
    assert pinned(lab) == before  # same key, accepted by SSH (deploy and verify ran over it)
