"""Issue 7 through the real `fab` on the sandbox (root): provision --auto-stop prints how to connect,
`fab ssh` through a pseudo-terminal, `--command` exit status, the printed `ssh -i` line with OpenSSH,
a bring-your-own host, status (uptime, auto-stop, connect) and teardown --all-labs.

The state directory has a space in its name, so every printed key path must be quoted.
"""

from __future__ import annotations

import fcntl
import json
import os
import pty
import select
import shlex
import struct
import subprocess
import sys
import termios
import time
from pathlib import Path

import pytest

pytestmark = [pytest.mark.root, pytest.mark.slow]

PROJECT = Path(__file__).resolve().parents[2]
FAB = Path(sys.executable).with_name("fab")
DROP = ("AWS_PROFILE", "AWS_DEFAULT_PROFILE", "AWS_ENDPOINT_URL", "AWS_ENDPOINT_URL_EC2", "LAB_TARGET")


class Lab:
    def __init__(self, state: Path) -> None:
        self.state = state
        self.env = {k: v for k, v in os.environ.items() if k not in DROP}
        self.env["LAB_STATE_DIR"] = str(state)
        self.provision_output = ""

    def fab(self, *args: str, timeout: int = 280) -> subprocess.CompletedProcess:
        return subprocess.run(
            [str(FAB), *args],
            cwd=PROJECT,
            env=self.env,
            capture_output=True,
            text=True,
            timeout=timeout,
            stdin=subprocess.DEVNULL,
        )

    def status(self) -> dict:
        done = self.fab("status", "--json")
        assert done.returncode == 0, done.stderr
        return json.loads(done.stdout)


@pytest.fixture(scope="module")
def lab(tmp_path_factory):
    if os.geteuid() != 0:
        pytest.skip("needs root (network namespaces, sshd, iptables)")
    testhost = pytest.importorskip("sandbox.testhost", reason="sandbox not available")
    box = Lab(tmp_path_factory.mktemp("lab state"))
    try:
        up = box.fab("provision", "--target", "sandbox", "--auto-stop", "2")
        assert up.returncode == 0, up.stdout + up.stderr
        box.provision_output = up.stdout
        yield box
    finally:
        box.fab("teardown")
        testhost.stop_sandbox(box.state)


def only_instance(lab: Lab) -> dict:
    (instance,) = lab.status()["instances"]
    return instance


def test_provision_prints_quoted_connection_lines_and_the_auto_stop_outcome(lab):
    instance = only_instance(lab)
    key_file = instance["key_file"]
    assert " " in key_file
    out = lab.provision_output
    assert f"connect to {instance['id']}: fab ssh" in out
    assert f"ssh by hand: ssh -i {shlex.quote(key_file)} ubuntu@{instance['public_ip']}" in out
    assert f"Use private key: {key_file}" in out
    assert f"ok           instance {instance['id']} shutdown behaviour: stop" in out
    assert f"changed      instance {instance['id']} auto-stop: at {instance['auto_stop_at']} (2 h)" in out
    assert "shutdown -h scheduled for" in out  # the sandbox hosts run systemd (issue 13)
    assert "not possible" not in out


def test_status_shows_uptime_auto_stop_and_how_to_connect(lab):
    instance = only_instance(lab)
    assert instance["uptime_hours"] is not None and instance["auto_stop_hours"] == 2.0
    assert instance["connect"]["mobaxterm"]["remote_host"] == instance["public_ip"]
    text = lab.fab("status").stdout
    assert f"    auto-stop  at {instance['auto_stop_at']} (2 h after it was set)" in text
    assert "    uptime     " in text and "    ssh by hand: ssh -i '" in text
    warned = lab.fab("status", "--warn-hours", "0.0001")
    assert f"  warning: instance {instance['id']} has been running for" in warned.stdout


def read_until_exit(fd: int, pid: int, send: bytes, prompt: bytes = b"$ ") -> tuple[str, int]:
    """Drive a child on a pty: wait for the prompt, type `send`, collect output until the child exits."""
    output, sent, deadline = b"", False, time.monotonic() + 90
    while time.monotonic() < deadline:
        ready, _, _ = select.select([fd], [], [], 0.5)
        if ready:
            try:
                chunk = os.read(fd, 4096)
            except OSError:  # EIO: the child closed the terminal
                break
            if not chunk:
                break
            output += chunk
        if not sent and prompt in output:
            os.write(fd, send)
            sent = True
    _, status = os.waitpid(pid, 0)
    return output.decode(errors="replace"), os.waitstatus_to_exitcode(status)


def test_interactive_shell_through_a_pseudo_terminal(lab):
    pid, fd = pty.fork()
    if pid == 0:  # the child: a 40x100 terminal, then fab ssh
        fcntl.ioctl(0, termios.TIOCSWINSZ, struct.pack("HHHH", 40, 100, 0, 0))
        os.chdir(PROJECT)
        os.execve(str(FAB), [str(FAB), "ssh"], lab.env)
    output, status = read_until_exit(fd, pid, b"echo hi$((6*7)) $(whoami); stty size; exit 7\n")
    assert "hi42 ubuntu" in output
    assert "40 100" in output  # the window size reached the remote pty
    assert status == 7


def test_command_runs_once_and_exits_with_its_status(lab):
    done = lab.fab("ssh", "--command", "echo out; echo err >&2; hostname; exit 3")
    assert done.returncode == 3
    assert done.stdout.splitlines()[0] == "out"
    assert "ip-198-51-100-" in done.stdout
    assert "err" in done.stderr and "Traceback" not in done.stderr
    assert lab.fab("ssh", "--command", "true").returncode == 0


def test_unknown_instance_is_one_line(lab):
    done = lab.fab("ssh", "--instance", "i-nope", "--command", "true")
    assert done.returncode == 1
    assert done.stderr.strip().splitlines() == [
        f"error: no running lab instance 'i-nope': choose one of {only_instance(lab)['id']}"
    ]


def pinned_known_hosts(lab: Lab, path: Path) -> None:
    """known_hosts with the keys the console printed (what labctl pins), via labctl's own reader."""
    code = (
        "from labctl import targets\n"
        "for h in targets.host_targets():\n"
        "    print('\\n'.join(f'{h.address} {t} {k}' for t, k in h.host_keys))"
    )
    done = subprocess.run(
        [sys.executable, "-c", code],
        cwd=PROJECT,
        env=lab.env,
        capture_output=True,
        text=True,
        timeout=60,
        check=True,
    )
    path.write_text(done.stdout)


def test_the_printed_ssh_line_works_with_openssh(lab, tmp_path):
    line = next(x for x in lab.provision_output.splitlines() if x.startswith("ssh by hand: "))
    words = shlex.split(line.removeprefix("ssh by hand: "))
    known = tmp_path / "known_hosts"
    pinned_known_hosts(lab, known)
    strict = [
        "-o",
        "BatchMode=yes",
        "-o",
        f"UserKnownHostsFile={known}",
        "-o",
        "StrictHostKeyChecking=yes",
        "-o",
        "GlobalKnownHostsFile=/dev/null",
    ]
    done = subprocess.run(
        [words[0], *strict, *words[1:], "echo via-openssh"],
        capture_output=True,
        text=True,
        timeout=60,
        stdin=subprocess.DEVNULL,
    )
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == "via-openssh"


def test_bring_your_own_host_with_first_use_trust(lab):
    instance = only_instance(lab)
    host = f"ubuntu@{instance['public_ip']}"
    refused = lab.fab("-H", host, "-i", instance["key_file"], "ssh", "--command", "true")
    assert refused.returncode == 1 and "is unknown" in refused.stderr
    done = lab.fab("-H", host, "-i", instance["key_file"], "ssh", "--trust-new-host", "--command", "echo byo")
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == "byo"
    assert instance["public_ip"] in (lab.state / "known_hosts").read_text()


def test_rerun_with_the_same_auto_stop_changes_nothing_and_off_cancels(lab):
    before = only_instance(lab)["auto_stop_at"]
    again = lab.fab("provision", "--cloud-only", "--auto-stop", "2")
    assert again.returncode == 0, again.stderr
    assert f"auto-stop: at {before} (2 h)" in again.stdout
    assert "changed" not in again.stdout
    assert only_instance(lab)["auto_stop_at"] == before
    off = lab.fab("provision", "--cloud-only", "--auto-stop", "off")
    assert off.returncode == 0, off.stderr
    assert "auto-stop: cancelled" in off.stdout
    assert only_instance(lab)["auto_stop_at"] is None


def test_zz_teardown_all_labs_lists_then_removes_everything(lab):
    instance = only_instance(lab)
    done = lab.fab("teardown", "--all-labs")
    assert done.returncode == 0, done.stderr
    lines = done.stdout.splitlines()
    assert lines[1] == "found 1 lab(s) of ours in ap-northeast-2:"
    assert lines[2].startswith(f"  lab netlab: 1 instances, 1 security groups, 1 key pairs ({instance['id']}")
    assert f"deleted      instance {instance['id']}" in done.stdout
    assert "sandbox daemon stopped" in done.stdout
    assert not Path(instance["key_file"]).exists()


def test_class_mode_refuses_a_bad_auto_stop_in_one_line_before_doing_anything(tmp_path):
    # class mode's --auto-stop itself: tests/labctl/classmode/ test_class_autostop, test_class_sandbox_extras
    env = {k: v for k, v in os.environ.items() if k not in DROP}
    env["LAB_STATE_DIR"] = str(tmp_path / "state")
    args = ["provision", "--target", "sandbox", "--count", "2", "--auto-stop", "soon"]
    done = subprocess.run(
        [str(FAB), *args], cwd=PROJECT, env=env, capture_output=True, text=True, timeout=120
    )
    assert done.returncode == 1
    assert done.stderr.strip().splitlines() == [
        "error: --auto-stop 'soon' is not a number of hours (e.g. 3 or 0.5, or off)"
    ]
    assert not (tmp_path / "state" / "sandbox").exists()  # no sandbox was started
