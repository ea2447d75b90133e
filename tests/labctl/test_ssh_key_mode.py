"""`fab ssh` refuses a private key others can read, as OpenSSH does, before connecting (issue 12 item 7)."""

from __future__ import annotations

import pytest

from lab.target import HostTarget
from labctl import ssh_task
from labctl.errors import LabError


def test_fab_ssh_refuses_a_0644_key_before_connecting(tmp_path, monkeypatch):
    key_file = tmp_path / "labctl-netlab.pem"
    key_file.write_text("-----BEGIN OPENSSH PRIVATE KEY-----\n")
    key_file.chmod(0o644)
    monkeypatch.setattr(ssh_task, "open_connection", lambda *a, **k: pytest.fail("must not connect"))
    host = HostTarget(name="lab", address="198.51.100.10", key_file=str(key_file), instance_id="i-1")
    with pytest.raises(LabError) as refused:
        ssh_task.ssh([host], "true")
    assert str(refused.value) == (
        f"key file {key_file} has mode 0644, too open: run `chmod 600 {key_file}` and re-run"
    )
