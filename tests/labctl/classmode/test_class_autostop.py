"""`fab provision --count/--students --auto-stop HOURS|off` against in-process moto (--cloud-only: the cloud
half only, nothing connects to moto's addresses): every student's instance gets the single lab's shutdown
behaviour and deadline tags, shown in the report and in `fab status`; a re-run keeps them; `off` cancels.
"""

from __future__ import annotations

import io

from infra.autostop import AUTO_STOP_AT_KEY, AUTO_STOP_HOURS_KEY
from infra.tags import STUDENT_KEY, tag_dict
from labctl.classmode import classroom
from labctl.classmode.report import StudentRow, load_rows, write_report
from labctl.classmode.roster import Student
from labctl.classmode.shared import ClassOptions
from labctl.options import ProvisionOptions
from labctl.status import status_data, status_lines
from tests.support.classmode import STUDENTS, ours

from .conftest import TEST_CIDR

CLASS = "netlab"


def provision(auto_stop, students=STUDENTS, dry_run=False, **class_overrides) -> str:
    options = ProvisionOptions(
        target="aws", ssh_cidr=TEST_CIDR, cloud_only=True, name=CLASS, auto_stop=auto_stop, dry_run=dry_run
    )
    out = io.StringIO()
    classroom.provision_class(options, ClassOptions(tuple(students), **class_overrides), out=out, tty=False)
    return out.getvalue()


def deadlines(ec2) -> dict[str, tuple[str | None, str | None]]:
    """(deadline tag, hours tag) of each student's instance."""
    tags = [tag_dict(i) for i in ours(ec2, "instances")]
    return {t[STUDENT_KEY]: (t.get(AUTO_STOP_AT_KEY), t.get(AUTO_STOP_HOURS_KEY)) for t in tags}


def shutdown_behaviour(ec2, instance_id: str) -> str:
    attribute = ec2.describe_instance_attribute(
        InstanceId=instance_id, Attribute="instanceInitiatedShutdownBehavior"
    )
    return attribute["InstanceInitiatedShutdownBehavior"]["Value"]


def test_every_student_gets_the_deadline_the_report_and_status_show_it(ec2):
    out = provision("2")
    tagged = deadlines(ec2)
    assert set(tagged) == {"s01", "s02", "s03"}
    assert {hours for _, hours in tagged.values()} == {"2"}
    assert all(at and at.endswith("Z") for at, _ in tagged.values())
    assert {shutdown_behaviour(ec2, i["InstanceId"]) for i in ours(ec2, "instances")} == {"stop"}
    rows = load_rows(CLASS)
    assert {sid: row.auto_stop for sid, row in rows.items()} == {
        sid: f"{at} (2 h)" for sid, (at, _) in tagged.items()
    }
    assert "auto-stop after 2 h for every student" in out
    assert any(line.startswith("STUDENT") and "AUTO-STOP" in line for line in out.splitlines())
    status = status_data("aws", "ap-northeast-2", CLASS)
    hours = [i["auto_stop_hours"] for s in status["class"]["students"] for i in s["instances"]]
    assert hours == [2.0, 2.0, 2.0]
    assert any("auto-stop " in line and "(2 h)" in line for line in status_lines(status))


def test_a_rerun_with_the_same_hours_changes_nothing_and_says_so(ec2):
    provision("2")
    before = deadlines(ec2)
    out = provision("2")
    assert deadlines(ec2) == before
    for student in ("s01", "s02", "s03"):
        assert f"  {student}: auto-stop unchanged ({before[student][0]} (2 h))" in out


def test_other_hours_set_a_new_deadline_and_off_cancels(ec2):
    provision("2")
    provision("3")
    assert {hours for _, hours in deadlines(ec2).values()} == {"3"}
    out = provision("off")
    assert set(deadlines(ec2).values()) == {(None, None)}
    assert "  s01: changed instance " in out and "auto-stop: cancelled" in out
    assert {row.auto_stop for row in load_rows(CLASS).values()} == {"off"}
    again = provision("off")
    assert "  s02: auto-stop unchanged (off)" in again


def test_students_skipped_for_a_passed_verify_still_get_auto_stop(ec2):
    provision(None)
    rows = load_rows(CLASS)
    write_report(
        CLASS,
        "aws",
        "ap-northeast-2",
        [StudentRow(**{**vars(r), "verify": "pass"}) for r in rows.values()],
    )
    out = provision("1.5")
    assert "skipped (their last verify passed; --all runs them again): s01, s02, s03" in out
    assert {hours for _, hours in deadlines(ec2).values()} == {"1.5"}
    assert {row.verify for row in load_rows(CLASS).values()} == {"pass"}


def test_dry_run_plans_auto_stop_and_sets_nothing(ec2):
    provision(None)
    out = provision("2", dry_run=True)
    assert set(deadlines(ec2).values()) == {(None, None)}
    assert sum("auto-stop: at " in line and "would change" in line for line in out.splitlines()) == 3
    assert out.splitlines()[-1] == "dry run: 3 to change; nothing was changed"


def test_a_student_without_an_instance_is_told_so(ec2):
    provision(None, students=(Student("s01"),))
    ec2.terminate_instances(InstanceIds=[i["InstanceId"] for i in ours(ec2, "instances")])
    rows = load_rows(CLASS)
    write_report(
        CLASS,
        "aws",
        "ap-northeast-2",
        [StudentRow(**{**vars(r), "verify": "pass"}) for r in rows.values()],
    )
    assert "  s01: no running instance, nothing to set" in provision("2", students=(Student("s01"),))
