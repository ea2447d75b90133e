"""A `fab` process imports only what its task uses: no boto3 at all, no cloud layer for `fab --list`."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest

from tests.support.fab import REPO, isolated_fab_env

RUN_FAB = """
import atexit, json, sys
out = sys.argv.pop(1)
atexit.register(lambda: open(out, "w").write(json.dumps(sorted(sys.modules))))
sys.argv[0] = "fab"
from fabric.main import program
program.run()
"""


def modules_of_fab(tmp_path, *args: str, **env: str) -> set[str]:
    """Run `fab ARGS` in a subprocess; the modules it had imported when it exited."""
    out = tmp_path / "modules.json"
    done = subprocess.run(
        [sys.executable, "-c", RUN_FAB, str(out), *args],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=120,
        env=isolated_fab_env(tmp_path, **env),
    )
    assert done.returncode == 0, done.stdout + done.stderr
    return set(json.loads(out.read_text()))


def test_fab_list_imports_no_cloud_layer(tmp_path):
    modules = modules_of_fab(tmp_path, "--list")
    assert "fabfile" in modules
    assert (
        not {
            "botocore",
            "boto3",
            "labctl.single.provisioning",
            "labctl.classmode.classroom",
            "labctl.targets",
        }
        & modules
    )


@pytest.mark.slow
def test_a_cloud_task_builds_its_clients_without_boto3(tmp_path, moto_server):  # noqa: F811
    modules = modules_of_fab(
        tmp_path, "plan", "--target", "aws", "--ssh-cidr", "198.51.100.0/24", AWS_ENDPOINT_URL=moto_server
    )
    assert {"botocore.client", "labctl.single.provisioning"} <= modules
    assert not {"boto3", "s3transfer", "labctl.classmode.classroom"} & modules
