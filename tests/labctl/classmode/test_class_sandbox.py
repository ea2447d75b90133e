"""Class mode on the sandbox through the real fab: three students set up, deployed and verified in
parallel; a student broken on purpose fails alone and the re-run retries only that student; a widened
rule is repaired by `--all`; `fab teardown` leaves no instance, group, key, report or namespace behind.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from tests.support.classmode import report
from tests.support.fab import REPO

pytestmark = [pytest.mark.root, pytest.mark.slow]

REGION = "ap-northeast-2"


def revoke_echo_rule(state: Path, student: str) -> None:
    """Take port 12345 out of one student's own security group, behind labctl's back."""
    monkey_env = dict(os.environ, LAB_STATE_DIR=str(state))
    code = (
        "from labctl import targets\n"
        f"ec2 = targets.connect('sandbox', {REGION!r}, start_sandbox=False).ec2\n"
        f"group = ec2.describe_security_groups(GroupNames=['labctl-netlab-{student}'])['SecurityGroups'][0]\n"
        "rules = [p for p in group['IpPermissions'] if p.get('FromPort') == 12345]\n"
        "ec2.revoke_security_group_ingress(GroupId=group['GroupId'], IpPermissions=rules)\n"
    )
    subprocess.run([sys.executable, "-c", code], cwd=REPO, env=monkey_env, check=True, timeout=60)


def test_class_of_three_fails_one_then_retries_only_it(class_env):
    fab, state, instance_ids = class_env
    keys = state / "keys"
    keys.mkdir(parents=True, mode=0o700)
    blocker = keys / "labctl-netlab-s02.pem"
    blocker.write_text("not the key of s02\n")  # s02's key pair cannot be created while this file is there

    first = fab("provision", "--target", "sandbox", "--count", "3")
    assert first.returncode == 1, first.stdout + first.stderr
    assert "class netlab: 1 of 3 students failed (s02)" in first.stderr
    assert first.stderr.count("\n") == 1 and "Traceback" not in first.stderr
    rows = report(state)
    instance_ids += [row["instance_id"] for row in rows.values() if row["instance_id"]]
    assert rows["s01"]["verify"] == rows["s03"]["verify"] == "pass"
    assert rows["s02"]["cloud"] == "failed" and "exists but EC2 has no key pair" in rows["s02"]["error"]
    assert rows["s02"]["instance_id"] == ""

    blocker.unlink()
    second = fab("provision", "--count", "3")
    assert second.returncode == 0, second.stdout + second.stderr
    assert "skipped (their last verify passed; --all runs them again): s01, s03" in second.stdout
    progress = [line.split()[0] for line in second.stdout.splitlines() if "  cloud " in line]
    assert set(progress) == {"s02"}
    rows = report(state)
    instance_ids.append(rows["s02"]["instance_id"])
    assert {row["verify"] for row in rows.values()} == {"pass"}

    revoke_echo_rule(state, "s01")
    third = fab("provision", "--count", "3", "--all")
    assert third.returncode == 0, third.stdout + third.stderr
    assert "s01: changed rule tcp 12345 from 198.51.100.1/32" in third.stdout
    assert "s02: " not in third.stdout and "s03: " not in third.stdout  # nothing else changed
    assert {row["verify"] for row in report(state).values()} == {"pass"}

    status = fab("status")
    assert status.returncode == 0
    assert sum(line.startswith("  student") and "running" in line for line in status.stdout.splitlines()) == 3

    down = fab("teardown")
    assert down.returncode == 0, down.stdout + down.stderr
    assert down.stdout.count("deleted      instance") == 3
    assert not (state / "class-netlab.json").exists()
    assert not list(keys.glob("labctl-netlab-*"))
    after = fab("status", "--json")
    assert json.loads(after.stdout).get("class") is None
