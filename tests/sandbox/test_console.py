"""GetConsoleOutput as EC2 answers it: buffered per boot after a delay, `Latest` only on Nitro types
(Xen ones get EC2's UnsupportedOperation), the most recent 64 KB."""

from __future__ import annotations

import time

import pytest
from botocore.exceptions import ClientError

from sandbox import console
from sandbox.console import (
    DEFAULT_DELAY,
    DELAY_ENV,
    OUTPUT_LIMIT,
    ConsoleBuffer,
    LatestUnsupported,
    delay_from_env,
    is_nitro,
)
from sandbox.errors import SandboxError
from sandbox.testhost import console_host_keys, wait_for_port
from tests.support.sandbox import eventually


@pytest.mark.parametrize(
    "instance_type",
    ["t2.micro", "t2.nano", "m4.large", "c4.xlarge", "r4.large", "m3.medium", "c3.large", "i2.xlarge"]
    + ["d2.xlarge", "x1.16xlarge", "p2.xlarge", "g3.4xlarge", "t1.micro", "i3.large", "p3.2xlarge"],
)
def test_xen_types(instance_type):
    assert not is_nitro(instance_type)


@pytest.mark.parametrize(
    "instance_type",
    ["t3.micro", "t3a.small", "t4g.micro", "m5.large", "c5.xlarge", "r5.large", "m6i.large", "c7g.medium"]
    + ["m7i.large", "i3.metal", "p3dn.24xlarge", "z1d.large", "i3en.large", "m5zn.large"],
)
def test_nitro_types(instance_type):
    assert is_nitro(instance_type)


def test_delay_comes_from_the_environment():
    assert delay_from_env({}) == DEFAULT_DELAY
    assert delay_from_env({DELAY_ENV: "0"}) == 0.0
    assert delay_from_env({DELAY_ENV: " 2.5 "}) == 2.5
    with pytest.raises(SandboxError, match=DELAY_ENV):
        delay_from_env({DELAY_ENV: "soon"})


class FakeHost:
    """A console that grows, and a boot start time, under a fake clock."""

    def __init__(self):
        self.now = 1000.0
        self.text = ""
        self.started: float | None = None

    def boot(self, text: str = "") -> None:
        self.started, self.text = self.now, text

    def snapshot(self, instance_id: str) -> tuple[str, float | None]:
        assert instance_id == "i-1"
        return self.text, self.started


@pytest.fixture
def host():
    return FakeHost()


@pytest.fixture
def buffer(host):
    return ConsoleBuffer(host.snapshot, delay=5.0, clock=lambda: host.now)


def test_nothing_before_the_first_boot(buffer, host):
    assert buffer.read("i-1", "t2.micro") == ("", host.now)


def test_buffered_output_appears_after_the_delay_then_stays_until_the_next_boot(buffer, host):
    host.boot("booting\n")
    host.now += 4.9
    host.text += "host keys\nCloud-init v. 22.4 finished at Tue, 01 Dec 2026\n"
    assert buffer.read("i-1", "t2.micro")[0] == ""
    host.now += 0.2
    first = "booting\nhost keys\nCloud-init v. 22.4 finished at Tue, 01 Dec 2026\n"
    assert buffer.read("i-1", "t2.micro") == (first, host.now)
    posted = host.now
    host.text += "login: \n"
    host.now += 60
    assert buffer.read("i-1", "t2.micro") == (first, posted)
    host.boot("second boot\nCloud-init v. 22.4 finished at Tue, 01 Dec 2026\n")  # stop/start
    host.now += 1
    assert buffer.read("i-1", "t2.micro") == (first, posted)  # the old post stays until the new one
    host.now += 4
    assert buffer.read("i-1", "t2.micro") == (host.text, host.now)


def test_a_boot_is_posted_once_it_got_past_cloud_init_or_at_the_settle_limit(buffer, host):
    """A busy machine must not post a boot before its keys were printed (they would lack until next boot)."""
    host.boot("booting\n")
    host.now += 5.1
    assert buffer.read("i-1", "t2.micro")[0] == ""  # past the delay, but cloud-init has not finished
    host.text += "-----BEGIN SSH HOST KEY KEYS-----\nssh-ed25519 AAAA\n-----END SSH HOST KEY KEYS-----\n"
    host.text += "Cloud-init v. 22.4 finished at Tue, 01 Dec 2026\n"
    assert "ssh-ed25519 AAAA" in buffer.read("i-1", "t2.micro")[0]
    host.boot("a boot that never finishes\n")
    host.now += 5.1 + console.SETTLE_LIMIT - 1
    assert "ssh-ed25519" in buffer.read("i-1", "t2.micro")[0]  # still the first boot's post
    host.now += 1
    assert buffer.read("i-1", "t2.micro")[0] == "a boot that never finishes\n"


def test_latest_on_xen_is_refused_as_ec2_does(buffer, host):
    host.boot("x")
    with pytest.raises(LatestUnsupported) as refused:
        buffer.read("i-1", "t2.micro", latest=True)
    assert refused.value.code == "UnsupportedOperation"
    assert str(refused.value) == "This instance type does not support retrieving the latest console logs"


def test_latest_on_nitro_is_the_live_console(buffer, host):
    host.boot("booting\n")
    assert buffer.read("i-1", "t3.micro", latest=True) == ("booting\n", host.now)
    host.now += 1
    host.text += "more\n"
    assert buffer.read("i-1", "t3.micro", latest=True) == ("booting\nmore\n", host.now)
    assert buffer.read("i-1", "t3.micro")[0] == ""  # without Latest: buffered, like every type


def test_only_the_most_recent_64_kb(buffer, host):
    host.boot("old line\n" + "x" * OUTPUT_LIMIT + "\nCloud-init v. 22.4 finished at Tue, 01 Dec 2026\n")
    latest = buffer.read("i-1", "t3.micro", latest=True)[0]
    assert len(latest.encode()) == OUTPUT_LIMIT and latest.endswith("finished at Tue, 01 Dec 2026\n")
    assert "old line" not in latest
    host.now += 5
    assert buffer.read("i-1", "t3.micro")[0] == latest


# ---- through the sandbox daemon's API -------------------------------------------------------------------


def launch(sandbox, instance_type: str) -> tuple[str, str]:
    described = sandbox.ec2.run_instances(
        ImageId=sandbox.ami,
        InstanceType=instance_type,
        MinCount=1,
        MaxCount=1,
        KeyName=sandbox.key_name,
        SecurityGroupIds=[sandbox.group_id],
    )["Instances"][0]
    return described["InstanceId"], described["PublicIpAddress"]


@pytest.mark.root
def test_a_t2_console_is_empty_until_the_delay_then_shows_the_host_keys(sandbox, console_delay):
    instance_id, address = launch(sandbox, "t2.micro")
    launched = time.monotonic()
    first = sandbox.ec2.get_console_output(InstanceId=instance_id)
    if time.monotonic() - launched < console_delay:
        assert "Output" not in first and first["InstanceId"] == instance_id
    wait_for_port(address)
    keys = console_host_keys(sandbox.ec2, instance_id)
    assert time.monotonic() - launched >= console_delay
    assert any(key.startswith("ssh-ed25519 AAAA") for key in keys)  # cloud-init prints each key type
    posted = sandbox.ec2.get_console_output(InstanceId=instance_id)
    again = sandbox.ec2.get_console_output(InstanceId=instance_id)
    assert posted["Output"] == again["Output"] and posted["Timestamp"] == again["Timestamp"]
    assert "-----BEGIN SSH HOST KEY FINGERPRINTS-----" in posted["Output"]


@pytest.mark.root
def test_latest_on_a_t2_is_ec2s_unsupported_operation(sandbox):
    instance_id, _ = launch(sandbox, "t2.micro")
    with pytest.raises(ClientError) as refused:
        sandbox.ec2.get_console_output(InstanceId=instance_id, Latest=True)
    error = refused.value.response["Error"]
    assert error["Code"] == "UnsupportedOperation"
    assert error["Message"] == "This instance type does not support retrieving the latest console logs"


@pytest.mark.root
def test_latest_on_a_t3_is_the_live_console_before_the_buffered_one_appears(sandbox, console_delay):
    instance_id, address = launch(sandbox, "t3.micro")
    launched = time.monotonic()
    wait_for_port(address)

    def live_keys() -> str:
        live = sandbox.ec2.get_console_output(InstanceId=instance_id, Latest=True).get("Output", "")
        return live if "-----END SSH HOST KEY KEYS-----" in live else ""

    live = eventually(live_keys)
    buffered = sandbox.ec2.get_console_output(InstanceId=instance_id)
    assert "\nssh-ed25519 AAAA" in live.split("-----BEGIN SSH HOST KEY KEYS-----")[1]
    if time.monotonic() - launched < console_delay:
        assert "Output" not in buffered
