"""deploy-echo's pure parts and its supervisor, run for real on this machine (no SSH)."""

from __future__ import annotations

import io
import os
import signal
import socket
import subprocess
import sys
import tarfile
import time
from pathlib import Path

import pytest

from lab import deploy
from labctl.errors import LabError

ECHO = Path(deploy.ECHO_DIR)


def test_local_sources_are_sources_only(tmp_path):
    for name in ("echo_server.c", "echo_client.c", "Makefile", "echo_server.py", "util.h"):
        (tmp_path / name).write_text(name)
    for name in ("echo_server", "echo_server.o", "notes.txt"):
        (tmp_path / name).write_text("build product")
    (tmp_path / "__pycache__").mkdir()
    assert sorted(deploy.local_sources(tmp_path)) == [
        "Makefile",
        "echo_client.c",
        "echo_server.c",
        "echo_server.py",
        "util.h",
    ]


def test_real_echo_dir_has_what_deploy_needs():
    sources = deploy.local_sources()
    assert {"Makefile", "echo_server.c", "echo_client.c", "echo_server.py", "echo_client.py"} <= set(sources)


def test_missing_echo_dir_is_a_lab_error(tmp_path):
    with pytest.raises(LabError, match="echo sources not found"):
        deploy.local_sources(tmp_path / "nope")


def test_changed_files_compares_sha256():
    local = {"a.c": b"one", "b.c": b"two", "c.py": b"three"}
    remote = {"a.c": deploy.sha256(b"one"), "b.c": deploy.sha256(b"old")}
    assert deploy.changed_files(local, remote) == ["b.c", "c.py"]
    assert deploy.changed_files(local, {n: deploy.sha256(d) for n, d in local.items()}) == []


def test_tar_stream_holds_exactly_the_changed_files_with_modes():
    sources = deploy.local_sources()
    data = deploy.tar_stream(sources, ["echo_server.c", "echo_server.py"])
    with tarfile.open(fileobj=io.BytesIO(data)) as tar:
        members = {m.name: m for m in tar.getmembers()}
        assert sorted(members) == ["echo_server.c", "echo_server.py"]
        assert tar.extractfile("echo_server.c").read() == sources["echo_server.c"]
    assert members["echo_server.py"].mode == (0o755 if os.access(ECHO / "echo_server.py", os.X_OK) else 0o644)


def test_untar_with_m_makes_make_rebuild(tmp_path):
    """The remote untar uses `tar -xm`: old source mtimes must not hide a change from make."""
    sources = deploy.local_sources()
    (tmp_path / "x.tar").write_bytes(deploy.tar_stream(sources, list(sources)))
    subprocess.run(["tar", "-xmf", "x.tar"], cwd=tmp_path, check=True)
    subprocess.run(["make", "-s", *deploy.C_BINARIES], cwd=tmp_path, check=True, capture_output=True)
    assert subprocess.run(["make", "-q", *deploy.C_BINARIES], cwd=tmp_path).returncode == 0
    changed = dict(sources, **{"echo_server.c": sources["echo_server.c"] + b"\n/* edited */\n"})
    (tmp_path / "x.tar").write_bytes(deploy.tar_stream(changed, ["echo_server.c"]))
    subprocess.run(["tar", "-xmf", "x.tar"], cwd=tmp_path, check=True)
    assert subprocess.run(["make", "-q", *deploy.C_BINARIES], cwd=tmp_path).returncode == 1


@pytest.mark.parametrize(
    "server, concurrent, command",
    [
        ("c", False, "/home/ubuntu/server-socket/echo_server 12345"),
        ("python", False, "/usr/bin/python3 /home/ubuntu/server-socket/echo_server.py 12345"),
        ("python", True, "/usr/bin/python3 /home/ubuntu/server-socket/echo_server.py 12345 --concurrent"),
    ],
)
def test_server_commands(server, concurrent, command):
    sources = {"echo_server.c": b"", "echo_server.py": b""}
    assert deploy.ServerChoice(server, concurrent).command("/home/ubuntu", sources) == command


def test_c_concurrent_uses_the_poll_server_when_there_is_one():
    sources = {"echo_server.c": b"", deploy.C_CONCURRENT_SOURCE: b""}
    assert deploy.ServerChoice("c", True).program(sources) == "echo_server_poll"
    assert "echo_server_poll" in deploy.make_targets(sources)


def test_c_concurrent_without_poll_server_is_a_clear_error():
    with pytest.raises(LabError, match="no concurrent mode.*--server python --concurrent"):
        deploy.ServerChoice("c", True).program({"echo_server.c": b""})


def test_unknown_server_is_a_clear_error():
    with pytest.raises(LabError, match="--server 'java' is unknown"):
        deploy.ServerChoice("java").program({})


def test_unit_runs_as_the_login_user_and_restarts():
    unit = deploy.render_unit("ubuntu", "/home/ubuntu", "/home/ubuntu/server-socket/echo_server 12345")
    assert "User=ubuntu\n" in unit
    assert "ExecStart=/home/ubuntu/server-socket/echo_server 12345\n" in unit
    assert "WorkingDirectory=/home/ubuntu/server-socket\n" in unit
    assert "Restart=always\n" in unit
    assert "WantedBy=multi-user.target\n" in unit


@pytest.mark.parametrize(
    "running, mode_changed, program_changed, reason",
    [
        (False, True, True, "was not running"),
        (True, True, False, "server or mode changed"),
        (True, False, True, "program changed"),
    ],
)
def test_restart_reason(running, mode_changed, program_changed, reason):
    assert deploy.restart_reason(running, mode_changed, program_changed) == reason


def wait_for(predicate, timeout=20.0):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return True
        time.sleep(0.05)
    return False


def accepts(port: int) -> bool:
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=1):
            return True
    except OSError:
        return False


def pid_in(path: Path) -> int:
    return int(path.read_text().strip())


def live_members(pgid: int) -> list[int]:
    """Processes of a process group that are not zombies (this machine's PID 1 may not reap them)."""
    pids = subprocess.run(["pgrep", "-g", str(pgid)], capture_output=True, text=True).stdout.split()
    live = []
    for pid in pids:
        try:
            state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
        except OSError:
            continue
        if state != "Z":
            live.append(int(pid))
    return live


@pytest.mark.parametrize("shell", ["sh", "bash"])
def test_supervisor_restarts_a_dead_server_and_stops_cleanly(tmp_path, free_port, shell):
    """The supervised-process mode for hosts without systemd, run for real with HOME=tmp_path."""
    work = tmp_path / deploy.REMOTE_DIR
    work.mkdir()
    env = dict(os.environ, HOME=str(tmp_path))
    command = f"{sys.executable} {ECHO / 'echo_server.py'} {free_port}"
    # Like sshd: the command's stdout is a pipe that must reach EOF, or the SSH command never ends.
    started = subprocess.run(
        [shell, "-c", deploy.supervisor_script(command)], env=env, timeout=10, capture_output=True
    )
    assert started.returncode == 0
    supervisor = pid_in(work / deploy.PID_FILE)
    try:
        assert wait_for(lambda: accepts(free_port))
        servers = [pid for pid in live_members(supervisor) if pid != supervisor]
        assert servers, "the server runs in the supervisor's process group"
        os.kill(servers[0], signal.SIGKILL)
        assert wait_for(lambda: "restarting" in (work / deploy.LOG_FILE).read_text())
        assert wait_for(lambda: accepts(free_port))
    finally:
        subprocess.run([shell, "-c", deploy.stop_supervised_script()], env=env, check=True, timeout=20)
    assert not (work / deploy.PID_FILE).exists()
    assert wait_for(lambda: live_members(supervisor) == [])
    assert not accepts(free_port)


def test_stop_without_pid_file_is_a_no_op(tmp_path):
    (tmp_path / deploy.REMOTE_DIR).mkdir()
    env = dict(os.environ, HOME=str(tmp_path))
    assert subprocess.run(["sh", "-c", deploy.stop_supervised_script()], env=env).returncode == 0
