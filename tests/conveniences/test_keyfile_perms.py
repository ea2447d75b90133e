"""Private key files: 0600 on POSIX, an owner-only ACL via icacls on Windows (commands printed on failure)."""

from __future__ import annotations

import os
import stat
import subprocess

import pytest

from infra import keyfile_perms, keys
from labctl.errors import LabError

WINDOWS_KEY = r"C:\Users\Kim Min\lab\.lab\keys\labctl-netlab.pem"


@pytest.fixture
def windows(monkeypatch):
    """Pretend to be Windows; subprocess.run records the commands and answers with `returncode`."""
    calls: list[list[str]] = []
    answer = {"returncode": 0, "stderr": ""}

    def fake_run(command, **kwargs):
        calls.append(command)
        return subprocess.CompletedProcess(command, answer["returncode"], "", answer["stderr"])

    monkeypatch.setattr(os, "name", "nt")
    monkeypatch.setenv("USERNAME", "kim")
    monkeypatch.setenv("USERDOMAIN", "LAPTOP")
    monkeypatch.setattr(keyfile_perms.subprocess, "run", fake_run)
    return calls, answer


def test_windows_removes_inheritance_and_grants_only_the_user(windows):
    calls, _ = windows
    keyfile_perms.restrict_key_file(WINDOWS_KEY)
    assert calls == [
        ["icacls", WINDOWS_KEY, "/inheritance:r"],
        ["icacls", WINDOWS_KEY, "/grant:r", "LAPTOP\\kim:F"],
    ]


def test_windows_failure_prints_the_exact_commands_in_one_line(windows):
    calls, answer = windows
    answer.update(returncode=5, stderr="Access is denied.")
    with pytest.raises(LabError) as failure:
        keyfile_perms.restrict_key_file(WINDOWS_KEY)
    message = str(failure.value)
    assert "\n" not in message and "Access is denied." in message
    typed = f'icacls "{WINDOWS_KEY}" /inheritance:r && icacls "{WINDOWS_KEY}" /grant:r LAPTOP\\kim:F'
    assert typed in message
    assert len(calls) == 1  # stops at the first failing command


def test_windows_missing_icacls_is_one_line_too(windows, monkeypatch):
    def no_icacls(command, **kwargs):
        raise FileNotFoundError(2, "No such file or directory", "icacls")

    monkeypatch.setattr(keyfile_perms.subprocess, "run", no_icacls)
    with pytest.raises(LabError, match="run: icacls"):
        keyfile_perms.restrict_key_file(WINDOWS_KEY)


def test_windows_check_reapplies_the_acl_instead_of_reading_mode_bits(windows):
    calls, _ = windows
    keyfile_perms.check_key_file(WINDOWS_KEY)  # the file need not exist: mode bits mean nothing there
    assert [c[2] for c in calls] == ["/inheritance:r", "/grant:r"]


def test_posix_new_key_file_is_0600_even_with_a_space_in_the_path(tmp_path):
    path = tmp_path / "my keys" / "lab.pem"
    path.parent.mkdir()
    keys.write_private_key(path, "-----BEGIN OPENSSH PRIVATE KEY-----")
    assert stat.S_IMODE(path.stat().st_mode) == 0o600


def test_posix_open_key_file_is_refused_with_a_quoted_chmod(tmp_path):
    path = tmp_path / "my keys.pem"
    path.write_text("key")
    path.chmod(0o644)
    with pytest.raises(LabError, match=r"chmod 600 '.*my keys.pem'"):
        keys.check_key_file_mode(path)
    keyfile_perms.restrict_key_file(path)
    keys.check_key_file_mode(path)
