"""Interrupted runs in detail: a failed look-up still gives one line; a key pair whose key was never saved."""

from __future__ import annotations

import io

import boto3
import pytest
from botocore.stub import Stubber

from infra.tags import resource_name
from labctl import interrupts
from labctl.errors import LabError, LabInterrupted
from labctl.options import ProvisionOptions
from labctl.output import Report
from labctl.single import provisioning
from labctl.state import key_dir
from labctl.teardown import teardown
from tests.support.faults import interrupting

from .conftest import REGION, TEST_CIDR

KEY = resource_name("netlab")
OPTIONS = ProvisionOptions(target="aws", ssh_cidr=TEST_CIDR, cloud_only=True)


def test_when_listing_what_exists_fails_the_message_is_still_one_line_and_points_to_status():
    ec2 = boto3.client("ec2", region_name=REGION)
    with Stubber(ec2) as stub:
        stub.add_client_error("describe_instances", "UnauthorizedOperation", "not allowed")
        error = interrupts.teardown_interrupted(ec2, "netlab")
    assert isinstance(error, LabInterrupted)
    assert str(error) == (
        "teardown interrupted; could not list what exists (ClientError): run `fab status`. "
        "Run `fab teardown` again to remove the rest"
    )


def _key_pair_ids(ec2) -> list[str]:
    return [pair["KeyPairId"] for pair in ec2.describe_key_pairs()["KeyPairs"]]


def test_key_pair_created_but_never_saved_is_planned_then_replaced(ec2, monkeypatch):
    report = Report(io.StringIO(), io.StringIO())
    with interrupting(monkeypatch) as counter:
        provisioning.provision(OPTIONS, report)
    at = counter.calls.index("ec2.CreateKeyPair") + 1
    teardown(report=Report(io.StringIO(), io.StringIO()))

    with interrupting(monkeypatch, at, "after"), pytest.raises(LabError) as failure:
        provisioning.provision(OPTIONS, Report(io.StringIO(), io.StringIO()))
    key_file = key_dir() / f"{KEY}.pem"
    assert f"key pair {KEY}" in str(failure.value) and f"key file {key_file}" in str(failure.value)
    assert key_file.read_text() == ""  # reserved, never filled: nobody has this private key
    unsaved = _key_pair_ids(ec2)
    assert len(unsaved) == 1

    planned = io.StringIO()
    provisioning.plan(OPTIONS, Report(planned, io.StringIO()))
    assert f"  would create key pair {KEY}: would create (the last was never saved)" in planned.getvalue()
    assert _key_pair_ids(ec2) == unsaved and key_file.read_text() == ""

    provisioning.provision(OPTIONS, Report(io.StringIO(), io.StringIO()))
    replaced = _key_pair_ids(ec2)
    assert len(replaced) == 1 and replaced != unsaved
    assert key_file.read_text().startswith("-----BEGIN OPENSSH PRIVATE KEY-----")


def test_when_the_api_hangs_the_look_up_gives_up_and_says_so(monkeypatch):
    """Ctrl-C often means the API hangs: listing what exists must not hang the interrupted task again."""
    import socket

    from botocore.config import Config

    silent = socket.socket()
    silent.bind(("127.0.0.1", 0))
    silent.listen(8)  # accepts connections, never answers
    endpoint = f"http://127.0.0.1:{silent.getsockname()[1]}"
    ec2 = boto3.client("ec2", region_name=REGION, endpoint_url=endpoint, config=Config(read_timeout=120))
    monkeypatch.setattr(interrupts, "LOOKUP_TIMEOUT", 0.5)
    try:
        error = interrupts.teardown_interrupted(ec2, "netlab")
    finally:
        silent.close()
    assert str(error).startswith("teardown interrupted; could not list what exists (no answer in 0.5 s)")
