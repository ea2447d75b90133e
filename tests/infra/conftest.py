"""Fixtures for the cloud layer: moto with Canonical images, fake credentials, no way to reach AWS.

The AMI catalogue is installed at import time, before anything imports moto's EC2 models.
"""

from __future__ import annotations

import atexit
import json
import shutil
import tempfile
from pathlib import Path

import pytest

from sandbox import moto_images

CATALOGUE = Path(tempfile.mkdtemp(prefix="labctl-amis-")) / "amis.json"
atexit.register(shutil.rmtree, CATALOGUE.parent, True)
moto_images.install(CATALOGUE)

from moto.ec2.models import amis as moto_amis  # noqa: E402 - must come after install()

# If another test package imported moto first, its image list was read without our catalogue.
moto_amis.AMIS[:] = json.loads(CATALOGUE.read_text())

REGION = "ap-northeast-2"
TEST_CIDR = "198.51.100.0/24"


def _no_operator_lookup(*args, **kwargs):
    raise AssertionError("the operator's public IP must never be looked up in tests")


@pytest.fixture(autouse=True)
def isolated_aws(monkeypatch, tmp_path):
    """Fake credentials, no profiles, no instance metadata, a private state dir, no IP lookup."""
    for name in (
        "AWS_PROFILE",
        "AWS_DEFAULT_PROFILE",
        "AWS_ENDPOINT_URL",
        "AWS_ENDPOINT_URL_EC2",
        "LAB_TARGET",
    ):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "testing")
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "testing")
    monkeypatch.setenv("AWS_SESSION_TOKEN", "testing")
    monkeypatch.setenv("AWS_DEFAULT_REGION", REGION)
    monkeypatch.setenv("AWS_CONFIG_FILE", str(tmp_path / "no-aws-config"))
    monkeypatch.setenv("AWS_SHARED_CREDENTIALS_FILE", str(tmp_path / "no-aws-credentials"))
    monkeypatch.setenv("AWS_EC2_METADATA_DISABLED", "true")
    monkeypatch.setenv("LAB_STATE_DIR", str(tmp_path / "state"))
    monkeypatch.setattr("infra.operator_ip.operator_public_ip", _no_operator_lookup)


@pytest.fixture
def aws():
    """An in-process moto EC2/SSM for the test."""
    from moto import mock_aws

    with mock_aws():
        yield


@pytest.fixture
def ec2(aws):
    import boto3

    return boto3.client("ec2", region_name=REGION)
