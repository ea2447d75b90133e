"""The apt mirror rewrite is a pure function: fixture files in, expected files out."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from lab import mirror

FIXTURES = Path(__file__).parent / "fixtures"
CASES = json.loads((FIXTURES / "cases.json").read_text())


@pytest.mark.parametrize("case", CASES, ids=[c["name"] for c in CASES])
def test_rewrite_matches_expected_fixture(case):
    text = (FIXTURES / case["input"]).read_text()
    expected = (FIXTURES / case["expected"]).read_text()
    assert mirror.rewrite_sources(text, mirror.DEFAULT_MIRROR, case["path"]) == expected


@pytest.mark.parametrize("case", CASES, ids=[c["name"] for c in CASES])
def test_second_rewrite_changes_nothing(case):
    once = mirror.rewrite_sources((FIXTURES / case["input"]).read_text(), mirror.DEFAULT_MIRROR, case["path"])
    assert mirror.rewrite_sources(once, mirror.DEFAULT_MIRROR, case["path"]) == once


def test_other_mirror_replaces_the_default_one_too():
    switched = (FIXTURES / "already-switched.sources.list").read_text()
    moved = mirror.rewrite_sources(switched, "ftp.mirror.example", "/etc/apt/sources.list")
    assert "mirror.kakao.com" not in moved.replace("# deb-src", "")
    assert moved.count("http://ftp.mirror.example/ubuntu/") == 4
    assert "http://security.ubuntu.com/ubuntu focal-security" in moved


@pytest.mark.parametrize(
    "host, moved",
    [
        ("ap-northeast-2.ec2.archive.ubuntu.com", True),
        ("eu-west-3.ec2.archive.ubuntu.com", True),
        ("archive.ubuntu.com", True),
        ("kr.archive.ubuntu.com", True),
        ("mirror.kakao.com", True),
        ("security.ubuntu.com", False),
        ("ports.ubuntu.com", False),
        ("archive.ubuntu.com.evil.example", False),
        ("myarchive.ubuntu.com", False),
    ],
)
def test_which_hosts_move(host, moved):
    assert mirror.is_archive_host(host) is moved


def test_active_hosts_ignore_comments():
    text = (FIXTURES / "focal.sources.list").read_text()
    assert mirror.active_hosts(text, "/etc/apt/sources.list") == [
        "ap-northeast-2.ec2.archive.ubuntu.com",
        "security.ubuntu.com",
    ]


def test_active_hosts_of_deb822_include_continuation_lines():
    text = (FIXTURES / "noble.ubuntu.sources.expected").read_text()
    assert mirror.active_hosts(text, "/etc/apt/sources.list.d/ubuntu.sources") == [
        "mirror.kakao.com",
        "security.ubuntu.com",
    ]


@pytest.mark.parametrize("name", ["mirror.kakao.com", "ftp.kaist.ac.kr", "localhost"])
def test_valid_mirror_names(name):
    assert mirror.is_valid_mirror(name)


@pytest.mark.parametrize("name", ["http://mirror.kakao.com/ubuntu", "a..b", "", "-x.example", "a b"])
def test_invalid_mirror_names(name):
    assert not mirror.is_valid_mirror(name)
