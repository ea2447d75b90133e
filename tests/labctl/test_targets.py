"""Host keys from the console, and the HostTargets handed to the host layer (with emulator safety)."""

from __future__ import annotations

import io
import sys

import pytest

from infra import console
from labctl import targets
from labctl.errors import LabError
from labctl.hostkeys import parse_host_keys
from labctl.options import ProvisionOptions
from labctl.output import Report
from labctl.single import provisioning
from labctl.state import load_state
from labctl.status import status_data
from labctl.teardown import teardown
from tests.support.console import ECDSA, ED25519, console_text

from .conftest import REGION, TEST_CIDR


def test_parses_cloud_init_host_key_block():
    assert parse_host_keys(console_text(ECDSA, ED25519)) == (ECDSA, ED25519)


def test_parses_prefixed_lines_and_ignores_junk():
    text = console_text(ED25519, prefix="ec2: ").replace("-----END", "not a key line\n-----END")
    assert parse_host_keys(text) == (ED25519,)


def test_key_whose_blob_does_not_match_its_type_is_dropped():
    mismatched = ("ssh-rsa", ED25519[1])
    assert parse_host_keys(console_text(mismatched, ECDSA)) == (ECDSA,)


def test_no_block_or_unterminated_block_gives_no_keys():
    assert parse_host_keys("booting...\nlogin:") == ()
    assert parse_host_keys(console_text(ED25519).split("-----END SSH HOST KEY KEYS-----")[0]) == ()


def test_last_block_wins_after_a_reboot():
    assert parse_host_keys(console_text(ED25519) + "\n" + console_text(ECDSA)) == (ECDSA,)


def _provision() -> dict:
    options = ProvisionOptions(
        target="aws", instance_type="t2.micro", ssh_cidr=TEST_CIDR, cloud_only=True
    )  # a Xen type: the buffered console, never Latest
    (instance,) = provisioning.provision(options, Report(io.StringIO()))
    return instance


def test_host_targets_carry_address_key_file_and_pinned_keys(aws, monkeypatch):
    instance = _provision()
    monkeypatch.setattr(
        console, "console_output", lambda ec2, instance_id, latest=False: console_text(ED25519)
    )
    (host,) = targets.host_targets()
    assert host.address == instance["PublicIpAddress"]
    assert host.instance_id == instance["InstanceId"]
    assert host.key_file == load_state()["key_file"]
    assert host.host_keys == (ED25519,)
    assert (host.user, host.port, host.target) == ("ubuntu", 22, "aws")


def test_host_keys_are_polled_until_the_console_shows_them(aws, monkeypatch):
    _provision()
    outputs = iter(["", "booting...", console_text(ED25519)])
    monkeypatch.setattr(console, "console_output", lambda ec2, instance_id, latest=False: next(outputs))
    monkeypatch.setattr(console.time, "sleep", lambda seconds: None)
    (host,) = targets.host_targets()
    assert host.host_keys == (ED25519,)


def test_no_host_keys_on_the_console_is_an_error_not_blind_trust(aws, monkeypatch):
    instance = _provision()
    monkeypatch.setattr(console, "console_output", lambda ec2, instance_id, latest=False: "booting...")
    monkeypatch.setattr(console, "XEN_TIMEOUT", 0.0)  # t2.micro
    with pytest.raises(LabError, match=f"instance {instance['InstanceId']} has printed no SSH host keys"):
        targets.host_targets()


def test_real_console_output_call_works_against_the_api(aws):
    instance = _provision()
    import boto3

    text = console.console_output(boto3.client("ec2", region_name=REGION), instance["InstanceId"])
    assert isinstance(text, str) and text


def test_host_targets_refuse_an_emulator_address_outside_the_sandbox_net(aws):
    import boto3

    _provision()
    emulator = targets.Cloud("aws", REGION, "http://127.0.0.1:5000", boto3.client("ec2", region_name=REGION))
    with pytest.raises(LabError, match="refusing to connect to .* not a sandbox address"):
        targets.host_targets(cloud=emulator)


def test_provision_without_cloud_only_on_an_emulator_never_reaches_the_host(aws, monkeypatch):
    import boto3

    emulator = targets.Cloud("aws", REGION, "http://127.0.0.1:5000", boto3.client("ec2", region_name=REGION))
    monkeypatch.setattr(targets, "connect", lambda *args, **kwargs: emulator)
    options = ProvisionOptions(target="aws", ssh_cidr=TEST_CIDR)
    with pytest.raises(LabError, match="refusing to connect"):
        provisioning.provision(options, Report(io.StringIO()))


def test_host_targets_without_a_provisioned_lab_is_a_clear_error(aws):
    with pytest.raises(LabError, match="run `fab provision` first"):
        targets.host_targets()


def test_host_targets_with_a_missing_key_file_is_a_clear_error(aws):
    from pathlib import Path

    _provision()
    Path(load_state()["key_file"]).unlink()
    with pytest.raises(LabError, match="key file .* is missing"):
        targets.host_targets()


def test_sandbox_target_without_the_sandbox_module_is_a_clear_error(monkeypatch):
    import sandbox

    monkeypatch.delattr(sandbox, "control", raising=False)
    monkeypatch.setitem(sys.modules, "sandbox.control", None)  # the import now fails, as before it existed
    with pytest.raises(LabError, match="sandbox target not available yet"):
        targets.connect("sandbox", REGION)


class StoppedSandbox:
    """A stand-in for sandbox.control whose daemon is not running."""

    def __init__(self) -> None:
        self.calls: list[str] = []

    def ensure_running(self, state_dir):
        self.calls.append("ensure_running")
        raise AssertionError("must not start the sandbox")

    def running_endpoint(self, state_dir):
        self.calls.append("running_endpoint")
        return None

    def status(self, state_dir):
        return {"running": False, "endpoint": None, "hosts": []}

    def shutdown_if_idle(self, state_dir):
        raise AssertionError("nothing to shut down")

    def cleanup_orphans(self):
        self.calls.append("cleanup_orphans")
        return []

    def has_saved_state(self, state_dir):
        return False


@pytest.fixture
def stopped_sandbox(monkeypatch):
    import sandbox

    fake = StoppedSandbox()
    monkeypatch.setitem(sys.modules, "sandbox.control", fake)
    monkeypatch.setattr(sandbox, "control", fake, raising=False)
    return fake


def test_plan_status_teardown_never_start_a_stopped_sandbox(stopped_sandbox):
    out = io.StringIO()
    provisioning.plan(ProvisionOptions(target="sandbox"), Report(out))
    assert out.getvalue().splitlines()[0] == "plan: target sandbox, region ap-northeast-2, lab netlab"
    assert out.getvalue().count("would create") == 3

    data = status_data(target="sandbox")
    assert (data["endpoint"], data["instances"], data["sandbox"]["running"]) == (None, [], False)

    out = io.StringIO()
    teardown(target="sandbox", report=Report(out))
    assert out.getvalue().splitlines()[-1].startswith("nothing to do")
    assert "ensure_running" not in stopped_sandbox.calls
    assert "cleanup_orphans" in stopped_sandbox.calls
