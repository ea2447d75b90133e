"""Class mode tests: the moto fixtures, and `class_env` (the real `fab` on the sandbox, root)."""

from __future__ import annotations

import os
import subprocess

import pytest

from sandbox.network import netns_name
from tests.infra.conftest import REGION, TEST_CIDR, aws, ec2, isolated_aws  # noqa: F401
from tests.support.fab import FAB, REPO


@pytest.fixture
def class_env(tmp_path, monkeypatch):
    if os.geteuid() != 0:
        pytest.skip("needs root")
    state = tmp_path / "state"
    env = dict(os.environ, LAB_STATE_DIR=str(state), LAB_TARGET="sandbox")

    def fab(*args: str) -> subprocess.CompletedProcess:
        return subprocess.run(
            [str(FAB), *args], cwd=REPO, env=env, capture_output=True, text=True, timeout=280
        )

    instance_ids: list[str] = []
    try:
        yield fab, state, instance_ids
    finally:
        down = fab("teardown")
        assert down.returncode == 0, down.stdout + down.stderr
        namespaces = subprocess.run(["ip", "netns", "list"], capture_output=True, text=True).stdout
        assert not [i for i in instance_ids if netns_name(i) in namespaces]
