"""The root commands the steps send, checked as text and (where harmless) run for real in a temp dir."""

from __future__ import annotations

import subprocess
import time
from types import SimpleNamespace

import pytest

from lab.packages import apt_error, install_command, update_command
from lab.remote import Host, Output, as_root, q
from lab.result import HostReport
from lab.timezone import set_timezone_command
from labctl.errors import LabError


def test_timedatectl_under_systemd():
    assert set_timezone_command("Asia/Seoul", systemd=True) == "timedatectl set-timezone Asia/Seoul"


def test_symlink_and_timezone_file_without_systemd(tmp_path):
    command = set_timezone_command("Asia/Seoul", systemd=False)
    assert "timedatectl" not in command
    # run it against a scratch root: same command with /etc replaced by a temp dir
    etc = tmp_path / "etc"
    etc.mkdir()
    subprocess.run(["sh", "-c", command.replace("/etc/", f"{etc}/")], check=True)
    assert (etc / "localtime").readlink().as_posix() == "/usr/share/zoneinfo/Asia/Seoul"
    assert (etc / "timezone").read_text() == "Asia/Seoul\n"


def test_install_names_only_the_missing_packages_and_never_upgrades():
    command = install_command(["make"])
    assert command.startswith("env DEBIAN_FRONTEND=noninteractive apt-get -q -y ")
    assert " update && " in command
    assert command.endswith(" install --no-upgrade --no-install-recommends make")
    assert " upgrade" not in command.replace("--no-upgrade", "")
    assert "DPkg::Lock::Timeout=" in command
    assert command.count("Acquire::Retries=3") == 2  # update and install both retry a dropped download


def test_update_command_is_noninteractive():
    assert update_command().startswith("env DEBIAN_FRONTEND=noninteractive apt-get")
    assert update_command().endswith(" update")


def test_as_root_uses_non_interactive_sudo_unless_root():
    assert as_root("id -u", "ubuntu") == "sudo -n sh -c 'id -u'"
    assert as_root("id -u", "root") == "sh -c 'id -u'"
    command = as_root('echo "it\'s" $((1+1))', "root")
    out = subprocess.run(["sh", "-c", command], capture_output=True, text=True)
    assert out.stdout == "it's 2\n"


def test_q_keeps_home_expandable_and_quotes_the_rest():
    assert q("~/.vimrc") == '"$HOME"/.vimrc'
    assert q("/etc/apt/sources.list") == "/etc/apt/sources.list"
    assert q("a b;rm") == "'a b;rm'"


def test_an_apt_failure_is_reported_by_its_first_error_line_which_names_the_cause():
    stderr = (
        "E: Failed to fetch http://mirror.kakao.com/ubuntu/pool/main/g/gcc-9/cpp-9.deb  502  Bad Gateway\n"
        "E: Unable to fetch some archives, maybe run apt-get update or try with --fix-missing?\n"
    )
    failed = Output("Reading package lists...\n", stderr, 100)
    assert apt_error(failed).endswith("cpp-9.deb  502  Bad Gateway")
    assert apt_error(Output("", "something else broke\n", 1)) == "something else broke"


class SlowFailingConnection:
    """Fabric as invoke's timer race leaves it: the command was killed at the timeout, but the result
    came back as a plain failure instead of CommandTimedOut."""

    user = "ubuntu"
    is_connected = True

    def __init__(self, seconds: float) -> None:
        self.seconds = seconds

    def run(self, command: str, **options):
        time.sleep(self.seconds)
        return SimpleNamespace(stdout="", stderr="", exited=-1)


def test_a_command_killed_at_its_timeout_is_a_timeout_even_without_command_timed_out():
    with pytest.raises(LabError, match="`sleep 30` did not finish within 1 s"):
        Host(SlowFailingConnection(1.05), "racy", HostReport()).run("sleep 30", timeout=1)
    quick = Host(SlowFailingConnection(0), "racy", HostReport()).run("false", timeout=1)
    assert quick.exited == -1  # a quick failure stays an ordinary failure
