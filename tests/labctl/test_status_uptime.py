"""fab status on moto: uptime from LaunchTime, the warning past --warn-hours, connection lines and keys."""

from __future__ import annotations

import io
import json
from datetime import timedelta

import pytest

from infra import uptime
from labctl.errors import LabError
from labctl.options import ProvisionOptions
from labctl.output import Report
from labctl.single import provisioning
from labctl.state import load_state
from labctl.status import status_data, status_lines

from .conftest import TEST_CIDR


def provision(**overrides) -> tuple[list[dict], list[str]]:
    out = io.StringIO()
    options = ProvisionOptions(**{"target": "aws", "ssh_cidr": TEST_CIDR, "cloud_only": True, **overrides})
    described = provisioning.provision(options, report=Report(out, io.StringIO()))
    return described, out.getvalue().splitlines()


def move_clock(monkeypatch, instance: dict, hours: float) -> None:
    launched = uptime.launch_time(instance)
    monkeypatch.setattr(uptime, "utcnow", lambda: launched + timedelta(hours=hours))


def test_provision_prints_how_to_connect_before_its_summary(ec2):
    (instance,), lines = provision()
    key_file = load_state()["key_file"]
    address = instance["PublicIpAddress"]
    assert f"connect to {instance['InstanceId']}: fab ssh" in lines
    assert f"ssh by hand: ssh -i {key_file} ubuntu@{address}" in lines
    moba = next(line for line in lines if line.startswith("MobaXterm:"))
    assert f"Remote host {address}" in moba and f"Use private key: {key_file}" in moba
    assert lines[-1] == "done"


def test_status_shows_uptime_and_warns_past_the_threshold(ec2, monkeypatch):
    (instance,), _ = provision()
    move_clock(monkeypatch, instance, 9.5)
    data = status_data()
    (info,) = data["instances"]
    assert info["uptime_hours"] == 9.5
    assert data["uptime_warn_hours"] == 8.0
    (warning,) = data["warnings"]
    assert instance["InstanceId"] in warning and "9 h 30 min" in warning and "fab teardown" in warning
    lines = status_lines(data)
    assert "    uptime     9 h 30 min (launched " in "\n".join(lines)
    assert lines[-1] == f"  warning: {warning}"


def test_no_warning_below_the_threshold_or_with_a_higher_warn_hours(ec2, monkeypatch):
    (instance,), _ = provision()
    move_clock(monkeypatch, instance, 2)
    assert status_data()["warnings"] == []
    move_clock(monkeypatch, instance, 20)
    assert status_data(warn_hours=24)["warnings"] == []
    assert len(status_data(warn_hours="12")["warnings"]) == 1


def test_a_tiny_threshold_warns_in_the_first_minute(ec2, monkeypatch):
    """uptime_hours is rounded to 2 decimals (0.00 for 10 s); the warning must use the exact uptime."""
    (instance,), _ = provision()
    move_clock(monkeypatch, instance, 10 / 3600)
    data = status_data(warn_hours=0.0001)
    assert data["instances"][0]["uptime_hours"] == 0.0
    assert len(data["warnings"]) == 1


def test_a_stopped_instance_has_no_uptime_and_no_connect(ec2, monkeypatch):
    (instance,), _ = provision()
    ec2.stop_instances(InstanceIds=[instance["InstanceId"]])
    move_clock(monkeypatch, instance, 100)
    data = status_data()
    (info,) = data["instances"]
    assert info["state"] == "stopped"
    assert (info["uptime_hours"], info["connect"], data["warnings"]) == (None, None, [])
    assert info["launch_time"].endswith("Z")


def test_status_json_connect_object(ec2):
    (instance,), _ = provision()
    data = json.loads(json.dumps(status_data()))
    connect = data["instances"][0]["connect"]
    key_file = load_state()["key_file"]
    assert connect == {
        "ssh_command": f"ssh -i {key_file} ubuntu@{instance['PublicIpAddress']}",
        "mobaxterm": {
            "remote_host": instance["PublicIpAddress"],
            "specify_username": "ubuntu",
            "port": 22,
            "private_key": key_file,
        },
    }
    assert data["instances"][0]["auto_stop_at"] is None


@pytest.mark.parametrize("bad", ["soon", "0", "-1"])
def test_bad_warn_hours_is_one_line(ec2, bad):
    with pytest.raises(LabError, match="--warn-hours") as failure:
        status_data(target="aws", warn_hours=bad)
    assert "\n" not in str(failure.value)


def test_format_hours():
    assert [uptime.format_hours(h) for h in (0.25, 1, 3.0833, 49.5)] == [
        "15 min",
        "1 h 00 min",
        "3 h 05 min",
        "2 d 1 h",
    ]
