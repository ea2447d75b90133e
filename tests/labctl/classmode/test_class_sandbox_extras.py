"""Class mode's --dry-run, --auto-stop and Ctrl-C on the sandbox through the real fab (two students each).

- `--auto-stop 2` tags both instances and starts both hosts' timers; the same value again is unchanged; a
  dry run of `off` plans the cancel and changes nothing (EC2 described before and after, every state file
  compared); `off` then cancels both halves.
- SIGINT while the students' host setup runs: exit 130 within seconds with one line naming each student's
  instance, group and key pair; the report marks them interrupted; a re-run converges; teardown leaves
  nothing.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
from pathlib import Path

import pytest

from lab.connect import open_connection
from lab.remote import Host
from lab.result import HostReport
from sandbox import control
from sandbox.testhost import sandbox_client
from tests.support.classmode import report
from tests.support.fab import FAB, REPO

pytestmark = [pytest.mark.root, pytest.mark.slow]


def cloud_snapshot(state: Path) -> dict:
    """Everything EC2 knows about the class: instances (with tags), security groups, key pairs."""
    ec2 = sandbox_client(control.running_endpoint(state))
    described = ec2.describe_instances()["Reservations"]
    return {
        "instances": sorted(
            (i["InstanceId"], i["State"]["Name"], json.dumps(sorted(map(str, i.get("Tags", [])))))
            for r in described
            for i in r["Instances"]
        ),
        "groups": sorted(
            json.dumps(g, sort_keys=True, default=str)
            for g in ec2.describe_security_groups()["SecurityGroups"]
        ),
        "key_pairs": sorted(
            json.dumps(k, sort_keys=True, default=str) for k in ec2.describe_key_pairs()["KeyPairs"]
        ),
    }


def state_snapshot(state: Path) -> dict[str, tuple[int, float, bytes]]:
    """Every file of the state dir (mode, mtime, content), except the sandbox daemon's own files."""
    return {
        str(path.relative_to(state)): (
            path.stat().st_mode,
            path.stat().st_mtime,
            path.read_bytes() if path.is_file() else b"",
        )
        for path in sorted(state.rglob("*"))
        if path.relative_to(state).parts[0] != "sandbox"
    }


def student_auto_stop(fab) -> dict[str, list]:
    data = json.loads(fab("status", "--json").stdout)["class"]
    return {
        s["student"]: [(i["auto_stop_hours"], i["auto_stop_at"]) for i in s["instances"]]
        for s in data["students"]
    }


def on_host(state: Path, student: str, command: str) -> str:
    """Run `command` on a student's host (SSH as ubuntu, host key pinned from the console); its stdout."""
    from labctl.classmode.plan import read_only_target
    from labctl.targets import Cloud

    ec2 = sandbox_client(control.running_endpoint(state))
    filters = [
        {"Name": "tag:labctl:student", "Values": [student]},
        {"Name": "instance-state-name", "Values": ["running"]},
    ]
    instance = ec2.describe_instances(Filters=filters)["Reservations"][0]["Instances"][0]
    cloud = Cloud("sandbox", "ap-northeast-2", control.running_endpoint(state), ec2)
    key_file = state / "keys" / f"labctl-netlab-{student}.pem"
    conn = open_connection(read_only_target(cloud, instance, str(key_file), student), ssh_timeout=30)
    try:
        return Host(conn, student, HostReport()).run(command).stdout
    finally:
        conn.close()


def host_marker(state: Path, student: str) -> str:
    """The host's auto-stop marker (`/run/labctl-auto-stop`), '' when there is none."""
    return on_host(state, student, "cat /run/labctl-auto-stop 2>/dev/null || true")


def test_auto_stop_for_every_student_then_unchanged_then_a_dry_run_then_off(class_env):  # noqa: F811
    fab, state, instance_ids = class_env
    first = fab("provision", "--target", "sandbox", "--count", "2", "--auto-stop", "2")
    assert first.returncode == 0, first.stdout + first.stderr
    instance_ids += [row["instance_id"] for row in report(state).values()]
    tagged = student_auto_stop(fab)
    assert sorted(tagged) == ["s01", "s02"]
    deadlines = {student: found[0][1] for student, found in tagged.items()}
    assert {student: found[0][0] for student, found in tagged.items()} == {"s01": 2.0, "s02": 2.0}
    assert {row["student"]: row["auto_stop"] for row in report(state).values()} == {
        student: f"{at} (2 h)" for student, at in deadlines.items()
    }
    assert all(host_marker(state, student) for student in ("s01", "s02"))

    again = fab("provision", "--count", "2", "--auto-stop", "2")
    assert again.returncode == 0, again.stdout + again.stderr
    assert "  s01: auto-stop unchanged" in again.stdout and "  s02: auto-stop unchanged" in again.stdout
    assert student_auto_stop(fab) == tagged

    on_host(state, "s01", "rm ~/.vimrc")  # drift on one host: the dry run must see it and leave it
    cloud, files = cloud_snapshot(state), state_snapshot(state)
    plan = fab("provision", "--count", "2", "--all", "--dry-run", "--auto-stop", "off")
    assert plan.returncode == 0, plan.stdout + plan.stderr
    assert cloud_snapshot(state) == cloud
    assert state_snapshot(state) == files
    assert "  s01: host .vimrc would change: " in plan.stdout and "s02: host .vimrc" not in plan.stdout
    assert on_host(state, "s01", "test -e ~/.vimrc && echo present || echo absent") == "absent\n"
    assert plan.stdout.count("auto-stop: cancelled") == 2
    assert plan.stdout.count("would cancel the scheduled shutdown") == 2
    assert plan.stdout.splitlines()[-1] == "dry run: 2 to change; nothing was changed"

    off = fab("provision", "--count", "2", "--auto-stop", "off")
    assert off.returncode == 0, off.stdout + off.stderr
    assert student_auto_stop(fab) == {"s01": [(None, None)], "s02": [(None, None)]}
    assert [host_marker(state, student) for student in ("s01", "s02")] == ["", ""]
    assert {row["auto_stop"] for row in report(state).values()} == {"off"}


def _read_until_provision_runs(process: subprocess.Popen) -> list[str]:
    """stdout lines until a student's progress line shows its host setup running."""
    lines = []
    for line in process.stdout:
        lines.append(line.rstrip("\n"))
        if "provision …" in line or "provision .." in line:
            return lines
    raise AssertionError(f"provision ended before its host setup started: {lines}")


def test_sigint_during_the_host_setup_exits_130_and_a_rerun_converges(class_env):  # noqa: F811
    fab, state, instance_ids = class_env
    env = dict(os.environ, LAB_STATE_DIR=str(state), LAB_TARGET="sandbox")  # as the fixture's fab
    process = subprocess.Popen(
        [str(FAB), "provision", "--target", "sandbox", "--count", "2"],
        cwd=REPO,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        _read_until_provision_runs(process)
        process.send_signal(signal.SIGINT)
        out, err = process.communicate(timeout=15)  # not after the apt installs: within seconds
    finally:
        if process.poll() is None:
            process.kill()
            process.wait()
    assert process.returncode == 130, out + err
    assert err.count("\n") == 1 and "Traceback" not in err, err
    assert err.startswith("error: class netlab interrupted; s01 (")
    assert "(interrupted in provision): instance i-" in err
    assert err.rstrip().endswith(
        "Re-run the same `fab provision` to converge, or `fab teardown` to remove the class"
    )
    rows = report(state)
    instance_ids += [row["instance_id"] for row in rows.values() if row["instance_id"]]
    assert "interrupted" in {row["provision"] for row in rows.values()}
    for row in rows.values():
        assert f"{row['student']} (" in err and (not row["instance_id"] or row["instance_id"] in err)

    again = fab("provision", "--count", "2")
    assert again.returncode == 0, again.stdout + again.stderr
    assert {row["verify"] for row in report(state).values()} == {"pass"}
    instance_ids += [row["instance_id"] for row in report(state).values()]

    down = fab("teardown")
    assert down.returncode == 0, down.stdout + down.stderr
    after = json.loads(fab("status", "--json").stdout)
    assert (after["instances"], after["class"]) == ([], None)
