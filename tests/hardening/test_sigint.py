"""SIGINT to a real `fab provision` / `fab teardown` (moto server on 127.0.0.1): exit 130, one line saying
what exists and how to clean it; the next run finishes the job."""

from __future__ import annotations

import json
import signal
import subprocess
import time
from dataclasses import dataclass
from pathlib import Path

import pytest

from tests.support.fab import FAB, REPO, isolated_fab_env, moto_server_process

pytestmark = pytest.mark.slow

# A moto server that holds one EC2 action: when its request arrives it creates the "arrived" file, then waits
# for the "release" file. A SIGINT sent after "arrived" lands while the task waits for that call, and the
# call's effect appears only after the interrupt.
SERVER = """
import importlib, sys, time
from pathlib import Path
sys.path.insert(0, sys.argv[1])
from sandbox import moto_images
moto_images.install(Path(sys.argv[2]))
from moto.server import ThreadedMotoServer

arrived, release = Path(sys.argv[4]), Path(sys.argv[5])
module, cls, method = sys.argv[6].rsplit(".", 2)
response_class = getattr(importlib.import_module(module), cls)
original = getattr(response_class, method)

def held(self):
    arrived.touch()
    while not release.exists():
        time.sleep(0.05)
    return original(self)

setattr(response_class, method, held)
server = ThreadedMotoServer(ip_address="127.0.0.1", port=int(sys.argv[3]), verbose=False)
server.start()
sys.stdin.read()
server.stop()
"""

HELD = {
    "RunInstances": "moto.ec2.responses.instances.InstanceResponse.run_instances",
    "DeleteSecurityGroup": "moto.ec2.responses.security_groups.SecurityGroups.delete_security_group",
}


@dataclass
class HeldServer:
    endpoint: str
    arrived: Path
    release: Path


@pytest.fixture
def held_moto(tmp_path, free_port, request):
    """A moto server holding the action `request.param` (see SERVER); stopped by its PID afterwards."""
    held = HeldServer(f"http://127.0.0.1:{free_port}", tmp_path / "arrived", tmp_path / "release")
    extra = (str(held.arrived), str(held.release), HELD[request.param])
    with moto_server_process(tmp_path / "amis.json", free_port, script=SERVER, extra=extra):
        try:
            yield held
        finally:
            held.release.touch()


def _env(endpoint: str, tmp_path: Path) -> dict:
    return isolated_fab_env(tmp_path, AWS_ENDPOINT_URL=endpoint)


def _fab(env: dict, *args: str) -> subprocess.CompletedProcess:
    return subprocess.run([str(FAB), *args], cwd=REPO, env=env, capture_output=True, text=True, timeout=120)


def _read_until(process: subprocess.Popen, marker: str) -> list[str]:
    """Read stdout until a line contains `marker`; returns the lines read."""
    lines = []
    for line in process.stdout:
        lines.append(line.rstrip("\n"))
        if marker in line:
            return lines
    raise AssertionError(f"provision ended before printing {marker!r}: {lines}")


def _wait_for_file(path: Path, timeout: float = 30.0) -> None:
    deadline = time.monotonic() + timeout
    while not path.exists():
        assert time.monotonic() < deadline, f"{path.name} never appeared"
        time.sleep(0.05)


def _instances_once_released(env: dict, timeout: float = 30.0) -> list[dict]:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        found = json.loads(_fab(env, "status", "--json").stdout)["instances"]
        if found:
            return found
        time.sleep(0.5)
    return []


def _interrupted_run(
    env: dict, held: HeldServer, args: list[str], after_line: str
) -> tuple[list[str], str, int]:
    """Run `fab ARGS`; once it printed `after_line` and the held call arrived, SIGINT it.

    Returns the stdout lines read before the signal, its stderr and its exit status.
    """
    process = subprocess.Popen(
        [str(FAB), *args], cwd=REPO, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True
    )
    try:
        printed = _read_until(process, after_line)
        _wait_for_file(held.arrived)
        process.send_signal(signal.SIGINT)
        _, err = process.communicate(timeout=60)
    finally:
        if process.poll() is None:
            process.kill()
            process.wait()
    assert len(err.strip().splitlines()) == 1 and "Traceback" not in err, err
    return printed, err, process.returncode


def _assert_nothing_left(env: dict) -> None:
    after = json.loads(_fab(env, "status", "--json").stdout)
    assert (after["instances"], after["security_group"], after["key_pair"]) == ([], None, None)


@pytest.mark.parametrize("held_moto", ["RunInstances"], indirect=True)
def test_sigint_during_provision_exits_130_naming_what_exists_then_teardown_cleans(held_moto, tmp_path):
    env = _env(held_moto.endpoint, tmp_path)
    args = ["provision", "--target", "aws", "--cloud-only"]
    printed, err, status = _interrupted_run(env, held_moto, args, "security group labctl-netlab")
    assert status == 130, err
    group_id = printed[-1].split(": ", 1)[1].split()[0]
    assert group_id.startswith("sg-")
    assert err.startswith("error: interrupted; ")
    assert f"security group {group_id} (labctl-netlab)" in err and "key pair labctl-netlab" in err
    assert "instance i-" not in err
    assert "Re-run `fab provision` to converge, or `fab teardown` to remove it" in err

    held_moto.release.touch()  # the held RunInstances completes: an instance provision never saw
    assert len(_instances_once_released(env)) == 1
    down = _fab(env, "teardown")
    assert down.returncode == 0, down.stderr
    _assert_nothing_left(env)


@pytest.mark.parametrize("held_moto", ["DeleteSecurityGroup"], indirect=True)
def test_sigint_during_teardown_exits_130_naming_what_is_left_then_teardown_finishes(held_moto, tmp_path):
    env = _env(held_moto.endpoint, tmp_path)
    up = _fab(env, "provision", "--target", "aws", "--cloud-only")
    assert up.returncode == 0, up.stderr
    group_id = json.loads(_fab(env, "status", "--json").stdout)["security_group"]["id"]

    _, err, status = _interrupted_run(env, held_moto, ["teardown"], "teardown: target aws")
    assert status == 130, err
    assert err.startswith("error: teardown interrupted; exists now: ")
    assert f"security group {group_id} (labctl-netlab)" in err and "key pair labctl-netlab" in err
    assert "instance i-" not in err  # terminated before the group deletion was held
    assert err.rstrip().endswith("Run `fab teardown` again to remove the rest")

    held_moto.release.touch()
    again = _fab(env, "teardown")
    assert again.returncode == 0, again.stderr
    _assert_nothing_left(env)
