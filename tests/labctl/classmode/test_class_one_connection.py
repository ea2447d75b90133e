"""Class mode with --auto-stop opens exactly ONE SSH connection per student: provision, deploy, verify and
the auto-stop host half share it (root: a private sshd on 127.0.0.1 stands in for every student's instance,
whose moto address is nobody's; the cloud part runs on moto)."""

from __future__ import annotations

import io

import pytest

from labctl.classmode import classroom
from labctl.classmode.roster import Student
from labctl.classmode.shared import ClassOptions
from labctl.options import ProvisionOptions

from .conftest import TEST_CIDR

pytestmark = pytest.mark.root


def test_class_with_auto_stop_opens_one_ssh_connection_per_student(
    aws, sshd_for_every_instance, ssh_connections, monkeypatch
):
    steps: list[str] = []

    def step(name: str):  # the lab's steps stand aside: only which connection they use counts
        return lambda host, *args: steps.append(host.run(f"echo {name}").stdout.strip())

    monkeypatch.setattr(classroom, "provision", step("provision"))
    monkeypatch.setattr("lab.deploy.deploy_echo", step("deploy"))
    monkeypatch.setattr(classroom, "_verify", step("verify"))
    monkeypatch.setattr("lab.autostop.auto_stop", step("auto-stop"))
    options = ProvisionOptions(target="aws", ssh_cidr=TEST_CIDR, name="netlab", auto_stop=2)
    students = (Student("s01"), Student("s02"))
    out = io.StringIO()
    rows = classroom.provision_class(options, ClassOptions(students, parallel=1), out=out, tty=False)
    assert [row.error for row in rows] == ["", ""], out.getvalue()
    assert steps == ["provision", "deploy", "verify", "auto-stop"] * 2
    assert ssh_connections == {("127.0.0.1", sshd_for_every_instance.port): 2}  # two students, one each
