"""`fab provision --count/--students --dry-run` against in-process moto: per student what would be created or
changed and a summary line; nothing is created, changed or written (EC2 and the state dir compared before
and after). --cloud-only keeps everything off moto's invented addresses.
"""

from __future__ import annotations

import io
import os
import subprocess
import sys
from pathlib import Path

import pytest

from labctl.classmode import classroom
from labctl.classmode.report import StudentRow, write_report
from labctl.classmode.roster import Student
from labctl.classmode.shared import ClassOptions
from labctl.options import ProvisionOptions
from labctl.state import state_dir
from tests.support.classmode import KEY, STUDENTS, inventory

from .conftest import TEST_CIDR

CLASS = "netlab"
PROJECT = Path(__file__).resolve().parents[3]
FAB = Path(sys.executable).with_name("fab")


def run(students=STUDENTS, dry_run=True, **class_overrides) -> str:
    options = ProvisionOptions(target="aws", ssh_cidr=TEST_CIDR, cloud_only=True, name=CLASS, dry_run=dry_run)
    out = io.StringIO()
    classroom.provision_class(options, ClassOptions(tuple(students), **class_overrides), out=out, tty=False)
    return out.getvalue()


def state_files() -> dict[str, tuple[int, bytes]]:
    """Every file and directory under the state dir with its mode and content."""
    root = state_dir()
    found = {}
    for path in sorted(root.rglob("*")):
        content = path.read_bytes() if path.is_file() else b""
        found[str(path.relative_to(root))] = (path.stat().st_mode, content)
    return found


def test_dry_run_of_a_new_class_creates_nothing_and_plans_every_lab(ec2):
    before, files = inventory(ec2), state_files()
    out = run()
    assert inventory(ec2) == before == {"instances": [], "groups": [], "keys": []}
    assert state_files() == files
    lines = out.splitlines()
    assert lines[0] == (
        "plan: target aws, region ap-northeast-2, lab netlab "
        "(class mode: 3 students; dry run: nothing is changed)"
    )
    assert "  s01: would create key pair labctl-netlab-s01: would create" in lines
    assert "  s02: would create key pair labctl-netlab-s02: would import" in lines
    assert any(
        line.startswith("  s03: would create security group labctl-netlab-s03:") and "10.20.30.40/32" in line
        for line in lines
    )
    assert sum(line.startswith("  s0") and "would create 1 instance(s)" in line for line in lines) == 3
    assert lines[-1] == "dry run: 3 labs to create; nothing was changed"
    assert not list(ec2.describe_key_pairs()["KeyPairs"])


def test_dry_run_after_provision_says_up_to_date_and_finds_drift_without_repairing_it(ec2):
    run(dry_run=False)
    group = ec2.describe_security_groups(GroupNames=["labctl-netlab-s01"])["SecurityGroups"][0]
    echo_rule = [p for p in group["IpPermissions"] if p.get("FromPort") == 12345]
    ec2.revoke_security_group_ingress(GroupId=group["GroupId"], IpPermissions=echo_rule)
    before, files = inventory(ec2), state_files()
    out = run()
    assert inventory(ec2) == before
    assert state_files() == files  # neither the report nor state.json nor a key file was rewritten
    assert f"  s01: would change rule tcp 12345 from {TEST_CIDR}: added to {group['GroupId']}" in out
    assert "s02: would" not in out and "s03: would" not in out
    assert "  s02: up to date" in out and "  s03: up to date" in out
    assert out.splitlines()[-1] == "dry run: 1 to change, 2 up to date; nothing was changed"


def test_students_whose_last_verify_passed_are_shown_as_skipped(ec2):
    rows = classroom.provision_class(
        ProvisionOptions(target="aws", ssh_cidr=TEST_CIDR, cloud_only=True, name=CLASS),
        ClassOptions(STUDENTS),
        out=io.StringIO(),
        tty=False,
    )
    write_report(CLASS, "aws", "ap-northeast-2", [StudentRow(**{**vars(r), "verify": "pass"}) for r in rows])
    out = run(students=STUDENTS + (Student("s04"),))
    assert "  s01: skipped: its last verify passed (--all would run it again)" in out
    assert any(line.startswith("  s04: would create 1 instance(s)") for line in out.splitlines())
    summary = "dry run: 1 lab to create, 3 skipped (last verify passed); nothing was changed"
    assert out.splitlines()[-1] == summary
    assert "up to date" in run(redo_all=True).splitlines()[-1]


def test_a_student_that_would_fail_is_named_and_the_others_are_still_planned(ec2):
    ec2.create_key_pair(KeyName="labctl-netlab-s02")  # a look-alike without our tags
    before = inventory(ec2)
    out = run()
    assert inventory(ec2) == before
    assert "  s02: would fail: key pair labctl-netlab-s02 exists but was not created by labctl" in out
    assert out.splitlines()[-1] == "dry run: 2 labs to create, 1 would fail (see above); nothing was changed"


def test_a_public_key_given_as_text_is_not_written_to_the_state_dir(ec2):
    files = state_files()
    out = run(students=(Student("s09", public_key=KEY),))
    assert "  s09: would create key pair labctl-netlab-s09: would import" in out
    assert state_files() == files


def test_shared_group_is_planned_once(ec2):
    out = run(shared_sg=True)
    assert (
        sum(
            line.startswith("  shared: would create security group labctl-netlab--shared")
            for line in out.splitlines()
        )
        == 1
    )
    assert "would create security group labctl-netlab-s0" not in out


@pytest.mark.parametrize("roster", [["--count", "2"], ["--students", "{csv}"]])
def test_fab_dry_run_with_the_sandbox_stopped_starts_nothing(tmp_path, roster):
    csv_file = tmp_path / "students.csv"
    csv_file.write_text("id\ns01\ns02\n")
    env = {k: v for k, v in os.environ.items() if not k.startswith("AWS_")}
    env.update(LAB_STATE_DIR=str(tmp_path / "state"), LAB_TARGET="sandbox")
    args = [arg.replace("{csv}", str(csv_file)) for arg in roster]
    done = subprocess.run(
        [str(FAB), "provision", *args, "--dry-run"],
        cwd=PROJECT,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert done.returncode == 0, done.stdout + done.stderr
    assert "the sandbox is not running: provision would start it and create every lab below" in done.stdout
    assert "  s02: host setup would run every step on the new instance" in done.stdout
    assert done.stdout.splitlines()[-1] == "dry run: 2 labs to create; nothing was changed"
    assert done.stderr == ""
    assert not (tmp_path / "state" / "sandbox").exists()
    assert not list((tmp_path / "state").glob("*"))


def test_a_stopped_instance_would_be_started_and_set_up_afterwards(ec2):
    run(students=(Student("s01"),), dry_run=False)
    instance = inventory(ec2)["instances"][0]
    ec2.stop_instances(InstanceIds=[instance])
    options = ProvisionOptions(target="aws", ssh_cidr=TEST_CIDR, name=CLASS, dry_run=True)
    out = io.StringIO()  # not --cloud-only: nothing runs, so nothing is connected to
    classroom.provision_class(options, ClassOptions((Student("s01"),)), out=out, tty=False)
    lines = out.getvalue().splitlines()
    assert f"  s01: would start  instance {instance}: is stopped" in lines  # as aligned by fab plan
    assert (
        "  s01: host steps would run once the instance has started (only a running one can be checked)"
        in lines
    )
    assert lines[-1] == "dry run: 1 to change; nothing was changed"
    state = ec2.describe_instances(InstanceIds=[instance])["Reservations"][0]["Instances"][0]["State"]["Name"]
    assert state == "stopped"
