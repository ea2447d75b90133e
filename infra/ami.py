"""Find the newest Canonical Ubuntu Server image for a release; never an image from another owner."""

from __future__ import annotations

import re
from datetime import datetime, timezone

from infra.errors import CloudError

from .errors import error_code

CANONICAL_OWNER = "099720109477"
RELEASES = {
    "20.04": ("focal", ("hvm-ssd",)),
    "22.04": ("jammy", ("hvm-ssd", "hvm-ssd-gp3")),
    "24.04": ("noble", ("hvm-ssd-gp3", "hvm-ssd")),
}
DEFAULT_RELEASE = "20.04"
PAST_STANDARD_SUPPORT = frozenset({"20.04"})  # standard support ended in May 2025
_AMI_ID = re.compile(r"^ami-[0-9a-f]{8,17}$")


def validate_ami_id(ami_id: str) -> str:
    """`ami_id` if it is shaped like an AMI id, else a CloudError; no API call."""
    if not _AMI_ID.match(ami_id or ""):
        raise CloudError(
            f"invalid --ami {ami_id!r}: an AMI id looks like ami-0123456789abcdef0 "
            "(or drop --ami to use Canonical's Ubuntu image for --release)"
        )
    return ami_id


def is_windows(image: dict) -> bool:
    """True for a Windows image (`Platform: windows`, or Windows in its PlatformDetails)."""
    return image.get("Platform") == "windows" or "windows" in str(image.get("PlatformDetails", "")).lower()


def validate_release(release: str) -> str:
    if release not in RELEASES:
        raise CloudError(f"unsupported --release {release!r}: choose one of {', '.join(RELEASES)}")
    return release


def ssm_parameter_names(release: str) -> list[str]:
    """Canonical's public SSM parameters that point at the current image of `release`."""
    return [
        f"/aws/service/canonical/ubuntu/server/{release}/stable/current/amd64/hvm/{volume}/ami-id"
        for volume in ("ebs-gp3", "ebs-gp2")
    ]


def image_name_patterns(release: str) -> list[str]:
    codename, disks = RELEASES[release]
    return [f"ubuntu/images/{disk}/ubuntu-{codename}-{release}-amd64-server-*" for disk in disks]


def _canonical_image(ec2, image_id: str) -> dict | None:
    """The image `image_id` if it exists and Canonical owns it."""
    image = _existing_image(ec2, image_id)
    return image if image and image.get("OwnerId") == CANONICAL_OWNER else None


def _existing_image(ec2, image_id: str) -> dict | None:
    """The image `image_id` from any owner, or None when it does not exist."""
    from botocore.exceptions import ClientError

    if not image_id.startswith("ami-"):
        return None
    try:
        images = ec2.describe_images(ImageIds=[image_id])["Images"]
    except ClientError as exc:
        if error_code(exc).startswith("InvalidAMIID"):
            return None
        raise
    return images[0] if images else None


def ami_from_ssm(ssm, ec2, release: str) -> dict | None:
    """The image named by Canonical's SSM parameter, or None when no parameter is published here."""
    from botocore.exceptions import ClientError

    for name in ssm_parameter_names(release):
        try:
            image_id = ssm.get_parameter(Name=name)["Parameter"]["Value"]
        except ClientError as exc:
            if error_code(exc) in (
                "ParameterNotFound",
                "AccessDeniedException",
                "UnrecognizedClientException",
            ):
                continue
            raise
        image = _canonical_image(ec2, image_id)
        if image:
            return image
    return None


def is_deprecated(image: dict, now: datetime | None = None) -> bool:
    """True once the image's DeprecationTime has passed (Canonical deprecates old serials)."""
    stamp = image.get("DeprecationTime")
    if not stamp:
        return False
    try:
        when = datetime.fromisoformat(str(stamp).replace("Z", "+00:00"))
    except ValueError:
        return False
    if when.tzinfo is None:
        when = when.replace(tzinfo=timezone.utc)
    return when <= (now or datetime.now(timezone.utc))


def ami_from_images(ec2, release: str) -> dict | None:
    """The newest available amd64 HVM image Canonical published under the release's name pattern.

    Deprecated images are hidden from DescribeImages unless asked for; they are included (an old release's
    every serial may be deprecated) but a current one is preferred.
    """
    images = ec2.describe_images(
        Owners=[CANONICAL_OWNER],
        IncludeDeprecated=True,
        Filters=[
            {"Name": "name", "Values": image_name_patterns(release)},
            {"Name": "architecture", "Values": ["x86_64"]},
            {"Name": "virtualization-type", "Values": ["hvm"]},
            {"Name": "state", "Values": ["available"]},
        ],
    )["Images"]
    canonical = [image for image in images if image.get("OwnerId") == CANONICAL_OWNER]
    return max(
        canonical, key=lambda image: (not is_deprecated(image), image.get("CreationDate", "")), default=None
    )


def support_note(image: dict, release: str) -> str | None:
    """One line when the image found is a deprecated one (an old release past standard support); else None."""
    if not is_deprecated(image):
        return None
    others = "|".join(r for r in RELEASES if r not in PAST_STANDARD_SUPPORT)
    past = (
        "is past standard support" if release in PAST_STANDARD_SUPPORT else "has only deprecated images here"
    )
    return (
        f"Ubuntu {release} {past} (its images are deprecated): it still works for the lab; "
        f"--release {others} uses a supported release"
    )


def find_ami(ec2, ssm, release: str = DEFAULT_RELEASE, ami_id: str | None = None) -> dict:
    """The image to launch: `ami_id` if given (must exist), else the newest Canonical one for `release`."""
    if ami_id:
        image = _existing_image(ec2, ami_id)
        if image is None:
            raise CloudError(
                f"AMI {ami_id} not found in this region: check --ami or drop it to search by --release"
            )
        if is_windows(image):
            raise CloudError(
                f"--ami {ami_id} is a Windows image: the lab needs Ubuntu; "
                "drop --ami (Canonical's Ubuntu for --release) or pass an Ubuntu AMI"
            )
        return image
    validate_release(release)
    image = (ami_from_ssm(ssm, ec2, release) if ssm is not None else None) or ami_from_images(ec2, release)
    if image is None:
        raise CloudError(
            f"no Canonical Ubuntu {release} amd64 image found in this region (deprecated ones included): "
            "try --release 22.04 or 24.04, or pass --ami"
        )
    return image
