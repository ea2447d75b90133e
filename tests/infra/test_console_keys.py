"""Host keys from the console: Latest first (and EC2's refusal), the bounded wait with its progress line,
keys pinned per instance id so a stop/start reads no console at all, and no private key in user data.

moto runs the instances; GetConsoleOutput's answers come from botocore's Stubber (moto's console is a fixed
Xen boot log without keys, and moto never refuses Latest), with EC2's real error for Latest on Xen.
"""

from __future__ import annotations

import base64
import io
from datetime import datetime, timezone

import boto3
import pytest
from botocore.stub import Stubber

from infra import console, instances, pinned_keys
from infra.errors import CloudError
from labctl import state, targets
from labctl.errors import LabError
from labctl.hostkeys import parse_host_keys
from labctl.options import ProvisionOptions
from labctl.output import Report
from labctl.single import provisioning
from tests.support.console import ECDSA, ED25519, console_text

from .conftest import REGION, TEST_CIDR

LATEST_REFUSED = (
    "UnsupportedOperation",
    "This instance type does not support retrieving the latest console logs",
)


class FakeTime:
    """Stands in for the `time` module inside infra.console: sleeping advances the clock at once."""

    def __init__(self) -> None:
        self.now = 1000.0
        self.slept: list[float] = []

    def monotonic(self) -> float:
        return self.now

    def sleep(self, seconds: float) -> None:
        self.slept.append(seconds)
        self.now += seconds


class Tty(io.StringIO):
    def isatty(self) -> bool:
        return True


@pytest.fixture
def clock(monkeypatch) -> FakeTime:
    fake = FakeTime()
    monkeypatch.setattr(console, "time", fake)
    return fake


@pytest.fixture(autouse=True)
def fresh_run(monkeypatch):
    """Each test is a new run: no instance type has had Latest refused yet."""
    monkeypatch.setattr(console, "_LATEST_REFUSED", set())


def provisioned(aws) -> dict:
    """One instance of a cloud-only provision (moto), as described."""
    options = ProvisionOptions(
        target="aws", instance_type="t2.micro", ssh_cidr=TEST_CIDR, cloud_only=True
    )  # a Xen type: the buffered console, never Latest
    (instance,) = provisioning.provision(options, Report(io.StringIO()))
    return instance


def stubbed_cloud() -> tuple[targets.Cloud, Stubber]:
    ec2 = boto3.client("ec2", region_name=REGION)
    return targets.Cloud("aws", REGION, None, ec2), Stubber(ec2)


def answer(stub: Stubber, instance_id: str, text: str, latest: bool = False) -> None:
    """One GetConsoleOutput answer; EC2 sends the text base64-encoded and botocore decodes it."""
    params = {"InstanceId": instance_id, **({"Latest": True} if latest else {})}
    output = base64.b64encode(text.encode()).decode()
    stub.add_response("get_console_output", {"InstanceId": instance_id, "Output": output}, params)


def refuse_latest(stub: Stubber, instance_id: str) -> None:
    code, message = LATEST_REFUSED
    stub.add_client_error(
        "get_console_output",
        service_error_code=code,
        service_message=message,
        http_status_code=400,
        expected_params={"InstanceId": instance_id, "Latest": True},
    )


def test_a_first_launch_waits_with_a_progress_line_then_pins_the_keys(aws, clock):
    instance = provisioned(aws)
    iid = instance["InstanceId"]
    assert instance["InstanceType"] == "t2.micro"  # Xen: the buffered console, never Latest
    cloud, stub = stubbed_cloud()
    for text in ("", "", "[  3.1] booting", "", console_text(ED25519)):
        answer(stub, iid, text)
    out = io.StringIO()
    with stub:
        (host,) = targets.lab_host_targets(cloud, "netlab", [instance], None, out)
    stub.assert_no_pending_responses()
    assert host.host_keys == (ED25519,)
    assert pinned_keys.remembered_keys(state.state_dir(), instance) == (ED25519,)
    lines = out.getvalue().splitlines()
    assert lines[0] == (
        f"waiting for the host keys on {iid}'s console (t2 consoles appear a few minutes after boot) 0 s"
    )
    assert all(line.startswith(f"waiting for the host keys on {iid}'s console") for line in lines)


def test_the_progress_line_is_not_spam_and_shows_the_elapsed_time(aws, clock):
    instance = {"InstanceId": "i-0123456789abcdef0", "InstanceType": "t2.micro"}
    texts = iter([""] * 70 + [console_text(ED25519)])
    cloud, stub = stubbed_cloud()
    for text in texts:
        answer(stub, instance["InstanceId"], text)
    out = io.StringIO()
    with stub:
        keys = console.wait_for_host_keys(cloud.ec2, instance, parse_host_keys, out=out)
    assert keys == (ED25519,)
    waited = clock.now - 1000.0
    assert waited > 60  # 0.2, 0.4, 0.8, then every second for a minute, then every 10 s
    lines = out.getvalue().splitlines()
    assert len(lines) <= waited / console.PROGRESS_EVERY + 2  # one line per ~15 s, not one per poll
    seconds = [int(line.rsplit(" ", 2)[1]) for line in lines]
    assert seconds == sorted(seconds) and seconds[-1] >= waited - console.PROGRESS_EVERY - 10


def test_reads_are_at_most_a_second_apart_in_the_first_minute_then_back_off(aws, clock):
    """Keys printed 4.5 s into the wait are read by 5.5 s (a doubling backoff read at 3.0 then 6.2 s)."""
    instance = {"InstanceId": "i-0123456789abcdef0", "InstanceType": "t2.micro"}
    cloud, stub = stubbed_cloud()
    reads: list[float] = []
    real_read = console.read_console

    def timed_read(*args):
        reads.append(clock.now - 1000.0)
        return real_read(*args)

    for _ in range(80):
        answer(stub, instance["InstanceId"], "")
    answer(stub, instance["InstanceId"], console_text(ED25519))
    with stub, pytest.MonkeyPatch.context() as patch:
        patch.setattr(console, "read_console", timed_read)
        console.wait_for_host_keys(cloud.ec2, instance, parse_host_keys)
    gaps = [later - earlier for earlier, later in zip(reads, reads[1:])]
    first_minute = [gap for gap, at in zip(gaps, reads) if at < console.FIRST_MINUTE]
    assert max(first_minute) <= console.FIRST_MINUTE_DELAY + 1e-9
    assert min(r for r in reads if r >= 4.5) <= 5.5
    assert max(gaps) == pytest.approx(console.MAX_POLL_DELAY)  # later on, one read per 10 s


def test_on_a_terminal_the_progress_line_is_redrawn_in_place_and_cleared(aws, clock):
    instance = {"InstanceId": "i-0123456789abcdef0", "InstanceType": "t2.micro"}
    cloud, stub = stubbed_cloud()
    for text in ("", "", "", console_text(ED25519)):
        answer(stub, instance["InstanceId"], text)
    out = Tty()
    with stub:
        console.wait_for_host_keys(cloud.ec2, instance, parse_host_keys, out=out)
    text = out.getvalue()
    assert "\n" not in text
    assert text.count("\r\x1b[2Kwaiting for the host keys") >= 2
    assert text.endswith("\r\x1b[2K")  # the line is gone once the keys are found


def test_nitro_types_ask_for_the_latestconsole_text(aws, clock):
    instance = {"InstanceId": "i-0123456789abcdef0", "InstanceType": "t3.micro"}
    cloud, stub = stubbed_cloud()
    answer(stub, instance["InstanceId"], "", latest=True)
    answer(stub, instance["InstanceId"], console_text(ECDSA), latest=True)
    with stub:
        assert console.wait_for_host_keys(cloud.ec2, instance, parse_host_keys) == (ECDSA,)
    stub.assert_no_pending_responses()


def test_latest_refused_by_ec2_falls_back_to_the_buffered_console_for_the_rest_of_the_run(aws, clock):
    """A type we take for Nitro but EC2 runs on Xen: one refusal, then never Latest again for that type."""
    first = {"InstanceId": "i-0123456789abcdef0", "InstanceType": "t3.micro"}
    second = {"InstanceId": "i-0fedcba9876543210", "InstanceType": "t3.micro"}
    cloud, stub = stubbed_cloud()
    refuse_latest(stub, first["InstanceId"])
    answer(stub, first["InstanceId"], "")
    answer(stub, first["InstanceId"], console_text(ED25519))  # no Latest on the next poll either
    answer(stub, second["InstanceId"], console_text(ECDSA))  # nor for another instance of the type
    with stub:
        assert console.wait_for_host_keys(cloud.ec2, first, parse_host_keys) == (ED25519,)
        assert console.wait_for_host_keys(cloud.ec2, second, parse_host_keys) == (ECDSA,)
    stub.assert_no_pending_responses()
    assert not console.asks_latest("t3.micro") and console.asks_latest("m5.large")


def test_another_error_on_latest_is_not_mistaken_for_the_refusal(aws, clock):
    instance = {"InstanceId": "i-0123456789abcdef0", "InstanceType": "t3.micro"}
    cloud, stub = stubbed_cloud()
    stub.add_client_error(
        "get_console_output",
        service_error_code="UnauthorizedOperation",
        service_message="You are not authorized to perform this operation.",
        http_status_code=403,
    )
    with stub, pytest.raises(CloudError, match="not allowed to call GetConsoleOutput"):
        console.wait_for_host_keys(cloud.ec2, instance, parse_host_keys)
    assert console.asks_latest("t3.micro")


def test_xen_families_are_known_and_metal_is_nitro():
    assert console.is_xen("t2.micro") and console.is_xen("m4.large") and console.is_xen("i3.large")
    assert not console.is_xen("i3.metal") and not console.is_xen("t3.micro") and not console.is_xen(None)
    assert console.host_key_timeout("t2.micro") == console.XEN_TIMEOUT > console.NITRO_TIMEOUT


def test_the_bounded_wait_ends_in_one_line_naming_the_ways_forward(aws, clock):
    instance = provisioned(aws)
    iid = instance["InstanceId"]
    cloud, stub = stubbed_cloud()
    for _ in range(10):
        answer(stub, iid, "[  3.1] booting")
    out = io.StringIO()
    with stub, pytest.raises(LabError) as caught:
        console.wait_for_host_keys(cloud.ec2, instance, parse_host_keys, out=out, timeout=5.0)
    message = str(caught.value)
    assert "\n" not in message
    assert message.startswith(f"instance {iid} has printed no SSH host keys on its console after 5 s")
    assert "wait a few minutes and re-run" in message
    assert "Get system log" in message and f"ssh ubuntu@{instance['PublicIpAddress']}" in message
    assert "`fab teardown` then `fab provision`" in message
    assert clock.now - 1000.0 == pytest.approx(5.0)  # bounded: not a second longer
    assert pinned_keys.remembered_keys(state.state_dir(), instance) == ()  # nothing trusted


def test_after_a_stop_and_start_the_pinned_keys_are_used_with_no_console_read(aws, clock):
    """cloud-init prints the keys once per instance: the new boot's console has none, and none is read."""
    instance = provisioned(aws)
    iid = instance["InstanceId"]
    cloud, stub = stubbed_cloud()
    answer(stub, iid, console_text(ED25519))
    with stub:
        (first,) = targets.lab_host_targets(cloud, "netlab", [instance], None)
    ec2 = boto3.client("ec2", region_name=REGION)
    ec2.stop_instances(InstanceIds=[iid])
    ec2.start_instances(InstanceIds=[iid])  # through the API, not through labctl
    (described,) = instances.describe_by_ids(ec2, [iid])
    # EC2 gives a started instance a new launch time and (without an Elastic IP) a new address; moto keeps
    # both, so the test sets them.
    restarted = dict(described, LaunchTime=datetime.now(timezone.utc), PublicIpAddress="54.180.0.77")
    cloud, stub = stubbed_cloud()  # nothing queued: any GetConsoleOutput call fails the test
    started = clock.now
    with stub:
        (host,) = targets.lab_host_targets(cloud, "netlab", [restarted], None)
    assert host.host_keys == first.host_keys == (ED25519,)
    assert clock.now == started  # no wait at all
    assert pinned_keys.last_seen(state.state_dir(), iid) == ("54.180.0.77", (ED25519,))


def test_keys_pinned_by_an_older_labctl_for_one_boot_are_kept(tmp_path):
    """Entries written with the launch time ('boot') still count: an upgrade does not strand a stopped lab."""
    (tmp_path / pinned_keys.PINNED_KEYS_FILE).write_text(
        '{"i-1": {"address": "198.51.100.9", "boot": "2026-11-26 10:00:00+00:00|198.51.100.9", '
        '"keys": [["ssh-ed25519", "AAAA"]]}}'
    )
    restarted = {
        "InstanceId": "i-1",
        "LaunchTime": "2026-11-27 08:00:00+00:00",
        "PublicIpAddress": "198.51.100.9",
    }
    assert pinned_keys.remembered_keys(tmp_path, restarted) == (("ssh-ed25519", "AAAA"),)


def test_remembering_the_same_keys_and_address_does_not_rewrite_the_file(tmp_path):
    instance = {"InstanceId": "i-1", "PublicIpAddress": "198.51.100.9"}
    pinned_keys.remember_keys(tmp_path, instance, (ED25519,))
    path = tmp_path / pinned_keys.PINNED_KEYS_FILE
    before = path.stat().st_mtime_ns
    path.chmod(0o400)  # a write would replace the file and so reset the mode
    pinned_keys.remember_keys(tmp_path, instance, (ED25519,))
    assert path.stat().st_mtime_ns == before and path.stat().st_mode & 0o777 == 0o400


def test_forget_host_keys_drops_one_instance_only_when_it_is_clear_which(aws):
    state_dir = state.state_dir()
    state_dir.mkdir(parents=True, exist_ok=True)
    with pytest.raises(LabError, match="no pinned host keys to forget"):
        targets.forget_host_keys()
    for iid in ("i-1", "i-2"):
        pinned_keys.remember_keys(
            state_dir, {"InstanceId": iid, "PublicIpAddress": "198.51.100.9"}, (ED25519,)
        )
    with pytest.raises(LabError, match=r"pinned for 2 instances: pick one with --instance \(i-1, i-2\)"):
        targets.forget_host_keys()
    with pytest.raises(LabError, match="no pinned host keys for i-3"):
        targets.forget_host_keys("i-3")
    assert "forgot the pinned host keys of i-2" in targets.forget_host_keys("i-2")
    assert pinned_keys.pinned_ids(state_dir) == ["i-1"]
    assert "forgot the pinned host keys of i-1" in targets.forget_host_keys()
    assert pinned_keys.pinned_ids(state_dir) == []


def test_user_data_carries_no_private_host_key(aws):
    """The decision (README, "Host keys"): host keys are made on the instance and pinned from its console;
    no key material goes into user data, which anyone with ec2:DescribeInstanceAttribute can read."""
    instance = provisioned(aws)
    ec2 = boto3.client("ec2", region_name=REGION)
    attribute = ec2.describe_instance_attribute(InstanceId=instance["InstanceId"], Attribute="userData")
    user_data = (attribute.get("UserData") or {}).get("Value") or ""
    text = base64.b64decode(user_data).decode(errors="replace")
    assert "PRIVATE KEY" not in text and "ssh_keys" not in text


def test_the_class_plan_uses_the_keys_pinned_before_a_stop_and_writes_none(aws):
    from labctl.classmode.plan import read_only_target

    instance = provisioned(aws)
    state_dir = state.state_dir()
    key_file = state.load_state()["key_file"]
    cloud, stub = stubbed_cloud()
    answer(stub, instance["InstanceId"], console_text(ECDSA))
    with stub:  # nothing pinned yet: the console, and nothing remembered (a plan writes nothing)
        assert read_only_target(cloud, instance, key_file, "s01").host_keys == (ECDSA,)
    assert pinned_keys.pinned_ids(state_dir) == []
    pinned_keys.remember_keys(state_dir, instance, (ED25519,))
    restarted = dict(instance, LaunchTime=datetime.now(timezone.utc))
    cloud, stub = stubbed_cloud()  # nothing queued: no console read
    with stub:
        assert read_only_target(cloud, restarted, key_file, "s01").host_keys == (ED25519,)


def test_labctls_own_client_sends_latest_and_moto_answers(aws):
    """labctl's clients run on a trimmed EC2 model: GetConsoleOutput keeps its `Latest` member."""
    from infra import session

    instance = provisioned(aws)
    ec2 = session.client(session.aws_session(REGION), "ec2")
    assert console.console_output(ec2, instance["InstanceId"], latest=True)
