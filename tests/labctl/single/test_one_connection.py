"""`fab provision --auto-stop` opens exactly ONE SSH connection per host: the host setup and the auto-stop
host half run over the connection provision opened (root: a private sshd on 127.0.0.1 stands in for the
lab instance, whose moto address is nobody's; the cloud part runs on moto)."""

from __future__ import annotations

import io

import pytest

from labctl import host_tasks
from labctl.options import ProvisionOptions
from labctl.output import Report
from labctl.single import provisioning

from .conftest import TEST_CIDR

pytestmark = pytest.mark.root


def test_provision_with_auto_stop_opens_one_ssh_connection_per_host(
    aws, sshd_for_every_instance, ssh_connections, monkeypatch
):
    steps: list[tuple[str, str]] = []

    def setup(host, options) -> None:  # the lab's steps stand aside: only which connection they use counts
        steps.append(("setup", host.run("echo set up").stdout.strip()))

    def schedule(host, deadline: int, when: str) -> None:
        steps.append(("auto-stop", host.run("echo scheduled").stdout.strip()))

    monkeypatch.setattr(host_tasks, "provision", setup)
    monkeypatch.setattr("lab.autostop.auto_stop", schedule)
    options = ProvisionOptions(target="aws", ssh_cidr=TEST_CIDR, auto_stop=2)
    provisioning.provision(options, Report(io.StringIO(), io.StringIO()))
    assert steps == [("setup", "set up"), ("auto-stop", "scheduled")]
    assert ssh_connections == {("127.0.0.1", sshd_for_every_instance.port): 1}
