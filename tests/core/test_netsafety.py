"""The tool refuses to connect to addresses an emulator invented."""

from __future__ import annotations

import pytest

from labcore.net import check_connectable, is_aws_endpoint, is_sandbox_address
from labctl.errors import LabError


@pytest.mark.parametrize(
    "endpoint, expected",
    [
        (None, True),
        ("", True),
        ("https://ec2.ap-northeast-2.amazonaws.com", True),
        ("https://ec2.cn-north-1.amazonaws.com.cn", True),
        ("http://127.0.0.1:5000", False),
        ("http://localhost:4566", False),
        ("https://amazonaws.com.evil.example", False),
    ],
)
def test_aws_endpoint_detection(endpoint, expected):
    assert is_aws_endpoint(endpoint) is expected


@pytest.mark.parametrize(
    "address, expected",
    [
        ("198.51.100.10", True),
        ("198.51.100.255", True),
        ("198.51.101.1", False),
        ("54.214.1.2", False),
        ("ec2-54-214-1-2.compute-1.amazonaws.com", False),
        ("203.0.113.5", False),
    ],
)
def test_sandbox_address_detection(address, expected):
    assert is_sandbox_address(address) is expected


def test_emulator_address_outside_sandbox_is_refused():
    with pytest.raises(LabError, match="refusing to connect to 54.214.7.8"):
        check_connectable("54.214.7.8", "http://127.0.0.1:5000")


def test_emulator_dns_name_is_refused():
    with pytest.raises(LabError, match="not a sandbox address"):
        check_connectable("ec2-54-214-7-8.compute-1.amazonaws.com", "http://127.0.0.1:5000")


def test_sandbox_address_from_emulator_is_allowed():
    assert check_connectable("198.51.100.12", "http://127.0.0.1:5000") == "198.51.100.12"


def test_real_aws_address_is_allowed():
    assert check_connectable("54.214.7.8", None) == "54.214.7.8"
