"""Class mode's cloud part against in-process moto (--cloud-only: nothing connects to moto's addresses).

Three students: one plain (key pair created), one with an imported public key, one with an own CIDR.
"""

from __future__ import annotations

import csv
import io
import json
import stat
from pathlib import Path

import pytest

from infra.tags import CLASS_KEY, STUDENT_KEY, tag_dict
from labctl.classmode import classroom
from labctl.classmode.report import StudentRow, load_rows, report_paths, write_report
from labctl.classmode.roster import Student
from labctl.classmode.shared import ClassOptions, class_filters
from labctl.errors import LabError
from labctl.options import ProvisionOptions
from labctl.output import Report
from labctl.state import state_dir
from labctl.status import status_data, status_lines
from labctl.teardown import teardown
from tests.support.classmode import CLASS, STUDENT_CIDR, STUDENTS, inventory, ours

from .conftest import TEST_CIDR


def provision(students=STUDENTS, **class_overrides) -> tuple[list[StudentRow], str]:
    options = ProvisionOptions(target="aws", ssh_cidr=TEST_CIDR, cloud_only=True, name=CLASS)
    out = io.StringIO()
    rows = classroom.provision_class(
        options, ClassOptions(tuple(students), **class_overrides), out=out, tty=False
    )
    return rows, out.getvalue()


def cidrs_of(group: dict) -> set[str]:
    return {r["CidrIp"] for p in group["IpPermissions"] for r in p.get("IpRanges", [])}


def test_one_lab_per_student_with_own_groups(ec2):
    rows, out = provision()
    assert [r.student for r in rows] == ["s01", "s02", "s03"]
    instances = ours(ec2, "instances")
    assert sorted(tag_dict(i)[STUDENT_KEY] for i in instances) == ["s01", "s02", "s03"]
    assert {tag_dict(i)["labctl:lab"] for i in instances} == {"netlab-s01", "netlab-s02", "netlab-s03"}
    assert {tag_dict(i)[CLASS_KEY] for i in instances} == {CLASS}
    by_student = {tag_dict(i)[STUDENT_KEY]: i for i in instances}
    assert by_student["s01"]["KeyName"] == "labctl-netlab-s01"
    groups = {tag_dict(g)[STUDENT_KEY]: g for g in ours(ec2, "groups")}
    assert set(groups) == {"s01", "s02", "s03"}
    assert cidrs_of(groups["s01"]) == {TEST_CIDR}
    assert cidrs_of(groups["s03"]) == {TEST_CIDR, STUDENT_CIDR}
    assert by_student["s03"]["SecurityGroups"][0]["GroupId"] == groups["s03"]["GroupId"]
    assert "s01: created key pair labctl-netlab-s01" in out


def test_created_keys_are_private_files_and_the_imported_key_is_the_students(ec2):
    rows, _ = provision()
    by_student = {r.student: r for r in rows}
    for student in ("s01", "s03"):
        key_file = Path(by_student[student].key_file)
        assert stat.S_IMODE(key_file.stat().st_mode) == 0o600
        assert key_file.read_text().startswith("-----BEGIN")
        assert by_student[student].ssh_command == f"ssh -i {key_file} ubuntu@{by_student[student].address}"
    assert by_student["s02"].key_file == ""
    pairs = {k["KeyName"]: k for k in ours(ec2, "keys")}
    assert set(pairs) == {"labctl-netlab-s01", "labctl-netlab-s02", "labctl-netlab-s03"}
    assert pairs["labctl-netlab-s02"]["KeyType"] == "ed25519"
    assert by_student["s02"].ssh_command == f"ssh ubuntu@{by_student['s02'].address}"


def test_shared_group_is_the_union_of_the_cidrs(ec2):
    provision(shared_sg=True)
    groups = ours(ec2, "groups")
    assert len(groups) == 1
    assert STUDENT_KEY not in tag_dict(groups[0])
    assert groups[0]["GroupName"] == "labctl-netlab--shared"
    assert cidrs_of(groups[0]) == {TEST_CIDR, STUDENT_CIDR}
    used = {i["SecurityGroups"][0]["GroupId"] for i in ours(ec2, "instances")}
    assert used == {groups[0]["GroupId"]}


def test_report_json_and_csv_in_the_state_dir(ec2):
    rows, out = provision()
    json_path, csv_path = report_paths(CLASS)
    assert json_path.parent == state_dir()
    for path in (json_path, csv_path):
        assert stat.S_IMODE(path.stat().st_mode) == 0o600
    data = json.loads(json_path.read_text())
    assert [r["student"] for r in data["students"]] == ["s01", "s02", "s03"]
    assert all(r["instance_id"].startswith("i-") for r in data["students"])
    table = list(csv.DictReader(csv_path.open()))
    assert [r["instance_id"] for r in table] == [r.instance_id for r in rows]
    assert {"student", "address", "key_file", "ssh_command", "verify", "error"} <= set(table[0])
    first = "provision: target aws, region ap-northeast-2, lab netlab (class mode: 3 students)"
    assert out.splitlines()[0] == first
    assert any(line.startswith("STUDENT") and "VERIFY" in line for line in out.splitlines())


@pytest.mark.parametrize("shared_sg", [False, True])
def test_rerun_creates_nothing_and_says_so(ec2, shared_sg):
    provision(shared_sg=shared_sg)
    before = inventory(ec2)
    _, out = provision(shared_sg=shared_sg)
    assert inventory(ec2) == before
    assert "created" not in out
    assert "cloud: nothing to do" in out


def test_one_failing_student_does_not_stop_the_others(ec2, tmp_path):
    not_a_key = tmp_path / "notes.pub"
    not_a_key.write_text("hello\n")
    students = (Student("s01"), Student("s02", public_key=str(not_a_key)), Student("s03"))
    with pytest.raises(LabError) as error:
        provision(students)
    assert "1 of 3 students failed (s02)" in str(error.value)
    assert sorted(tag_dict(i)[STUDENT_KEY] for i in ours(ec2, "instances")) == ["s01", "s03"]
    rows = load_rows(CLASS)
    assert rows["s02"].cloud == "failed" and "not an OpenSSH public key" in rows["s02"].error
    assert rows["s01"].cloud == "done" and rows["s01"].error == ""


def test_rerun_skips_students_whose_last_verify_passed(ec2):
    rows, _ = provision()
    passed = [StudentRow(**{**vars(r), "verify": "pass"}) if r.student == "s01" else r for r in rows]
    write_report(CLASS, "aws", "ap-northeast-2", passed)
    _, out = provision()
    assert "skipped (their last verify passed; --all runs them again): s01" in out
    assert not any(line.startswith("s01  cloud") for line in out.splitlines())
    assert any(line.startswith("s02  cloud") for line in out.splitlines())
    assert load_rows(CLASS)["s01"].verify == "pass"  # the kept row
    _, again = provision(redo_all=True)
    assert "skipped" not in again.splitlines()[1]
    assert any(line.startswith("s01  cloud") for line in again.splitlines())


def test_status_shows_every_lab_of_the_class(ec2):
    provision()
    data = status_data("aws", "ap-northeast-2", CLASS)
    assert [s["student"] for s in data["class"]["students"]] == ["s01", "s02", "s03"]
    assert all(len(s["instances"]) == 1 and s["security_group"] for s in data["class"]["students"])
    lines = status_lines(data)
    assert sum(line.startswith("  student") for line in lines) == 3


def _lookalikes(ec2) -> dict:
    """Look-alikes of the class's resources that are not ours: untagged group, instance and key pair."""
    vpc = ec2.create_vpc(CidrBlock="10.9.0.0/16")["Vpc"]["VpcId"]
    group = ec2.create_security_group(GroupName="labctl-netlab-s01", Description="x", VpcId=vpc)["GroupId"]
    image = ec2.describe_images(Owners=["099720109477"])["Images"][0]["ImageId"]
    tags = [
        {
            "ResourceType": "instance",
            "Tags": [{"Key": "Name", "Value": "labctl-netlab-s02"}, {"Key": CLASS_KEY, "Value": CLASS}],
        }
    ]
    instance = ec2.run_instances(ImageId=image, MinCount=1, MaxCount=1, TagSpecifications=tags)
    ec2.create_key_pair(KeyName="labctl-netlab-s09")
    return {"group": group, "instance": instance["Instances"][0]["InstanceId"], "key": "labctl-netlab-s09"}


def test_teardown_removes_the_whole_class_and_only_ours(ec2):
    rows, _ = provision()
    other = ProvisionOptions(target="aws", ssh_cidr=TEST_CIDR, cloud_only=True, name="other")
    classroom.provision_class(other, ClassOptions((Student("s01"),)), out=io.StringIO(), tty=False)
    kept = _lookalikes(ec2)
    out = io.StringIO()
    teardown("aws", "ap-northeast-2", CLASS, report=Report(out, io.StringIO()))
    assert inventory(ec2) == {"instances": [], "groups": [], "keys": []}
    assert not any(Path(r.key_file).exists() for r in rows if r.key_file)
    assert not any(path.exists() for path in report_paths(CLASS))
    assert ec2.describe_security_groups(GroupIds=[kept["group"]])["SecurityGroups"]
    state = ec2.describe_instances(InstanceIds=[kept["instance"]])["Reservations"][0]["Instances"][0]["State"]
    assert state["Name"] == "running"
    assert ec2.describe_key_pairs(KeyNames=[kept["key"]])["KeyPairs"]
    other_class = ec2.describe_instances(Filters=class_filters("other"))["Reservations"]
    assert [i["State"]["Name"] for r in other_class for i in r["Instances"]] == ["running"]
    assert "deleted      instance" in out.getvalue()
    again = io.StringIO()
    teardown("aws", "ap-northeast-2", CLASS, report=Report(again, io.StringIO()))
    assert "nothing to do" in again.getvalue().splitlines()[-1]


def test_single_lab_host_tasks_point_to_class_mode(ec2):
    from labctl import targets

    provision()
    with pytest.raises(LabError, match="is a class .*re-run `fab provision --count N`"):
        targets.host_targets()


def test_an_unexpected_error_is_reported_in_its_row_and_the_others_finish(ec2, monkeypatch):
    real_cloud_part = classroom.cloud_part

    def broken_for_s02(run, student):
        if student.id == "s02":
            raise RuntimeError("boom")
        return real_cloud_part(run, student)

    monkeypatch.setattr(classroom, "cloud_part", broken_for_s02)
    with pytest.raises(LabError, match=r"1 of 3 students failed \(s02\)"):
        provision()
    rows = load_rows(CLASS)
    assert rows["s02"].error == "cloud: unexpected RuntimeError: boom (please report this)"
    assert rows["s01"].cloud == rows["s03"].cloud == "done"
