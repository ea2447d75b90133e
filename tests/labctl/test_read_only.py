"""Issue 12 item 4: `fab status`, `fab plan` and `fab verify` leave `state.json` byte-identical.

`fab status --name other` used to rewrite the state to lab `other`: then ssh/verify/deploy-echo said "run
fab provision first" and teardown found nothing while the real lab kept running. status and plan run the
real `fab` against a moto server; verify runs the real task in-process over a private sshd standing in for
the moto instance (root), with its checks replaced by one harmless command.
"""

from __future__ import annotations

import io
import json

import pytest
from invoke import Context

from labctl import tasks
from labctl.options import ProvisionOptions
from labctl.output import Report
from labctl.single import provisioning
from labctl.state import STATE_FILE, state_dir
from tests.infra.conftest import TEST_CIDR

READ_ONLY_RUNS = [
    ["status"],
    ["status", "--json"],
    ["status", "--name", "other"],
    ["status", "--target", "aws", "--name", "other", "--region", "us-east-1"],
    ["plan"],
    ["plan", "--name", "other"],
    ["plan", "--name", "other", "--instance-type", "t3.small", "--release", "24.04"],
    ["provision", "--dry-run", "--name", "other"],
]


def test_status_and_plan_leave_the_state_file_byte_identical(fab, tmp_path):
    made = fab("provision", "--target", "aws", "--cloud-only", "--ssh-cidr", TEST_CIDR)
    assert made.returncode == 0, made.stderr
    state_file = tmp_path / "state" / STATE_FILE
    recorded = state_file.read_bytes()
    lab = json.loads(recorded)["lab"]
    for args in READ_ONLY_RUNS:
        result = fab(*args)
        assert result.returncode == 0, (args, result.stderr)
        assert state_file.read_bytes() == recorded, args
    # the recorded lab is still the one the next task acts on: status (no flags) shows its instance
    status = json.loads(fab("status", "--json").stdout)
    assert status["lab"] == lab and len(status["instances"]) == 1


def test_status_of_another_lab_leaves_no_state_file_behind(fab, tmp_path):
    result = fab("status", "--target", "aws", "--name", "other")
    assert result.returncode == 0, result.stderr
    assert not (tmp_path / "state" / STATE_FILE).exists()


@pytest.mark.root
def test_verify_leaves_the_state_file_byte_identical(aws, sshd_for_every_instance, monkeypatch):
    ran: list[str] = []

    def checks_on_host(host) -> bool:  # the lab's checks stand aside: the task's own path is under test
        ran.append(host.run("echo checked").stdout.strip())
        return True

    monkeypatch.setattr("lab.verify.verify_on_host", checks_on_host)
    monkeypatch.setattr("lab.verify.verify_from_here", lambda report, name, address: True)
    options = ProvisionOptions(target="aws", ssh_cidr=TEST_CIDR, cloud_only=True)
    provisioning.provision(options, Report(io.StringIO(), io.StringIO()))
    state_file = state_dir() / STATE_FILE
    recorded = state_file.read_bytes()
    tasks.verify(Context())
    assert ran == ["checked"]
    assert state_file.read_bytes() == recorded
