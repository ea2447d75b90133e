"""labctl.tasks maps each flag to one field: the cloud options, the host options and class mode's own.

Class mode's --count is the number of students; it must never reach ProvisionOptions.count (instances per
lab). `_options(locals())` put it there silently (a string, unused only because class mode asks for one
instance per student itself): test_class_flags_go_to_the_class_not_to_the_lab fails on that mapping. The
first test runs the real task against in-process moto.
"""

from __future__ import annotations

import dataclasses

import pytest
from invoke import Context

from infra.tags import STUDENT_KEY
from labctl import tasks
from labctl.classmode import classroom
from labctl.options import ProvisionOptions
from labctl.single import provisioning

from .conftest import TEST_CIDR


def running_instances(ec2) -> list[dict]:
    running = [{"Name": "instance-state-name", "Values": ["running"]}]
    pages = ec2.describe_instances(Filters=running)
    return [i for r in pages["Reservations"] for i in r["Instances"]]


def test_class_count_is_students_with_one_instance_each(ec2, capsys):
    tasks.provision(Context(), target="aws", count="2", ssh_cidr=TEST_CIDR, cloud_only=True)
    assert "(class mode: 2 students)" in capsys.readouterr().out
    instances = running_instances(ec2)
    students = sorted(t["Value"] for i in instances for t in i["Tags"] if t["Key"] == STUDENT_KEY)
    assert students == ["s01", "s02"]  # two labs of one instance each


@pytest.fixture
def seen(monkeypatch, tmp_path):
    """What the provision and plan tasks hand to labctl: the options, without running them.

    $HOME is a temporary directory holding ~/.ssh/id_ed25519.pub (--public-key must be a readable key).
    """
    monkeypatch.setenv("HOME", str(tmp_path))
    (tmp_path / ".ssh").mkdir()
    (tmp_path / ".ssh" / "id_ed25519.pub").write_text("ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIA test\n")
    calls: dict = {}

    def single(options, host_options=None):
        calls.update(options=options, host_options=host_options)

    def in_class(options, class_options, host_options=None):
        calls.update(options=options, class_options=class_options, host_options=host_options)

    monkeypatch.setattr(provisioning, "provision", single)
    monkeypatch.setattr(provisioning, "plan", lambda options: calls.update(options=options))
    monkeypatch.setattr(classroom, "provision_class", in_class)
    return calls


CLOUD_FLAGS = {
    "target": "sandbox",
    "region": "eu-west-1",
    "name": "lab7",
    "instance_type": "t3.small",
    "release": "22.04",
    "ami": "ami-0123456789abcdef0",
    "public_key": "~/.ssh/id_ed25519.pub",
    "ssh_cidr": "198.51.100.7/32",
    "open_world": True,
}


@pytest.mark.parametrize("flag, value", sorted(CLOUD_FLAGS.items()))
@pytest.mark.parametrize("task", [tasks.provision, tasks.plan])
def test_each_cloud_flag_lands_in_its_own_field(seen, task, flag, value):
    task(Context(), **{flag: value})
    expected = dataclasses.replace(ProvisionOptions(), **{flag: value})
    assert seen["options"] == expected


def test_provision_only_flags_and_host_options(seen):
    tasks.provision(
        Context(),
        cloud_only=True,
        dry_run=True,
        auto_stop="2",
        mirror="mirror.example.org",
        trust_new_host=True,
    )
    options = seen["options"]
    assert (options.cloud_only, options.dry_run, options.auto_stop, options.count) == (True, True, 2.0, 1)
    assert (seen["host_options"].mirror, seen["host_options"].trust_new_host) == ("mirror.example.org", True)


def test_flags_not_given_keep_the_defaults(seen):
    tasks.provision(Context())
    assert seen["options"] == ProvisionOptions()
    assert "class_options" not in seen


def test_class_flags_go_to_the_class_not_to_the_lab(seen):
    tasks.provision(Context(), name="netclass", count="3", parallel="2", shared_sg=True, all_=True)
    assert seen["options"] == ProvisionOptions(name="netclass")  # count stays 1 per lab
    class_options = seen["class_options"]
    assert [s.id for s in class_options.students] == ["s01", "s02", "s03"]
    assert (class_options.parallel, class_options.shared_sg, class_options.redo_all) == (2, True, True)
