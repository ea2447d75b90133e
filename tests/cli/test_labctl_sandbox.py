"""`labctl provision --target sandbox` from a directory outside the checkout (root): the same lab, output and
state as `fab`, then `labctl teardown` leaves nothing. The daemon is stopped by its state dir afterwards."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

pytestmark = [pytest.mark.root, pytest.mark.slow]

LABCTL = Path(sys.executable).with_name("labctl")
DROP = ("AWS_PROFILE", "AWS_DEFAULT_PROFILE", "AWS_ENDPOINT_URL", "AWS_ENDPOINT_URL_EC2", "LAB_TARGET")


def test_labctl_provisions_and_tears_down_a_sandbox_lab(tmp_path):
    testhost = pytest.importorskip("sandbox.testhost", reason="sandbox not available")
    state, cwd = tmp_path / "state", tmp_path / "elsewhere"
    cwd.mkdir()
    env = {k: v for k, v in os.environ.items() if k not in DROP}
    env["LAB_STATE_DIR"] = str(state)

    def labctl(*args: str) -> subprocess.CompletedProcess:
        return subprocess.run(
            [str(LABCTL), *args], cwd=cwd, env=env, capture_output=True, text=True, timeout=280
        )

    try:
        up = labctl("provision", "--target", "sandbox", "--cloud-only")
        assert up.returncode == 0, up.stdout + up.stderr
        assert up.stdout.splitlines()[0] == "provision: target sandbox, region ap-northeast-2, lab netlab"
        status = labctl("status", "--json")
        assert status.returncode == 0, status.stderr
        data = json.loads(status.stdout)
        assert data["target"] == "sandbox"
        assert [i["state"] for i in data["instances"]] == ["running"]
        down = labctl("teardown")
        assert down.returncode == 0, down.stdout + down.stderr
        after = labctl("status", "--json")
        assert json.loads(after.stdout)["instances"] == [], after.stdout + after.stderr
    finally:
        labctl("teardown")
        testhost.stop_sandbox(state)
