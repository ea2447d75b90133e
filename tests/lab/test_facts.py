"""Fact parsers: real command output in, values out."""

from __future__ import annotations

import hashlib
import subprocess

import pytest

from lab import facts, waits


@pytest.mark.parametrize(
    "stdout, zone",
    [
        ("/usr/share/zoneinfo/Asia/Seoul\n--\nAsia/Seoul\n", "Asia/Seoul"),
        ("../usr/share/zoneinfo/Etc/UTC\n--\n", "Etc/UTC"),
        ("\n--\nEurope/Berlin\n", "Europe/Berlin"),
        ("\n--\n", None),
    ],
)
def test_parse_timezone(stdout, zone):
    assert facts.parse_timezone(stdout) == zone


def test_parse_installed_only_counts_ii():
    stdout = "gcc ii \nmake un \nnetcat-openbsd:amd64 ii \nlibc6 iF \n"
    assert facts.parse_installed(stdout) == {"gcc", "netcat-openbsd"}


def test_parse_installed_from_real_dpkg_query():
    out = subprocess.run(
        ["dpkg-query", "-W", "-f=${Package} ${db:Status-Abbrev}\\n", "dpkg", "surely-not-a-package-xyz"],
        capture_output=True,
        text=True,
    )
    assert facts.parse_installed(out.stdout) == {"dpkg"}


def test_parse_os_release():
    text = 'PRETTY_NAME="Ubuntu 20.04.6 LTS"\nNAME="Ubuntu"\nVERSION_ID="20.04"\nID=ubuntu\n# c\n'
    release = facts.parse_os_release(text)
    assert release["PRETTY_NAME"] == "Ubuntu 20.04.6 LTS"
    assert release["ID"] == "ubuntu"
    assert release["VERSION_ID"] == "20.04"


def test_parse_sha256sum_of_real_output(tmp_path):
    (tmp_path / "a.c").write_bytes(b"int main(void){return 0;}\n")
    (tmp_path / "Makefile").write_bytes(b"all:\n")
    out = subprocess.run(
        ["sha256sum", "--", "a.c", "Makefile"], cwd=tmp_path, capture_output=True, text=True, check=True
    )
    assert facts.parse_sha256sum(out.stdout) == {
        "a.c": hashlib.sha256(b"int main(void){return 0;}\n").hexdigest(),
        "Makefile": hashlib.sha256(b"all:\n").hexdigest(),
    }


@pytest.mark.parametrize(
    "stdout, status",
    [
        ("\nstatus: done\n", "done"),
        ("status: error\n", "error"),
        ("...\nstatus: running\n", "running"),
        ("", ""),
    ],
)
def test_parse_cloud_init_status(stdout, status):
    assert waits.parse_cloud_init_status(stdout) == status


def test_lock_wait_script_returns_when_no_lock_is_held():
    out = subprocess.run(["sh", "-c", waits.lock_wait_script(2)], capture_output=True, text=True)
    assert out.returncode == 0
    assert out.stdout.strip() == "waited=0"
