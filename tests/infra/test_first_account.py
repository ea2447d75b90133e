"""Issue 14 on a student's new account: IAM denial texts, the Ubuntu 20.04 image, the SSH source after a
network change, and never reaching real AWS by surprise."""

from __future__ import annotations

import datetime
import io
import os
import socket
from pathlib import Path

import botocore.credentials
import pytest
from botocore.stub import ANY, Stubber

from infra import ami, instances, session, ssh_source
from infra.errors import translate
from lab.target import HostTarget
from labctl import targets
from labctl.errors import LabError
from labctl.options import ProvisionOptions
from labctl.output import Report
from labctl.single import provisioning
from labctl.state import LabState

from .conftest import REGION, TEST_CIDR

OFFLINE = "http://127.0.0.1:9"  # Stubber clients: a loopback endpoint, never sent anything
PROJECT = Path(__file__).resolve().parents[2]


def _offline(service: str = "ec2"):
    return session.client(session.aws_session(REGION), service, OFFLINE)


def _error_of(call, code: str, message: str, status: int = 403):
    ec2 = _offline()
    with Stubber(ec2) as stub:
        stub.add_client_error(call, code, message, status)
        with pytest.raises(Exception) as raised:
            getattr(ec2, call)(**_ARGS[call])
    return translate(raised.value)


_ARGS = {
    "run_instances": dict(ImageId="ami-1", InstanceType="t3.micro", MinCount=1, MaxCount=1),
    "describe_instances": {},
}

# --- 4. IAM: keep AWS's text naming the denied action -----------------------------------------------------

BLOB = "qoYeuy5DNQMk_k7JauWsrjPnqAi9h90gWITrdEQKpzKtUH4C4XeRuGX_uviYK9_27hWRbK5Pf9jBrs08Gsd23YlGh" * 3
DENIED = (
    "You are not authorized to perform this operation. User: arn:aws:iam::123456789012:user/student is not "
    "authorized to perform: ec2:RunInstances on resource: arn:aws:ec2:ap-northeast-2:123456789012:instance/* "
    "because no identity-based policy allows the ec2:RunInstances action. Encoded authorization failure "
    f"message: {BLOB}"
)


def test_a_denial_keeps_the_denied_action_and_says_how_to_decode_the_rest():
    message = str(_error_of("run_instances", "UnauthorizedOperation", DENIED))
    assert message.startswith(
        "not allowed to call RunInstances (UnauthorizedOperation): You are not authorized"
    )
    assert "is not authorized to perform: ec2:RunInstances on resource:" in message
    assert "because no identity-based policy allows the ec2:RunInstances action;" in message
    assert BLOB not in message and "\n" not in message
    assert '`aws sts decode-authorization-message --encoded-message "$(cat ' in message
    path = message.split("$(cat ")[1].split(")")[0]
    assert Path(path).read_text() == BLOB
    assert (os.stat(path).st_mode & 0o777) == 0o600
    os.unlink(path)


def test_a_denial_without_an_encoded_message_keeps_aws_text_only():
    text = (
        "You are not authorized to perform this operation. User: arn:aws:iam::123456789012:user/student is "
        "not authorized to perform: ec2:DescribeInstances because no identity-based policy allows the "
        "ec2:DescribeInstances action"
    )
    message = str(_error_of("describe_instances", "UnauthorizedOperation", text))
    assert message == (
        f"not allowed to call DescribeInstances (UnauthorizedOperation): {text}; grant that action to the "
        "IAM user/role (iam/labctl-policy.json has all labctl needs), or use another AWS_PROFILE"
    )


# --- 6. the Ubuntu 20.04 image ----------------------------------------------------------------------------


def _image(image_id: str, created: str, deprecated: str | None) -> dict:
    image = {
        "ImageId": image_id,
        "OwnerId": ami.CANONICAL_OWNER,
        "Name": f"ubuntu/images/hvm-ssd/ubuntu-focal-20.04-amd64-server-{created[:10].replace('-', '')}",
        "CreationDate": created,
        "State": "available",
    }
    if deprecated:
        image["DeprecationTime"] = deprecated
    return image


def _fallback(images: list[dict]) -> dict:
    ec2 = _offline()
    expected = {"Owners": [ami.CANONICAL_OWNER], "IncludeDeprecated": True, "Filters": ANY}
    with Stubber(ec2) as stub:
        stub.add_response("describe_images", {"Images": images}, expected)
        return ami.find_ami(ec2, None, "20.04")


def test_the_fallback_asks_for_deprecated_images_but_prefers_current_ones():
    current = _image("ami-0current", "2024-01-10T00:00:00.000Z", None)
    newer_deprecated = _image("ami-0newdepr", "2025-06-01T00:00:00.000Z", "2025-07-01T00:00:00.000Z")
    assert _fallback([newer_deprecated, current])["ImageId"] == "ami-0current"


def test_when_every_serial_is_deprecated_the_newest_is_used_and_said_once():
    old = _image("ami-0old", "2024-01-10T00:00:00.000Z", "2024-06-01T00:00:00.000Z")
    newest = _image("ami-0newest", "2025-06-01T00:00:00.000Z", "2025-07-01T00:00:00.000Z")
    image = _fallback([old, newest])
    assert image["ImageId"] == "ami-0newest"
    assert ami.support_note(image, "20.04") == (
        "Ubuntu 20.04 is past standard support (its images are deprecated): it still works for the lab; "
        "--release 22.04|24.04 uses a supported release"
    )


def test_a_future_deprecation_time_is_not_deprecated():
    later = (datetime.datetime.now(datetime.timezone.utc) + datetime.timedelta(days=30)).isoformat()
    assert not ami.is_deprecated({"DeprecationTime": later})
    assert ami.support_note({"DeprecationTime": later}, "20.04") is None


def test_a_current_image_gets_no_note():
    assert ami.support_note(_image("ami-0current", "2024-01-10T00:00:00.000Z", None), "20.04") is None


def test_the_note_is_printed_once_per_provision(ec2, monkeypatch):
    real_find = ami.find_ami

    def deprecated(*args, **kwargs):
        return dict(real_find(*args, **kwargs), DeprecationTime="2025-07-01T00:00:00.000Z")

    monkeypatch.setattr(ami, "find_ami", deprecated)
    err = io.StringIO()
    options = ProvisionOptions(target="aws", ssh_cidr=TEST_CIDR, cloud_only=True)
    provisioning.provision(options, Report(io.StringIO(), err))
    assert err.getvalue().count("Ubuntu 20.04 is past standard support") == 1
    err = io.StringIO()
    provisioning.provision(options, Report(io.StringIO(), err))
    assert "past standard support" not in err.getvalue()  # a re-run checks nothing again


# --- 5. an SSH timeout after a network change -------------------------------------------------------------


def _provisioned(ec2, cidr: str) -> dict:
    options = ProvisionOptions(target="aws", ssh_cidr=cidr, cloud_only=True)
    (instance,) = provisioning.provision(options, Report(io.StringIO(), io.StringIO()))
    return instance


def test_a_changed_public_ip_is_named_after_an_ssh_timeout(ec2, monkeypatch):
    instance = _provisioned(ec2, "198.51.100.7/32")  # "home"
    monkeypatch.setattr(
        "infra.operator_ip.operator_public_ip", lambda timeout=5.0: "198.51.100.99"
    )  # "campus"
    hint = ssh_source.ssh_source_hint(ec2, instance["InstanceId"])
    group = instance["SecurityGroups"][0]["GroupId"]
    assert hint == (
        f"; your public IP is now 198.51.100.99 but security group {group} allows port 22 only from "
        "198.51.100.7/32 (did you change networks?): `fab provision` updates the rule"
    )


def test_the_same_public_ip_adds_nothing(ec2, monkeypatch):
    instance = _provisioned(ec2, "198.51.100.0/24")
    monkeypatch.setattr("infra.operator_ip.operator_public_ip", lambda timeout=5.0: "198.51.100.99")
    assert ssh_source.ssh_source_hint(ec2, instance["InstanceId"]) == ""


def test_the_hint_is_appended_where_the_ssh_timeout_is_reported(ec2, monkeypatch):
    from lab import result
    from lab.errors import HostError
    from labctl import host_tasks

    instance = _provisioned(ec2, "198.51.100.7/32")
    monkeypatch.setattr("infra.operator_ip.operator_public_ip", lambda timeout=5.0: "198.51.100.99")
    timeout = (
        "SSH on 198.51.100.50:22 not ready after 180 s: connection timed out (the security group has no "
        "rule for port 22 from your address, or the instance is not running)"
    )

    def timed_out(*args, **kwargs):
        raise HostError(timeout)

    monkeypatch.setattr(host_tasks, "open_connection", timed_out)
    monkeypatch.setattr("lab.connect_early.take", lambda target, config=None: None)
    target = HostTarget(
        name=instance["InstanceId"], address="198.51.100.50", target="aws", instance_id=instance["InstanceId"]
    )
    report = result.HostReport()
    host_tasks.run_on_one_host(target, lambda host: None, report)
    (message,) = report.errors.values()
    assert message.startswith(timeout + "; your public IP is now 198.51.100.99 but security group")
    assert message.endswith("`fab provision` updates the rule")


def test_no_ip_lookup_after_a_timeout_on_the_sandbox_or_an_emulator(monkeypatch):
    def no_lookup(*args, **kwargs):
        raise AssertionError("looked up")

    monkeypatch.setattr("infra.operator_ip.operator_public_ip", no_lookup)
    sandbox = HostTarget(name="i-1", address="198.51.100.50", target="sandbox", instance_id="i-1")
    assert targets.ssh_timeout_hint(sandbox, "connection timed out") == ""
    LabState(**{"target": "aws", "region": REGION, "lab": "netlab"}).save()
    monkeypatch.setenv("AWS_ENDPOINT_URL", "http://127.0.0.1:9")
    emulated = HostTarget(name="i-1", address="198.51.100.50", target="aws", instance_id="i-1")
    assert targets.ssh_timeout_hint(emulated, "connection timed out") == ""


# --- 8. never reach real AWS by surprise ------------------------------------------------------------------


def test_pyproject_requires_a_botocore_that_honours_aws_endpoint_url():
    text = (PROJECT / "pyproject.toml").read_text()
    assert '"botocore>=1.31.0"' in text and '"boto3>=1.28.0"' in text


def test_an_ignored_aws_endpoint_url_is_refused(monkeypatch):
    monkeypatch.setenv("AWS_ENDPOINT_URL", "http://127.0.0.1:9")
    monkeypatch.setenv("AWS_IGNORE_CONFIGURED_ENDPOINT_URLS", "true")  # as an old botocore would
    with pytest.raises(LabError) as failure:
        targets.connect("aws", REGION)
    message = str(failure.value)
    assert message.startswith("AWS_ENDPOINT_URL=http://127.0.0.1:9 is set but botocore ")
    assert f"sends EC2 calls to https://ec2.{REGION}.amazonaws.com: refusing to reach real AWS" in message
    assert "\n" not in message


def test_an_honoured_aws_endpoint_url_is_used(monkeypatch):
    monkeypatch.setenv("AWS_ENDPOINT_URL", "http://127.0.0.1:9")
    cloud = targets.connect("aws", REGION)
    assert cloud.endpoint_url == "http://127.0.0.1:9" and not cloud.real_aws
    assert cloud.quotas().meta.endpoint_url == "http://127.0.0.1:9"  # built like the EC2 client


SPEC = instances.InstanceSpec("netlab", "ami-1", "t3.micro", "labctl-netlab", "sg-1")


def test_the_client_token_is_stable_short_and_changes_with_the_launch():
    token = instances.client_token(REGION, SPEC, 0, 1, "sg-1")
    assert token == instances.client_token(REGION, SPEC, 0, 1, "sg-1")
    assert len(token) <= 64 and token.isascii()
    others = {
        instances.client_token("us-east-1", SPEC, 0, 1, "sg-1"),
        instances.client_token(REGION, SPEC._replace(lab="other"), 0, 1, "sg-1"),
        instances.client_token(REGION, SPEC, 1, 1, "sg-1"),
        instances.client_token(REGION, SPEC._replace(instance_type="t3.small"), 0, 1, "sg-1"),
        instances.client_token(REGION, SPEC, 0, 1, "sg-2"),
    }
    assert token not in others and len(others) == 5


def _instance(instance_id: str, state: str) -> dict:
    return {"InstanceId": instance_id, "State": {"Name": state, "Code": 0}}


def test_run_instances_gets_the_token_and_a_replay_of_gone_instances_moves_on():
    """EC2 answers a reused token with the first launch: a terminated one means the lab needs a new one."""
    ec2 = _offline()
    first = instances.client_token(REGION, SPEC, 0, 1, "sg-1")
    second = instances.client_token(REGION, SPEC, 0, 1, "sg-1/i-0old")
    with Stubber(ec2) as stub:
        for token, answer in (
            (first, _instance("i-0old", "terminated")),
            (second, _instance("i-0new", "pending")),
        ):
            expected = {
                "ImageId": "ami-1",
                "InstanceType": "t3.micro",
                "KeyName": "labctl-netlab",
                "SecurityGroupIds": ["sg-1"],
                "MinCount": 1,
                "MaxCount": 1,
                "ClientToken": token,
                "InstanceInitiatedShutdownBehavior": "stop",
                "TagSpecifications": ANY,
            }
            stub.add_response("run_instances", {"Instances": [answer]}, expected)
        assert instances._launch(ec2, SPEC, 1) == ["i-0new"]
        stub.assert_no_pending_responses()


def test_a_crash_and_an_immediate_rerun_make_one_instance(ec2, monkeypatch):
    """moto ignores ClientToken, so EC2's answer to a reused token is played here (same token, same one)."""
    seen: dict[str, list[dict]] = {}
    real_run = instances._run

    def idempotent_run(client, spec, how_many, token):
        if token not in seen:
            seen[token] = real_run(client, spec, how_many, token)
        return seen[token]

    monkeypatch.setattr(instances, "_run", idempotent_run)
    options = ProvisionOptions(target="aws", ssh_cidr=TEST_CIDR, cloud_only=True)
    (first,) = provisioning.provision(options, Report(io.StringIO(), io.StringIO()))
    # the re-run right after a crash: DescribeInstances does not list the new instance yet
    monkeypatch.setattr(instances, "find_instances", lambda client, lab, states=None: [])
    LabState(**{"target": "aws", "region": REGION, "lab": "netlab"}).save()
    (again,) = provisioning.provision(options, Report(io.StringIO(), io.StringIO()))
    assert again["InstanceId"] == first["InstanceId"] and len(seen) == 1
    running = ec2.describe_instances(Filters=[{"Name": "instance-state-name", "Values": ["running"]}])
    assert [i["InstanceId"] for r in running["Reservations"] for i in r["Instances"]] == [first["InstanceId"]]


@pytest.fixture
def no_credentials_anywhere(monkeypatch, tmp_path):
    for name in list(os.environ):
        if name.startswith("AWS_") and name not in ("AWS_CONFIG_FILE", "AWS_SHARED_CREDENTIALS_FILE"):
            monkeypatch.delenv(name)
    monkeypatch.setenv("HOME", str(tmp_path / "home"))
    monkeypatch.delenv("LAB_TARGET", raising=False)


def test_guessing_the_target_never_asks_the_metadata_service_or_the_network(
    no_credentials_anywhere, monkeypatch
):
    def refuse(*args, **kwargs):
        raise AssertionError("the target guess asked a remote credential provider")

    monkeypatch.setattr(botocore.credentials.InstanceMetadataProvider, "load", refuse)
    monkeypatch.setattr(botocore.credentials.ContainerProvider, "load", refuse)
    monkeypatch.setattr(socket.socket, "connect", refuse)
    assert targets.choose_target() == "sandbox"


def test_credentials_in_the_credentials_file_guess_aws(no_credentials_anywhere, monkeypatch, tmp_path):
    credentials = tmp_path / "no-aws-credentials"
    credentials.write_text("[default]\naws_access_key_id = AKIDEXAMPLE\naws_secret_access_key = x\n")
    assert targets.choose_target() == "aws"


def test_an_sso_profile_in_the_config_file_guesses_aws(no_credentials_anywhere, tmp_path):
    (tmp_path / "no-aws-config").write_text(
        "[default]\nsso_session = school\nsso_account_id = 123456789012\n"
    )
    assert targets.choose_target() == "aws"


def test_a_profile_in_the_environment_guesses_aws(no_credentials_anywhere, monkeypatch):
    monkeypatch.setenv("AWS_PROFILE", "student")
    assert targets.choose_target() == "aws"


def test_an_empty_config_guesses_the_sandbox(no_credentials_anywhere, tmp_path):
    (tmp_path / "no-aws-config").write_text("[default]\nregion = ap-northeast-2\n")
    assert targets.choose_target() == "sandbox"


def test_fab_ssh_names_the_changed_public_ip_too(ec2, monkeypatch):
    from lab.errors import HostError
    from labctl import ssh_task

    instance = _provisioned(ec2, "198.51.100.7/32")
    monkeypatch.setattr("infra.operator_ip.operator_public_ip", lambda timeout=5.0: "198.51.100.99")

    def timed_out(*args, **kwargs):
        raise HostError("SSH on 198.51.100.50:22 not ready after 60 s: connection timed out (...)")

    monkeypatch.setattr(ssh_task, "open_connection", timed_out)
    target = HostTarget(
        name=instance["InstanceId"], address="198.51.100.50", target="aws", instance_id=instance["InstanceId"]
    )
    with pytest.raises(
        LabError, match=r"connection timed out \(\.\.\.\); your public IP is now 198\.51\.100\.99"
    ):
        ssh_task.ssh([target])
