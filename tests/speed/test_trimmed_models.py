"""labctl's EC2/SSM clients parse a cut model (only the operations labctl calls); the rest still works."""

from __future__ import annotations

import json
import re
from pathlib import Path

import botocore.model
import botocore.session
import pytest
from botocore import xform_name
from moto import mock_aws

from infra import models, session

PROJECT = Path(__file__).resolve().parents[2]
REGION = "ap-northeast-2"
PACKAGES = ["infra", "lab", "labctl"]  # sandbox/ makes its own boto3 clients


def whole_model(service: str):
    return botocore.session.Session().get_service_model(service)


def product_words() -> set[str]:
    files = [PROJECT / "fabfile.py"] + [p for d in PACKAGES for p in (PROJECT / d).rglob("*.py")]
    return {word for path in files for word in re.findall(r"[A-Za-z_][A-Za-z0-9_]*", path.read_text())}


@pytest.mark.parametrize("service", sorted(models.OPERATIONS))
def test_every_operation_named_in_labctls_code_is_in_the_cut_model(service):
    """A call added anywhere in labctl (method, paginator or waiter name) must be listed, or it gets slow."""
    by_python_name = {xform_name(name): name for name in whole_model(service).operation_names}
    named = {by_python_name[word] for word in product_words() if word in by_python_name}
    assert named <= models.OPERATIONS[service], sorted(named - models.OPERATIONS[service])


def test_cut_model_has_only_the_listed_operations_and_the_shapes_they_reach(tmp_path, monkeypatch):
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path))
    root = models.trimmed_models_dir(session.botocore_loader())
    assert root is not None and root.is_relative_to(tmp_path / "labctl" / "botocore-models")
    (cut_file,) = (root / "ec2").glob("*/service-2.json")
    cut = botocore.model.ServiceModel(json.loads(cut_file.read_text()), "ec2")
    whole = whole_model("ec2")
    assert set(cut.operation_names) == models.OPERATIONS["ec2"]
    run = cut.operation_model("RunInstances").input_shape
    assert run.members.keys() == whole.operation_model("RunInstances").input_shape.members.keys()
    assert len(cut.shape_names) < len(whole.shape_names) / 3


def test_the_cache_directory_changes_with_the_operation_list(tmp_path, monkeypatch):
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path))
    first = models.trimmed_models_dir(session.botocore_loader())
    monkeypatch.setitem(models.OPERATIONS, "ssm", frozenset({"GetParameter", "GetParameters"}))
    second = models.trimmed_models_dir(session.botocore_loader())
    assert first != second and first.parent == second.parent


def test_an_unwritable_cache_means_the_whole_model_not_a_failure(tmp_path, monkeypatch):
    blocker = tmp_path / "not-a-dir"
    blocker.write_text("")
    monkeypatch.setenv("XDG_CACHE_HOME", str(blocker))
    assert models.trimmed_models_dir(session.botocore_loader()) is None


def test_an_operation_not_listed_still_works_on_the_whole_model(monkeypatch):
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "testing")
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "testing")
    with mock_aws():
        ec2 = session.client(session.aws_session(REGION), "ec2")
        # DescribeSubnets became a listed operation (infra.preflight): another unlisted one stands in
        assert "DescribeAvailabilityZones" not in ec2.meta.service_model.operation_names
        vpc_id = ec2.describe_vpcs()["Vpcs"][0]["VpcId"]  # a listed operation
        zones = ec2.describe_availability_zones()["AvailabilityZones"]
        assert zones and {z["RegionName"] for z in zones} == {REGION} and vpc_id
        with pytest.raises(AttributeError):
            ec2.no_such_operation()


def test_the_region_check_knows_the_regions_boto3_knows():
    """`infra.regions` reads the endpoint data through the shared loader instead of a boto3 Session."""
    import boto3

    from infra import regions

    aws = boto3.session.Session()
    expected = {r for p in regions.PARTITIONS for r in aws.get_available_regions("ec2", partition_name=p)}
    assert regions.known_regions() == expected and REGION in expected
