"""SIGINT to a real `fab provision` (moto server on 127.0.0.1): exit 130, one line saying what exists."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from tests.infra.test_fab_command import FAB, REPO, _wait_for_port

pytestmark = pytest.mark.slow

# A moto server whose RunInstances says it arrived (a file) and then waits for the release file, so the
# SIGINT lands while provision waits for that call, and the instance appears only after the interrupt.
SERVER = """
import sys, time
from pathlib import Path
sys.path.insert(0, sys.argv[1])
from sandbox import moto_images
moto_images.install(Path(sys.argv[2]))
from moto.ec2.responses.instances import InstanceResponse
from moto.server import ThreadedMotoServer

release = Path(sys.argv[4])
arrived = release.with_name("run-instances-arrived")
run_instances = InstanceResponse.run_instances

def held_run_instances(self):
    arrived.touch()
    while not release.exists():
        time.sleep(0.05)
    return run_instances(self)

InstanceResponse.run_instances = held_run_instances
server = ThreadedMotoServer(ip_address="127.0.0.1", port=int(sys.argv[3]), verbose=False)
server.start()
sys.stdin.read()
server.stop()
"""


@pytest.fixture
def held_moto(tmp_path, free_port):
    """(endpoint, release file) of a moto server that holds RunInstances; stopped by PID afterwards."""
    release = tmp_path / "release-run-instances"
    process = subprocess.Popen(
        [sys.executable, "-c", SERVER, str(REPO), str(tmp_path / "amis.json"), str(free_port), str(release)],
        stdin=subprocess.PIPE,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        _wait_for_port(free_port, process)
        yield f"http://127.0.0.1:{free_port}", release
    finally:
        release.touch()
        process.stdin.close()
        try:
            process.wait(timeout=10)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()


def _env(endpoint: str, tmp_path: Path) -> dict:
    env = {key: value for key, value in os.environ.items() if not key.startswith(("AWS_", "LAB_"))}
    env.update(
        AWS_ENDPOINT_URL=endpoint,
        AWS_ACCESS_KEY_ID="testing",
        AWS_SECRET_ACCESS_KEY="testing",
        AWS_CONFIG_FILE=str(tmp_path / "no-aws-config"),
        AWS_SHARED_CREDENTIALS_FILE=str(tmp_path / "no-aws-credentials"),
        AWS_EC2_METADATA_DISABLED="true",
        LAB_STATE_DIR=str(tmp_path / "state"),
    )
    return env


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


def test_sigint_during_provision_exits_130_naming_what_exists_then_teardown_cleans(held_moto, tmp_path):
    endpoint, release = held_moto
    env = _env(endpoint, tmp_path)
    process = subprocess.Popen(
        [str(FAB), "provision", "--target", "aws", "--cloud-only"],
        cwd=REPO,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        printed = _read_until(process, "security group labctl-netlab")
        _wait_for_file(release.with_name("run-instances-arrived"))
        process.send_signal(signal.SIGINT)
        _, err = process.communicate(timeout=60)
    finally:
        if process.poll() is None:
            process.kill()
            process.wait()
    assert process.returncode == 130, err
    assert len(err.strip().splitlines()) == 1 and "Traceback" not in err
    group_id = printed[-1].split(": ", 1)[1].split()[0]
    assert group_id.startswith("sg-")
    assert err.startswith("error: interrupted; ")
    assert f"security group {group_id} (labctl-netlab)" in err and "key pair labctl-netlab" in err
    assert "instance i-" not in err
    assert "Re-run `fab provision` to converge, or `fab teardown` to remove it" in err

    release.touch()  # the held RunInstances completes: an instance now exists that provision never saw
    assert len(_instances_once_released(env)) == 1
    down = _fab(env, "teardown")
    assert down.returncode == 0, down.stderr
    after = json.loads(_fab(env, "status", "--json").stdout)
    assert (after["instances"], after["security_group"], after["key_pair"]) == ([], None, None)
