"""Expected failures become one clear line (LabError); botocore errors are mapped in one place."""

from __future__ import annotations

import io

import pytest
from botocore.exceptions import ClientError, EndpointConnectionError, NoCredentialsError
from botocore.stub import Stubber

from infra import errors, regions
from infra.cidr import resolve_source_cidr, validate_cidr
from labctl import targets
from labctl.errors import LabError
from labctl.labref import validate_lab_name
from labctl.options import ProvisionOptions
from labctl.output import Report
from labctl.single import provisioning
from labctl.status import status_data

from .conftest import REGION, TEST_CIDR


def _client_error(code: str, operation: str = "RunInstances") -> ClientError:
    return ClientError({"Error": {"Code": code, "Message": "multi\nline   message"}}, operation)


@pytest.mark.parametrize(
    ("exc", "expected"),
    [
        (_client_error("UnauthorizedOperation"), "not allowed to call RunInstances (UnauthorizedOperation)"),
        (_client_error("RequestLimitExceeded"), "AWS kept throttling RunInstances even after retries"),
        (_client_error("Throttling", "DescribeImages"), "AWS kept throttling DescribeImages"),
        (_client_error("AuthFailure"), "AWS rejected the credentials (AuthFailure)"),
        (
            _client_error("InvalidParameterValue"),
            "RunInstances failed: InvalidParameterValue: multi line message",
        ),
        (NoCredentialsError(), "no AWS credentials found"),
        (EndpointConnectionError(endpoint_url="http://127.0.0.1:9"), "cannot reach the EC2 API"),
    ],
)
def test_translate_gives_one_line_saying_what_to_do(exc, expected):
    message = str(errors.translate(exc))
    assert message.startswith(expected)
    assert "\n" not in message


def test_aws_errors_context_reraises_as_laberror():
    with pytest.raises(LabError, match="not allowed"), errors.aws_errors():
        raise _client_error("UnauthorizedOperation")


def test_unknown_region_is_refused_before_any_call():
    with pytest.raises(LabError, match="unknown region 'ap-northeast-9'.*--region ap-northeast-2"):
        regions.validate_region("ap-northeast-9")
    with pytest.raises(LabError, match="a region looks like ap-northeast-2"):
        regions.validate_region("seoul")
    assert regions.validate_region(REGION) == REGION


def test_unknown_region_through_provision(aws):
    with pytest.raises(LabError, match="unknown region"):
        provisioning.provision(
            ProvisionOptions(target="aws", region="moon-1", cloud_only=True),
            Report(io.StringIO()),
        )


def test_no_credentials_is_one_clear_line(monkeypatch):
    for name in ("AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY", "AWS_SESSION_TOKEN"):
        monkeypatch.delenv(name)
    with pytest.raises(LabError, match="^no AWS credentials found: set AWS_PROFILE"):
        targets.connect("aws", REGION)


def test_unknown_profile_is_one_clear_line(monkeypatch):
    monkeypatch.setenv("AWS_PROFILE", "no-such-profile")
    with pytest.raises(LabError, match="no-such-profile.*AWS_PROFILE"):
        targets.connect("aws", REGION)


def test_without_credentials_the_default_target_is_the_sandbox(monkeypatch):
    for name in ("AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY", "AWS_SESSION_TOKEN"):
        monkeypatch.delenv(name)
    assert targets.choose_target() == "sandbox"


def test_target_precedence_flag_then_env_then_recorded(monkeypatch):
    assert targets.choose_target(None, "sandbox") == "sandbox"
    assert targets.choose_target() == "aws"  # fake credentials are set
    monkeypatch.setenv("LAB_TARGET", "sandbox")
    assert targets.choose_target(None, "aws") == "sandbox"
    assert targets.choose_target("aws", "sandbox") == "aws"
    with pytest.raises(LabError, match="unknown target 'gcp'"):
        targets.choose_target("gcp")


@pytest.mark.parametrize("bad", ["10.0.0.0/33", "banana", "10.0.0.256/32", ""])
def test_invalid_cidr_is_refused(bad):
    with pytest.raises(LabError, match="invalid --ssh-cidr"):
        validate_cidr(bad)


def test_ipv6_cidr_is_refused():
    with pytest.raises(LabError, match="IPv6"):
        validate_cidr("2001:db8::/32")


def test_cidr_host_bits_are_normalized():
    assert validate_cidr("198.51.100.7/24") == "198.51.100.0/24"


def test_open_world_warns_and_excludes_ssh_cidr():
    source = resolve_source_cidr(None, True, True, lambda: pytest.fail("no lookup with --open-world"))
    assert source.cidr == "0.0.0.0/0" and "whole internet" in source.warning
    with pytest.raises(LabError, match="contradict"):
        resolve_source_cidr(TEST_CIDR, True, True, lambda: "x")


def test_operator_ip_is_looked_up_only_for_real_aws():
    asked = []
    emulator = resolve_source_cidr(
        None, False, real_aws=False, lookup_ip=lambda: asked.append(1) or "198.51.100.9"
    )
    assert emulator.cidr == "198.51.100.1/32" and asked == []
    real = resolve_source_cidr(None, False, real_aws=True, lookup_ip=lambda: "198.51.100.9")
    assert real.cidr == "198.51.100.9/32"


def test_provision_on_aws_uses_the_operator_ip_by_default(aws, monkeypatch):
    monkeypatch.setattr("infra.operator_ip.operator_public_ip", lambda: "198.51.100.77")
    provisioning.provision(ProvisionOptions(target="aws", cloud_only=True), Report(io.StringIO()))
    rules = status_data()["security_group"]["rules"]
    assert {rule["source"] for rule in rules} == {"198.51.100.77/32"}


def test_operator_ip_failure_asks_for_ssh_cidr(aws, monkeypatch):
    def unreachable():
        raise LabError(
            "could not find your public IP address for the security group: pass --ssh-cidr A.B.C.D/32"
        )

    monkeypatch.setattr("infra.operator_ip.operator_public_ip", unreachable)
    with pytest.raises(LabError, match="pass --ssh-cidr"):
        provisioning.provision(ProvisionOptions(target="aws", cloud_only=True), Report(io.StringIO()))
    import boto3

    assert not boto3.client("ec2", region_name=REGION).describe_key_pairs()["KeyPairs"], "nothing created"


def _stubbed_cloud(monkeypatch, operation: str, code: str) -> Stubber:
    """A Cloud whose EC2 client answers `operation` with `code` (what moto cannot produce)."""
    import boto3

    ec2 = boto3.client("ec2", region_name=REGION)
    stubber = Stubber(ec2)
    stubber.add_client_error(operation, code, "injected")
    cloud = targets.Cloud("aws", REGION, None, ec2, None)
    monkeypatch.setattr(targets, "connect", lambda *args, **kwargs: cloud)
    return stubber


@pytest.mark.parametrize(
    ("code", "expected"),
    [
        ("UnauthorizedOperation", "not allowed to call DescribeImages"),
        ("RequestLimitExceeded", "AWS kept throttling DescribeImages even after retries"),
    ],
)
def test_provision_reports_stubbed_api_errors_in_one_line(monkeypatch, code, expected):
    stubber = _stubbed_cloud(monkeypatch, "describe_images", code)
    options = ProvisionOptions(target="aws", ssh_cidr=TEST_CIDR, cloud_only=True)
    with stubber, pytest.raises(LabError) as failure:
        provisioning.provision(options, Report(io.StringIO()))
    assert str(failure.value).startswith(expected)
    assert "\n" not in str(failure.value)


def test_invalid_lab_name_is_refused():
    with pytest.raises(LabError, match="invalid lab --name"):
        validate_lab_name("my lab!")


def test_sandbox_session_ignores_a_missing_profile(monkeypatch):
    from infra import session

    monkeypatch.setenv("AWS_PROFILE", "no-such-profile")
    sandbox = session.aws_session(REGION, sandbox=True)
    assert sandbox.get_credentials().access_key == "sandbox"
    assert session.client(sandbox, "ec2", "http://127.0.0.1:9").meta.region_name == REGION
