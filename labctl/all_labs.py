"""`fab teardown --all-labs`: every lab of ours in the region, found by our project tag, listed then removed.

Only resources with `labctl:project=labctl` and a `labctl:lab` tag are touched; look-alikes (our names
without our tags) are never found here. Key pairs are deleted with the private key files labctl saved.
"""

from __future__ import annotations

from collections import defaultdict

from infra import instances, keys, security_group
from infra.errors import aws_errors
from infra.results import Result
from infra.tags import LAB_KEY, PROJECT_KEY, PROJECT_VALUE, resource_name, tag_dict
from labctl import targets
from labctl.labref import resolve_lab
from labctl.output import Report
from labctl.state import LabState, key_dir, state_dir


def _ours(resource: dict) -> str | None:
    """The lab name of a resource carrying our project tag, else None."""
    tags = tag_dict(resource)
    return tags.get(LAB_KEY) if tags.get(PROJECT_KEY) == PROJECT_VALUE else None


def _project_filter() -> list[dict]:
    return [{"Name": f"tag:{PROJECT_KEY}", "Values": [PROJECT_VALUE]}]


def find_labs(ec2) -> dict[str, dict[str, list[str]]]:
    """{lab: {"instances": [...], "security_groups": [...], "key_pairs": [...]}} for every lab of ours."""
    labs: dict[str, dict[str, list[str]]] = defaultdict(
        lambda: {"instances": [], "security_groups": [], "key_pairs": []}
    )
    state_filter = [{"Name": "instance-state-name", "Values": instances.NOT_TERMINATED}]
    for page in ec2.get_paginator("describe_instances").paginate(Filters=_project_filter() + state_filter):
        for reservation in page["Reservations"]:
            for instance in reservation["Instances"]:
                if _ours(instance):
                    labs[_ours(instance)]["instances"].append(instance["InstanceId"])
    for page in ec2.get_paginator("describe_security_groups").paginate(Filters=_project_filter()):
        for group in page["SecurityGroups"]:
            if _ours(group):
                labs[_ours(group)]["security_groups"].append(group["GroupId"])
    for pair in ec2.describe_key_pairs()["KeyPairs"]:
        if _ours(pair):
            labs[_ours(pair)]["key_pairs"].append(pair["KeyName"])
    return dict(sorted(labs.items()))


def lab_line(lab: str, found: dict[str, list[str]]) -> str:
    parts = [f"{len(ids)} {kind.replace('_', ' ')}" for kind, ids in found.items() if ids]
    listed = ", ".join(found["instances"] + found["security_groups"] + found["key_pairs"])
    return f"  lab {lab}: {', '.join(parts)} ({listed})"


def remove_lab(ec2, lab: str, key_names: list[str]) -> list[Result]:
    """Instances, then security groups, then the key pairs found (and the files labctl saved) of one lab."""
    results = instances.terminate_instances(ec2, lab)
    results += [security_group.delete_group(ec2, group) for group in security_group.find_groups(ec2, lab)]
    for key_name in key_names or [resource_name(lab)]:
        results += keys.delete_key_pair(ec2, lab, key_name, key_dir())
    return results


def _forget_recorded_lab(recorded: LabState, labs: dict, region: str) -> None:
    if recorded.lab in labs and recorded.region == region:
        LabState(recorded.target, recorded.region, recorded.lab, recorded.endpoint).save()


def teardown_all_labs(
    target: str | None = None, region: str | None = None, report: Report | None = None
) -> list[Result]:
    """List every lab of ours in the region, then remove them all; says so when there is none."""
    report = report or Report()
    recorded = LabState.load()
    ref = resolve_lab(target, region, None, recorded)
    report.line(f"teardown --all-labs: target {ref.target}, region {ref.region}, every lab of ours")
    saved = ref.target == "sandbox" and targets.sandbox_control().has_saved_state(state_dir())
    cloud = targets.connect(ref.target, ref.region, start_sandbox=saved)  # a dead daemon's labs come back
    if cloud is None:
        report.finish(unchanged="the sandbox is not running, so it has no labs")
        return []
    with aws_errors():
        labs = find_labs(cloud.ec2)
        report.line(f"found {len(labs)} lab(s) of ours in {ref.region}" + (":" if labs else ""))
        for lab, found in labs.items():
            report.line(lab_line(lab, found))
        for lab, found in labs.items():
            report.add(remove_lab(cloud.ec2, lab, found["key_pairs"]))
    _forget_recorded_lab(recorded, labs, ref.region)
    if ref.target == "sandbox" and targets.sandbox_control().shutdown_if_idle(state_dir()):
        report.line("  sandbox daemon stopped (no instances left)")
    report.finish(unchanged=f"no lab of ours in {ref.region}")
    return report.results
