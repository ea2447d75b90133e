"""`fab provision --auto-stop` opens exactly ONE SSH connection per host: the host setup and the auto-stop
host half run over the connection provision opened (root: a private sshd on 127.0.0.1 stands in for the
lab instance, whose moto address is nobody's; the cloud part runs on moto)."""

from __future__ import annotations

import io
from collections import Counter

import paramiko
import pytest

from lab.target import HostTarget
from labctl import host_tasks, targets
from labctl.options import ProvisionOptions
from labctl.output import Report
from labctl.single import provisioning

from .conftest import TEST_CIDR

pytestmark = pytest.mark.root


@pytest.fixture
def connections(monkeypatch) -> Counter:
    """Every SSH connection this process opens, by (address, port)."""
    opened: Counter = Counter()
    real_connect = paramiko.SSHClient.connect

    def counting_connect(self, hostname, port=22, *args, **kwargs):
        opened[(hostname, port)] += 1
        return real_connect(self, hostname, port, *args, **kwargs)

    monkeypatch.setattr(paramiko.SSHClient, "connect", counting_connect)
    return opened


def test_provision_with_auto_stop_opens_one_ssh_connection_per_host(aws, sshd, connections, monkeypatch):
    def local_host(cloud, instance: dict, key_file) -> HostTarget:
        return HostTarget(
            name=instance["InstanceId"],
            address="127.0.0.1",
            user="root",
            key_file=sshd.client_key,
            port=sshd.port,
            host_keys=((sshd.host_key_type, sshd.host_key_b64),),
            target="aws",
            instance_id=instance["InstanceId"],
        )

    steps: list[tuple[str, str]] = []

    def setup(host, options) -> None:  # the lab's steps stand aside: only which connection they use counts
        steps.append(("setup", host.run("echo set up").stdout.strip()))

    def schedule(host, deadline: int, when: str) -> None:
        steps.append(("auto-stop", host.run("echo scheduled").stdout.strip()))

    monkeypatch.setattr(targets, "host_target", local_host)
    monkeypatch.setattr(host_tasks, "provision", setup)
    monkeypatch.setattr("lab.autostop.auto_stop", schedule)
    options = ProvisionOptions(target="aws", ssh_cidr=TEST_CIDR, auto_stop=2)
    provisioning.provision(options, Report(io.StringIO(), io.StringIO()))
    assert steps == [("setup", "set up"), ("auto-stop", "scheduled")]
    assert connections == {("127.0.0.1", sshd.port): 1}
