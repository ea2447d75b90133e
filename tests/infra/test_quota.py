"""Issue 14: class mode and the running On-Demand Standard vCPU quota (L-1216C47A), checked before a class
creates anything; the new accounts' error codes each get their own one-line hint."""

from __future__ import annotations

import io

import pytest
from botocore.stub import Stubber

from infra import quota, session
from infra.errors import translate
from infra.tags import CLASS_KEY, tagged
from labctl import targets
from labctl.classmode import classroom
from labctl.classmode.roster import Student
from labctl.classmode.shared import ClassOptions
from labctl.errors import LabError
from labctl.options import ProvisionOptions

from .conftest import REGION, TEST_CIDR

CLASS = "netlab"
OFFLINE = "http://127.0.0.1:9"  # Stubber clients: a loopback endpoint, never sent anything


def _quotas_client():
    return session.client(session.aws_session(REGION), "service-quotas", OFFLINE)


def stubbed_quota(value: float | None, error: tuple[str, str] | None = None):
    """A Service Quotas client answering GetServiceQuota for ec2/L-1216C47A once (Stubber, no network)."""
    client = _quotas_client()
    stub = Stubber(client)
    expected = {"ServiceCode": "ec2", "QuotaCode": "L-1216C47A"}
    if error:
        stub.add_client_error("get_service_quota", error[0], error[1], 400, expected_params=expected)
    else:
        response = {
            "Quota": {
                "ServiceCode": "ec2",
                "QuotaCode": "L-1216C47A",
                "QuotaName": "Running On-Demand Standard (A, C, D, H, I, M, R, T, Z) instances",
                "Value": value,
                "Unit": "None",
                "Adjustable": True,
                "GlobalQuota": False,
            }
        }
        stub.add_response("get_service_quota", response, expected)
    stub.activate()
    return client


def _run(ec2, instance_type: str, count: int, tags: dict[str, str] | None = None) -> None:
    image = ec2.describe_images(Owners=["099720109477"])["Images"][0]["ImageId"]
    spec = [{"ResourceType": "instance", "Tags": [{"Key": k, "Value": v} for k, v in (tags or {}).items()]}]
    ec2.run_instances(
        ImageId=image,
        InstanceType=instance_type,
        MinCount=count,
        MaxCount=count,
        **({"TagSpecifications": spec} if tags else {}),
    )


def test_standard_families():
    assert [quota.is_standard(t) for t in ("t3.micro", "m7i-flex.large", "c5.xlarge", "z1d.large")] == [
        True
    ] * 4
    assert [quota.is_standard(t) for t in ("g4dn.xlarge", "inf1.xlarge", "p3.2xlarge", "x2idn.16xlarge")] == [
        False
    ] * 4


def test_running_vcpus_count_standard_running_instances_only(ec2):
    _run(ec2, "t3.micro", 2)  # 2 x 2 vCPUs
    _run(ec2, "t2.micro", 1)  # 1 vCPU
    _run(ec2, "g4dn.xlarge", 1)  # not a standard family
    _run(ec2, "t3.micro", 1, {CLASS_KEY: CLASS})  # the class's own: part of N
    stopped = ec2.describe_instances(Filters=[{"Name": "instance-type", "Values": ["t2.micro"]}])
    assert quota.running_standard_vcpus(ec2, tagged(CLASS_KEY, CLASS)) == 5
    ec2.stop_instances(InstanceIds=[stopped["Reservations"][0]["Instances"][0]["InstanceId"]])
    assert quota.running_standard_vcpus(ec2, tagged(CLASS_KEY, CLASS)) == 4


def test_a_class_that_does_not_fit_is_refused_saying_how_many_fit(ec2):
    _run(ec2, "t3.micro", 1)  # 2 vCPUs in use
    with pytest.raises(LabError) as failure:
        quota.check_vcpu_room(ec2, stubbed_quota(8.0), REGION, "t3.micro", 5, tagged(CLASS_KEY, CLASS))
    assert str(failure.value) == (
        "5 x t3.micro need 10 vCPUs but the account's running On-Demand standard vCPU quota in "
        f"{REGION} is 8 with 2 in use: only 3 fit; ask for more in Service Quotas (ec2 L-1216C47A), "
        "stop other instances, or run fewer students"
    )


def test_a_class_that_fits_passes(ec2):
    assert quota.check_vcpu_room(ec2, stubbed_quota(32.0), REGION, "t3.micro", 16, lambda i: False) is None


@pytest.mark.parametrize(
    "error",
    [
        (
            "AccessDeniedException",
            "User: arn:aws:iam::123456789012:user/s is not authorized to perform: "
            "servicequotas:GetServiceQuota",
        ),
        ("NoSuchResourceException", "The request failed because the specified service does not exist."),
    ],
)
def test_an_unreadable_quota_is_a_one_line_warning(ec2, error):
    warning = quota.check_vcpu_room(ec2, stubbed_quota(None, error), REGION, "t3.micro", 3, lambda i: False)
    assert warning == (
        f"could not read the running On-Demand vCPU quota ({error[0]} from servicequotas:GetServiceQuota): "
        "continuing without the check"
    )


def test_moto_has_no_such_quota_and_that_is_a_warning(ec2):
    """An emulator without the quota (moto): warned, then the class goes on."""
    cloud = targets.connect("aws", REGION)
    warning = quota.check_vcpu_room(ec2, cloud.quotas(), REGION, "t3.micro", 3, lambda i: False)
    assert warning.startswith("could not read the running On-Demand vCPU quota (NoSuchResourceException")


def _class(students: int):
    options = ProvisionOptions(target="aws", ssh_cidr=TEST_CIDR, cloud_only=True, name=CLASS)
    out = io.StringIO()
    roster = tuple(Student(f"s{i:02d}") for i in range(1, students + 1))
    classroom.provision_class(options, ClassOptions(roster), out=out, tty=False)
    return out.getvalue()


def test_class_mode_refuses_before_creating_anything(ec2, monkeypatch):
    monkeypatch.setattr(targets.Cloud, "quotas", lambda self: stubbed_quota(4.0))
    with pytest.raises(LabError, match=r"^3 x t3\.micro need 6 vCPUs .* is 4 with 0 in use: only 2 fit"):
        _class(3)
    assert ec2.describe_key_pairs()["KeyPairs"] == []
    assert {g["GroupName"] for g in ec2.describe_security_groups()["SecurityGroups"]} == {"default"}
    assert ec2.describe_instances()["Reservations"] == []


def test_class_mode_goes_on_with_a_warning_when_the_quota_cannot_be_read(ec2):
    out = _class(2)
    assert "warning: could not read the running On-Demand vCPU quota" in out
    running = ec2.describe_instances(Filters=[{"Name": "instance-state-name", "Values": ["running"]}])
    assert sum(len(r["Instances"]) for r in running["Reservations"]) == 2


# --- the new accounts' error codes, with EC2's real messages ---------------------------------------------

REAL_ERRORS = {
    "VcpuLimitExceeded": (
        "You have requested more vCPU capacity than your current vCPU limit of 1 allows for the instance "
        "bucket that the specified instance type belongs to. Please visit "
        "http://aws.amazon.com/contact-us/ec2-request to request an adjustment to this limit."
    ),
    "InstanceLimitExceeded": (
        "You have requested more instances (2) than your current instance limit of 1 allows for the "
        "specified instance type. Please visit http://aws.amazon.com/contact-us/ec2-request to request an "
        "adjustment to this limit."
    ),
    "PendingVerification": (
        "Your request for accessing resources in this region is being validated, and you will not be able "
        "to launch additional resources in this region until the validation is complete. We will notify "
        "you by email once your request has been validated. While normally resolved within minutes, please "
        "allow up to 4 hours for this process to complete. If the issue still persists, please let us know "
        "by writing to aws-verification@amazon.com for further assistance."
    ),
    "OptInRequired": (
        "You are not subscribed to this service. Please go to http://aws.amazon.com to subscribe."
    ),
    "RequestExpired": "Request has expired.",
}
HINTS = {
    "VcpuLimitExceeded": "the account's running On-Demand vCPU quota in this region is used up (You have "
    "requested more vCPU capacity than your current vCPU limit of 1 allows",
    "InstanceLimitExceeded": "the account's instance limit in this region is reached",
    "PendingVerification": "AWS is still verifying this new account for this region (PendingVerification)",
    "OptInRequired": "the account is not opted in to this region or service, or its sign-up is not complete",
    "RequestExpired": "AWS refused the request as expired (RequestExpired): set this machine's clock right",
}


@pytest.mark.parametrize("code", sorted(REAL_ERRORS))
def test_each_new_account_error_has_its_own_one_line_hint(code):
    ec2 = session.client(session.aws_session(REGION), "ec2", OFFLINE)
    with Stubber(ec2) as stub:
        stub.add_client_error("run_instances", code, REAL_ERRORS[code], 400)
        with pytest.raises(Exception) as raised:
            ec2.run_instances(ImageId="ami-1", InstanceType="t3.micro", MinCount=1, MaxCount=1)
    message = str(translate(raised.value))
    assert message.startswith(HINTS[code])
    assert "\n" not in message
    others = [hint for other, hint in HINTS.items() if other != code]
    assert not any(message.startswith(hint) for hint in others)
