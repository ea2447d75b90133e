"""Canonical Ubuntu images for moto (which ships none), and moto's custom-AMI date quirk fixed.

moto reads `MOTO_AMIS_PATH` when `moto.ec2.models.amis` is first imported, so `install()` must run before
that import (before `mock_aws` or `ThreadedMotoServer` touch EC2).
"""

from __future__ import annotations

import json
import os
from datetime import datetime
from pathlib import Path

CANONICAL_OWNER = "099720109477"
LOOKALIKE_OWNER = "123456789012"

_RELEASES = {
    "20.04": ("focal", "hvm-ssd"),
    "22.04": ("jammy", "hvm-ssd"),
    "24.04": ("noble", "hvm-ssd-gp3"),
}
_BUILDS = ("20240101", "20240601")


def _image(ami_id: str, name: str, owner: str, created: str, description: str) -> dict:
    return {
        "ami_id": ami_id,
        "name": name,
        "description": description,
        "owner_id": owner,
        "public": True,
        "virtualization_type": "hvm",
        "architecture": "x86_64",
        "state": "available",
        "platform": None,
        "root_device_type": "ebs",
        "root_device_name": "/dev/sda1",
        "sriov": "simple",
        "hypervisor": "xen",
        "creation_date": created,
    }


def canonical_images() -> list[dict]:
    """Two builds of each supported release, as Canonical names them, plus an arm64 twin of the newest."""
    images = []
    for index, (release, (codename, disk)) in enumerate(_RELEASES.items()):
        for build_index, build in enumerate(_BUILDS):
            name = f"ubuntu/images/{disk}/ubuntu-{codename}-{release}-amd64-server-{build}"
            ami_id = f"ami-0{index}{build_index}c0ffee0000000{index}{build_index}"
            created = f"{build[:4]}-{build[4:6]}-{build[6:]}T00:00:00.000Z"
            images.append(_image(ami_id, name, CANONICAL_OWNER, created, f"Canonical, Ubuntu, {release} LTS"))
        arm = _image(
            f"ami-0{index}9a0a0a0000000{index}9",
            f"ubuntu/images/{disk}/ubuntu-{codename}-{release}-arm64-server-{_BUILDS[-1]}",
            CANONICAL_OWNER,
            "2024-06-02T00:00:00.000Z",
            f"Canonical, Ubuntu, {release} LTS, arm64",
        )
        arm["architecture"] = "arm64"
        images.append(arm)
    return images


def lookalike_image() -> dict:
    """A newer focal image from someone who is not Canonical: it must never be chosen."""
    return _image(
        "ami-0badbadbadbad0001",
        "ubuntu/images/hvm-ssd/ubuntu-focal-20.04-amd64-server-20991231",
        LOOKALIKE_OWNER,
        "2099-12-31T00:00:00.000Z",
        "Not Canonical: a look-alike",
    )


def write_amis_file(path: Path, with_lookalike: bool = True) -> Path:
    images = canonical_images() + ([lookalike_image()] if with_lookalike else [])
    path.write_text(json.dumps(images, indent=1))
    os.chmod(path, 0o600)  # in the 0700 state dir like the rest; the same user's moto reads it
    return path


def _patch_parse_timestamp() -> None:
    """moto re-parses already parsed creation dates when a second region loads; pass datetimes through."""
    from moto.ec2.models import amis

    original = amis.parse_timestamp
    if getattr(original, "_labctl_patched", False):
        return

    def parse_timestamp(value):
        return value if isinstance(value, datetime) else original(value)

    parse_timestamp._labctl_patched = True
    amis.parse_timestamp = parse_timestamp


def install(path: Path, with_lookalike: bool = True) -> None:
    """Point moto at our image catalogue and patch its date quirk (call before moto loads EC2)."""
    write_amis_file(path, with_lookalike)
    os.environ["MOTO_AMIS_PATH"] = str(path)
    _patch_parse_timestamp()
