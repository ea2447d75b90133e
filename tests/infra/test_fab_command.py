"""The real `fab` command in a subprocess against a moto server on 127.0.0.1 (AWS_ENDPOINT_URL)."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest

from tests.support.fab import REPO

pytestmark = pytest.mark.slow


def test_fab_provision_status_teardown_against_moto_server(fab, moto_server):
    first = fab("provision", "--target", "aws", "--cloud-only")
    assert first.returncode == 0, first.stderr
    lines = first.stdout.splitlines()
    assert lines[0] == "provision: target aws, region ap-northeast-2, lab netlab"
    assert any(line.strip().startswith("created") and "instance i-" in line for line in lines)

    again = fab("provision", "--target", "aws", "--cloud-only")
    assert again.returncode == 0, again.stderr
    assert again.stdout.splitlines()[-1].startswith("nothing to do")

    status = fab("status", "--json")
    assert status.returncode == 0, status.stderr
    data = json.loads(status.stdout)
    assert data["endpoint"] == moto_server
    assert data["target"] == "aws"
    assert [i["state"] for i in data["instances"]] == ["running"]
    assert {r["source"] for r in data["security_group"]["rules"]} == {"198.51.100.1/32"}

    down = fab("teardown")
    assert down.returncode == 0, down.stderr
    assert down.stdout.splitlines()[0] == "teardown: target aws, region ap-northeast-2, lab netlab"
    after = json.loads(fab("status", "--json").stdout)
    assert (after["instances"], after["security_group"], after["key_pair"]) == ([], None, None)


def test_fab_refuses_to_connect_to_an_emulator_address_in_one_line(fab):
    result = fab("provision", "--target", "aws")
    assert result.returncode == 1
    assert result.stderr.startswith("error: refusing to connect to ")
    assert len(result.stderr.strip().splitlines()) == 1
    assert "Traceback" not in result.stderr


def test_fab_plan_and_bad_input_errors(fab):
    plan = fab("plan", "--target", "aws")
    assert plan.returncode == 0, plan.stderr
    assert plan.stdout.splitlines()[0].startswith("plan: target aws")
    assert "would create" in plan.stdout

    bad = fab("provision", "--target", "aws", "--cloud-only", "--ssh-cidr", "10.0.0.0/99")
    assert bad.returncode == 1
    assert bad.stderr.strip().splitlines() == [
        "error: invalid --ssh-cidr '10.0.0.0/99': expected an IPv4 network like A.B.C.D/32"
    ]


def test_labctl_program_lists_the_same_tasks(tmp_path):
    result = subprocess.run(
        [sys.executable, "-m", "labctl.cli", "--list"],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=60,
        env={**os.environ, "PYTHONPATH": str(REPO)},
    )
    assert result.returncode == 0, result.stderr
    for name in ("provision", "plan", "status", "teardown"):
        assert name in result.stdout
