"""Issue 12 item 1's repro on the sandbox (root): two `fab provision --target sandbox --cloud-only` at once
in one state dir: the second waits, one key pair exists, its key is on disk (0600) and `fab ssh` works."""

from __future__ import annotations

import os
import stat
import subprocess
import sys
from pathlib import Path

import pytest

pytestmark = [pytest.mark.root, pytest.mark.slow]

PROJECT = Path(__file__).resolve().parents[2]
FAB = Path(sys.executable).with_name("fab")
DROP = ("AWS_PROFILE", "AWS_DEFAULT_PROFILE", "AWS_ENDPOINT_URL", "AWS_ENDPOINT_URL_EC2", "LAB_TARGET")


def test_two_sandbox_provisions_at_once_keep_one_key_and_ssh_works(tmp_path):
    from sandbox.rootfs import rootfs_path
    from sandbox.testhost import stop_sandbox

    if not rootfs_path().exists():
        pytest.skip("the sandbox root filesystem is not built yet (fab provision --target sandbox builds it)")
    state = tmp_path / "state"
    env = {k: v for k, v in os.environ.items() if k not in DROP}
    env["LAB_STATE_DIR"] = str(state)
    command = [str(FAB), "provision", "--target", "sandbox", "--cloud-only"]

    def fab(*args: str) -> subprocess.CompletedProcess:
        return subprocess.run(
            [str(FAB), *args], cwd=PROJECT, env=env, capture_output=True, text=True, timeout=280
        )

    try:
        runs = [
            subprocess.Popen(
                command, cwd=PROJECT, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True
            )
            for _ in range(2)
        ]
        outputs = [run.communicate(timeout=400) for run in runs]
        assert [run.returncode for run in runs] == [0, 0], outputs
        assert sum("created      key pair labctl-netlab" in out for out, _ in outputs) == 1, outputs
        assert sum("waiting for the other labctl run in" in err for _, err in outputs) == 1, outputs
        (key_file,) = (state / "keys").iterdir()
        assert stat.S_IMODE(key_file.stat().st_mode) == 0o600 and key_file.stat().st_size > 0
        ssh = fab("ssh", "--command", "true")
        assert ssh.returncode == 0, ssh.stdout + ssh.stderr
        down = fab("teardown")
        assert down.returncode == 0, down.stderr
    finally:
        if state.exists():
            stop_sandbox(state)
