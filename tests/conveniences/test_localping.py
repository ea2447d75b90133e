"""verify's local ping on Linux, macOS and Windows (flags differ); Linux for real against loopback."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys

import pytest

from lab import localping, verify


@pytest.mark.parametrize(
    ("os_name", "platform", "kind"),
    [
        ("posix", "linux", "linux"),
        ("posix", "darwin", "bsd"),
        ("posix", "freebsd14", "bsd"),
        ("nt", "win32", "windows"),
        ("posix", "cygwin", "windows"),
    ],
)
def test_platform_name(os_name, platform, kind):
    assert localping.platform_name(os_name, platform) == kind


def test_platform_follows_monkeypatched_os_name_and_sys_platform(monkeypatch):
    monkeypatch.setattr(sys, "platform", "darwin")
    assert localping.ping_command("198.51.100.10") == [
        "ping",
        "-n",
        "-c",
        "2",
        "-W",
        "2000",
        "-t",
        "5",
        "198.51.100.10",
    ]
    monkeypatch.setattr(os, "name", "nt")
    monkeypatch.setattr(sys, "platform", "win32")
    assert localping.ping_command("198.51.100.10") == ["ping", "-n", "2", "-w", "2000", "198.51.100.10"]


def test_linux_command_is_the_iputils_one():
    assert localping.ping_command("198.51.100.10", "linux") == [
        "ping",
        "-n",
        "-c",
        "2",
        "-i",
        "0.2",
        "-W",
        "2",
        "-w",
        "5",
        "198.51.100.10",
    ]


def test_windows_needs_a_ttl_line_because_unreachable_answers_exit_0():
    unreachable = "Reply from 198.51.100.1: Destination host unreachable.\n    Lost = 0 (0% loss),"
    assert not localping.got_reply(0, unreachable, "windows")
    assert localping.got_reply(0, "Reply from 198.51.100.10: bytes=32 time<1ms TTL=64", "windows")
    assert localping.summary("    Packets: Sent = 2, Received = 2, Lost = 0 (0% loss),").startswith("Packets")


def test_real_linux_ping_of_loopback_replies():
    if sys.platform != "linux":
        pytest.skip("Linux only")
    proc = subprocess.run(localping.ping_command("127.0.0.1"), capture_output=True, text=True, timeout=15)
    assert localping.got_reply(proc.returncode, proc.stdout)
    assert "packet loss" in localping.summary(proc.stdout)
    assert "0% packet loss" in verify.ping("127.0.0.1")


def test_missing_ping_hint_per_platform():
    assert "iputils-ping" in localping.install_hint("linux")
    assert "PATH" in localping.install_hint("windows")


def test_a_user_without_root_may_ping_at_that_interval():
    """Students run `fab verify` as themselves: iputils refuses an interval below 0.2 s to non-root users."""
    if sys.platform != "linux" or os.geteuid() != 0 or not shutil.which("setpriv"):
        pytest.skip("needs Linux, root and setpriv to drop to an unprivileged user")
    as_nobody = ["setpriv", "--reuid", "65534", "--regid", "65534", "--clear-groups"]
    command = as_nobody + localping.ping_command("127.0.0.1")
    proc = subprocess.run(command, capture_output=True, text=True, timeout=15)
    assert localping.got_reply(proc.returncode, proc.stdout), proc.stderr
