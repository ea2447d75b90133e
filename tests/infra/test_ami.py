"""AMI lookup: the newest Canonical image per release, never a look-alike, --ami override, SSM first."""

from __future__ import annotations

import pytest

from infra import ami
from labctl.errors import LabError
from sandbox import moto_images


def _newest_canonical_amd64(release: str) -> dict:
    codename = {"20.04": "focal", "22.04": "jammy", "24.04": "noble"}[release]
    images = [
        image
        for image in moto_images.canonical_images()
        if f"-{codename}-" in image["name"] and image["architecture"] == "x86_64"
    ]
    return max(images, key=lambda image: image["creation_date"])


@pytest.mark.parametrize("release", ["20.04", "22.04", "24.04"])
def test_newest_canonical_amd64_image_of_each_release(ec2, release):
    image = ami.find_ami(ec2, None, release)
    expected = _newest_canonical_amd64(release)
    assert image["ImageId"] == expected["ami_id"]
    assert image["OwnerId"] == ami.CANONICAL_OWNER
    assert image["Architecture"] == "x86_64"


def test_newer_lookalike_from_another_owner_is_never_chosen(ec2):
    lookalike = moto_images.lookalike_image()
    visible = ec2.describe_images(ImageIds=[lookalike["ami_id"]])["Images"]
    assert visible, "the look-alike must exist for this test to mean anything"
    assert ami.find_ami(ec2, None, "20.04")["ImageId"] != lookalike["ami_id"]


def test_ami_override_is_used_as_given(ec2):
    jammy = _newest_canonical_amd64("22.04")["ami_id"]
    assert ami.find_ami(ec2, None, "20.04", ami_id=jammy)["ImageId"] == jammy


@pytest.mark.parametrize("bad_id", ["ami-0000000000000dead", "not-an-ami"])
def test_unknown_ami_override_is_a_clear_error(ec2, bad_id):
    with pytest.raises(LabError, match=f"AMI {bad_id} not found"):
        ami.find_ami(ec2, None, "20.04", ami_id=bad_id)


def test_unsupported_release_is_a_clear_error(ec2):
    with pytest.raises(LabError, match="unsupported --release '18.04'"):
        ami.find_ami(ec2, None, "18.04")


def test_no_canonical_image_in_region_is_a_clear_error(aws):
    import boto3

    empty_region = boto3.client("ec2", region_name="eu-west-1")
    for image in empty_region.describe_images(Owners=[ami.CANONICAL_OWNER])["Images"]:
        empty_region.deregister_image(ImageId=image["ImageId"])
    with pytest.raises(LabError, match="no Canonical Ubuntu 20.04 amd64 image found"):
        ami.find_ami(empty_region, None, "20.04")


class FakeSsm:
    """Canonical's public parameters as a plain object (moto reserves the /aws/ prefix)."""

    def __init__(self, values: dict[str, str]) -> None:
        self.values = values
        self.asked: list[str] = []

    def get_parameter(self, Name: str) -> dict:  # noqa: N803 - boto3's spelling
        from botocore.exceptions import ClientError

        self.asked.append(Name)
        if Name not in self.values:
            raise ClientError({"Error": {"Code": "ParameterNotFound", "Message": Name}}, "GetParameter")
        return {"Parameter": {"Name": Name, "Value": self.values[Name]}}


def test_ssm_parameter_is_asked_first_and_wins(ec2):
    older_focal = next(
        i for i in moto_images.canonical_images() if i["name"].endswith("focal-20.04-amd64-server-20240101")
    )
    ssm = FakeSsm({ami.ssm_parameter_names("20.04")[1]: older_focal["ami_id"]})
    assert ami.find_ami(ec2, ssm, "20.04")["ImageId"] == older_focal["ami_id"]
    assert ssm.asked[0].startswith("/aws/service/canonical/ubuntu/server/20.04/")


def test_ssm_pointing_at_a_foreign_image_falls_back_to_the_search(ec2):
    ssm = FakeSsm(
        {name: moto_images.lookalike_image()["ami_id"] for name in ami.ssm_parameter_names("20.04")}
    )
    assert ami.find_ami(ec2, ssm, "20.04")["ImageId"] == _newest_canonical_amd64("20.04")["ami_id"]


def test_missing_ssm_parameter_falls_back_to_the_search(ec2):
    ssm = FakeSsm({})
    assert ami.find_ami(ec2, ssm, "24.04")["ImageId"] == _newest_canonical_amd64("24.04")["ami_id"]
    assert len(ssm.asked) == 2
