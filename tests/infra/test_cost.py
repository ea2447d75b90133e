"""The hourly cost estimate: the dated price table, `infra.cost`, and `fab plan` / `fab status` on moto."""

from __future__ import annotations

import io
import json

import pytest

from infra import cost
from labctl import status
from labctl.classmode import classroom
from labctl.classmode.roster import Student
from labctl.classmode.shared import ClassOptions
from labctl.options import ProvisionOptions
from labctl.output import Report
from labctl.single import provisioning

from .conftest import REGION, TEST_CIDR

PRICES = cost.load_prices()


def test_the_price_table_is_dated_and_covers_seoul():
    assert PRICES.region == REGION
    assert PRICES.date[:4].isdigit() and PRICES.date[4] == "-"
    assert PRICES.public_ipv4_hourly == 0.005
    assert {"t2.micro", "t3.micro", "t3.small", "t3.medium", "t2.small"} <= set(PRICES.instance_hourly)
    assert {"gp2", "gp3"} <= set(PRICES.ebs_gb_month)
    raw = json.loads(cost.PRICES_FILE.read_text())
    assert raw["source"]


def test_a_known_type_running_and_stopped():
    item = cost.instance_cost("t3.micro", cost.RootVolume(8, "gp3"), REGION)
    storage = 8 * PRICES.ebs_gb_month["gp3"] / 730
    assert item.instance_hourly == PRICES.instance_hourly["t3.micro"] == 0.013
    assert item.running_hourly == pytest.approx(0.013 + 0.005 + storage)
    assert item.stopped_hourly == pytest.approx(storage) == pytest.approx(0.000999, abs=1e-6)
    assert item.hourly_in("running") == item.running_hourly
    assert item.hourly_in("stopped") == item.stopped_hourly
    assert item.hourly_in("shutting-down") == 0.0
    assert cost.cost_line(item, REGION) == (
        "about $0.0190/h while running (t3.micro $0.0130 + public IPv4 $0.0050 + 8 GiB gp3 $0.0010), "
        f"$0.0010/h while stopped (8 GiB gp3); prices of {PRICES.date}, ap-northeast-2"
    )


def test_an_unknown_type_says_price_unknown_instead_of_guessing():
    item = cost.instance_cost("m7i.48xlarge", cost.RootVolume(8, "gp2"), REGION)
    assert item.instance_hourly is None and item.running_hourly is None
    assert item.stopped_hourly == pytest.approx(8 * 0.114 / 730)
    line = cost.cost_line(item, REGION)
    assert line.startswith("about price unknown while running (m7i.48xlarge price unknown + ")
    assert "no price for instance type m7i.48xlarge" in line
    other = cost.instance_cost("t2.micro", cost.RootVolume(8, "gp2"), "us-east-1")
    assert other.running_hourly is None and other.stopped_hourly is None
    assert cost.cost_line(other, "us-east-1").startswith(
        "price unknown: the price table covers ap-northeast-2"
    )


def test_root_volume_comes_from_the_image_or_is_assumed():
    image = {
        "RootDeviceName": "/dev/sda1",
        "BlockDeviceMappings": [
            {"DeviceName": "/dev/sdb", "VirtualName": "ephemeral0"},
            {"DeviceName": "/dev/sda1", "Ebs": {"VolumeSize": 10, "VolumeType": "gp3"}},
        ],
    }
    assert cost.root_volume(image) == cost.RootVolume(10, "gp3")
    assert cost.root_volume({"BlockDeviceMappings": []}) == cost.RootVolume(8, "gp2", assumed=True)
    assert cost.root_volume(None).describe() == "8 GiB gp2 (assumed)"


def _options(**overrides) -> ProvisionOptions:
    return ProvisionOptions(
        **{**dict(target="aws", instance_type="t2.micro", ssh_cidr=TEST_CIDR, cloud_only=True), **overrides}
    )


def _quiet() -> Report:
    return Report(io.StringIO(), io.StringIO())


def _moto_volume(ec2, image_id: str) -> cost.RootVolume:
    """moto answers every image with one 15 GiB `standard` root volume."""
    volume = cost.root_volume(ec2.describe_images(ImageIds=[image_id])["Images"][0])
    assert volume == cost.RootVolume(15, "standard")
    return volume


def test_plan_shows_the_estimate_with_the_date(aws):
    out = io.StringIO()
    provisioning.plan(_options(instance_type="t3.small"), Report(out, io.StringIO()))
    line = next(x for x in out.getvalue().splitlines() if x.startswith("  cost "))
    assert line.startswith(
        "  cost         about $0.0326/h while running (t3.small $0.0260 + public IPv4 $0.0050 + "
    )
    assert line.endswith(f"; prices of {PRICES.date}, ap-northeast-2")


def test_status_json_has_the_cost_of_each_instance_and_the_lab(ec2):
    (instance,) = provisioning.provision(_options(), _quiet())
    volume = _moto_volume(ec2, instance["ImageId"])
    data = status.status_data(target="aws")
    storage = volume.size_gib * PRICES.ebs_gb_month["standard"] / 730
    running = 0.0144 + 0.005 + storage
    assert data["instances"][0]["cost"] == {
        "now_per_hour": round(running, 6),
        "running_per_hour": round(running, 6),
        "stopped_per_hour": round(storage, 6),
        "instance_type_per_hour": 0.0144,
        "public_ipv4_per_hour": 0.005,
        "storage_per_hour": round(storage, 6),
        "root_volume": {"size_gib": 15, "type": "standard", "assumed": False},
    }
    assert data["cost"] == {
        "prices_date": PRICES.date,
        "prices_region": REGION,
        "currency": "USD",
        "lab": {
            "instances": 1,
            "now_per_hour": round(running, 6),
            "running_per_hour": round(running, 6),
            "stopped_per_hour": round(storage, 6),
        },
        "class_total": None,
        "unknown": [],
    }
    lines = status.status_lines(data)
    assert f"  cost         {instance['InstanceId']}: about $0.0210/h now (running); " in "\n".join(lines)
    assert f"  prices       {PRICES.date}, ap-northeast-2, USD (infra/prices.json)" in lines


def test_a_stopped_instance_costs_its_volume_only(ec2):
    (instance,) = provisioning.provision(_options(), _quiet())
    ec2.stop_instances(InstanceIds=[instance["InstanceId"]])
    data = status.status_data(target="aws")
    info = data["instances"][0]
    assert info["state"] == "stopped"
    assert info["cost"]["now_per_hour"] == info["cost"]["stopped_per_hour"] == round(15 * 0.08 / 730, 6)
    assert info["cost"]["running_per_hour"] > info["cost"]["stopped_per_hour"]
    assert data["cost"]["lab"]["now_per_hour"] == info["cost"]["stopped_per_hour"]
    text = "\n".join(status.status_lines(data))
    assert "about $0.0016/h now (stopped); $0.0210/h while running" in text


def test_an_unknown_type_in_status_is_named(ec2):
    provisioning.provision(_options(instance_type="m5.large"), _quiet())
    data = status.status_data(target="aws")
    assert data["instances"][0]["cost"]["running_per_hour"] is None
    assert data["cost"]["lab"]["running_per_hour"] is None
    assert data["cost"]["unknown"] == ["instance type m5.large"]
    text = "\n".join(status.status_lines(data))
    assert "price unknown while running (m5.large price unknown + " in text
    assert "; no price for instance type m5.large" in text


def test_class_status_has_a_class_total(ec2):
    students = ClassOptions((Student("s01"), Student("s02")))
    classroom.provision_class(_options(name="net2026"), students, out=io.StringIO(), tty=False)
    data = status.status_data(target="aws", name="net2026")
    per_lab = data["class"]["students"][0]["instances"][0]["cost"]["running_per_hour"]
    total = data["cost"]["class_total"]
    assert total["instances"] == 2
    assert total["running_per_hour"] == pytest.approx(2 * per_lab)
    assert total["now_per_hour"] == pytest.approx(2 * per_lab)
    lines = status.status_lines(data)
    assert any(line.startswith("  class cost   about $0.0421/h now for 2 student lab(s)") for line in lines)


def test_the_sandbox_costs_nothing_and_says_null():
    data = {"target": "sandbox", "region": REGION, "instances": []}
    from labctl import cost_report

    assert cost_report.add_cost(None, data)["cost"] is None
    assert cost_report.status_lines(data) == []


def test_class_dry_run_prices_the_whole_class(aws):
    students = ClassOptions((Student("s01"), Student("s02")))
    out = io.StringIO()
    classroom.provision_class(_options(name="net2026", dry_run=True), students, out=out, tty=False)
    line = next(x for x in out.getvalue().splitlines() if x.startswith("  cost "))
    assert line.startswith(
        "  cost         about $0.0421/h for 2 labs while running (each t2.micro $0.0144 + "
    )
    assert "$0.0033/h while stopped (each 15 GiB standard)" in line
