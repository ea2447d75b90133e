"""`fab status`: the lab's instances, security group and key pair, and the class when the lab is one.

Everything is found by tags. status is read-only: it never writes the state file (`fab status --name other`
must not make the recorded lab another one), never starts the sandbox and never pins host keys.
"""

from __future__ import annotations

from pathlib import Path

from infra import instances, keys, security_group
from infra.errors import aws_errors
from infra.results import Result
from infra.tags import is_ours, resource_name
from labctl import cost_report, status_extras, targets
from labctl.classmode.status import class_status, class_status_lines
from labctl.labref import LabRef, resolve_lab
from labctl.output import header
from labctl.state import LabState, key_dir, state_dir


def _key_pair_status(cloud: targets.Cloud, lab: str, recorded_key_file: str | None) -> dict | None:
    pair = keys.describe_key_pair(cloud.ec2, resource_name(lab))
    if pair is None or not is_ours(pair, lab):
        return None
    key_file = recorded_key_file or str(keys.key_file_path(key_dir(), pair["KeyName"]))
    return {
        "name": pair["KeyName"],
        "type": pair.get("KeyType"),
        "file": key_file,
        "file_exists": Path(key_file).exists(),
    }


def _group_status(cloud: targets.Cloud, lab: str) -> dict | None:
    found = security_group.find_groups(cloud.ec2, lab)
    if not found:
        return None
    group = found[0]
    rules = [rule._asdict() for rule in security_group.group_rules(group)]
    return {
        "id": group["GroupId"],
        "name": group.get("GroupName"),
        "vpc_id": group.get("VpcId"),
        "rules": rules,
    }


def _not_ours(cloud: targets.Cloud, lab: str) -> list[dict]:
    found = security_group.lookalike_results(cloud.ec2, lab) + instances.lookalike_results(cloud.ec2, lab)
    pair = keys.describe_key_pair(cloud.ec2, resource_name(lab))
    if pair is not None and not is_ours(pair, lab):
        found.append(Result("not ours", f"key pair {pair['KeyName']}", "has no labctl tags for this lab"))
    return [{"resource": r.resource, "reason": r.message} for r in found]


def _cloud_status(cloud: targets.Cloud, lab: str, recorded_key_file: str | None) -> dict:
    key_pair = _key_pair_status(cloud, lab, recorded_key_file)
    key_file = key_pair["file"] if key_pair else None
    found = instances.find_instances(cloud.ec2, lab)
    described = [
        dict(instances.summary(i), key_file=key_file, **status_extras.instance_extras(i, key_file))
        for i in found
    ]
    return {
        "instances": described,
        "security_group": _group_status(cloud, lab),
        "key_pair": key_pair,
        "not_ours": _not_ours(cloud, lab),
        "class": class_status(cloud, lab),  # class mode: the labs of class `lab`, else None
    }


def _sandbox_status(ref: LabRef) -> dict | None:
    if ref.target != "sandbox":
        return None
    return targets.sandbox_control().status(state_dir())


def status_data(
    target: str | None = None,
    region: str | None = None,
    name: str | None = None,
    warn_hours: float | None = None,
) -> dict:
    """The lab's status as a JSON-ready dict with stable keys (see infra/STATUS-JSON.md)."""
    recorded = LabState.load()
    ref = resolve_lab(target, region, name, recorded)
    cloud = targets.connect(ref.target, ref.region, start_sandbox=False)
    data: dict = {"target": ref.target, "region": ref.region, "lab": ref.lab}
    data["endpoint"] = cloud.endpoint_url if cloud else None
    data["sandbox"] = _sandbox_status(ref)
    data["sandbox_down"] = (data["sandbox"] or {}).get("down") if cloud is None else None
    if cloud is None:
        data.update(
            instances=[], security_group=None, key_pair=None, not_ours=[], cost=None, **{"class": None}
        )
        return status_extras.add_warnings(data, warn_hours)
    recorded_key_file = recorded.key_file if recorded.lab == ref.lab else None
    with aws_errors():
        data.update(_cloud_status(cloud, ref.lab, recorded_key_file))
        cost_report.add_cost(cloud.ec2, data)
    return status_extras.add_warnings(data, warn_hours)


def status_lines(data: dict) -> list[str]:
    """A human-readable rendering of status_data()."""
    lines = [header("status", data["target"], data["region"], data["lab"])]
    if data.get("sandbox_down"):  # its instances still exist: "none" below would be wrong
        return [*lines, f"  sandbox      down: {data['sandbox_down']}"]
    lines.append(f"  endpoint     {data['endpoint'] or 'AWS'}")
    for i in data["instances"]:
        lines.append(
            f"  instance     {i['id']} {i['state']} {i['instance_type']} public {i['public_ip'] or '-'} "
            f"({i['public_dns'] or '-'}) private {i['private_ip'] or '-'} key {i['key_file'] or '-'}"
        )
        lines += status_extras.instance_lines(i, several=len(data["instances"]) > 1)
    if not data["instances"]:
        lines.append("  instance     none")
    group = data["security_group"]
    lines.append(f"  sec. group   {group['id']} ({group['name']})" if group else "  sec. group   none")
    for rule in group["rules"] if group else []:
        lines.append(f"    rule       {security_group.Rule(**rule).describe()}")
    pair = data["key_pair"]
    lines.append(f"  key pair     {pair['name']} file {pair['file']}" if pair else "  key pair     none")
    lines += class_status_lines(data.get("class"))
    lines += cost_report.status_lines(data)
    lines += [f"  not ours     {item['resource']}: {item['reason']}" for item in data["not_ours"]]
    return lines + status_extras.warning_lines(data)
