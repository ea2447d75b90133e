"""The cloud half of the lab: provision, plan, status and teardown, as called by the Fabric tasks.

Tags on the resources are the truth; `labctl.state` caches what was found (target, region, lab, ids,
key file) and is rewritten from tags on every run.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, replace
from pathlib import Path
from typing import TYPE_CHECKING, Any

from infra import ami as amis
from infra import cidr as cidrs
from infra import instances, keys, operator_ip, pinned_keys, preflight, regions
from infra import security_group as groups
from infra.errors import aws_errors
from infra.results import ABSENT, CREATED, Result
from infra.tags import is_ours, resource_name
from labctl import after_provision, cost_report, interrupts, status_extras, targets
from labctl import state as lab_state
from labctl.errors import LabError
from labctl.output import Report, header

if TYPE_CHECKING:
    from lab.provision import ProvisionOptions as HostOptions

_LAB_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_-]{0,39}$")


@dataclass(frozen=True)
class ProvisionOptions:
    """Everything `fab provision` / `fab plan` accept. None means: recorded state, else the default."""

    target: str | None = None
    region: str | None = None
    name: str | None = None
    instance_type: str = instances.DEFAULT_INSTANCE_TYPE
    release: str = amis.DEFAULT_RELEASE
    ami: str | None = None
    public_key: str | None = None
    ssh_cidr: str | None = None
    open_world: bool = False
    cloud_only: bool = False
    dry_run: bool = False
    count: int = 1
    auto_stop: float | None = None


@dataclass(frozen=True)
class LabRef:
    """Which lab a task acts on."""

    target: str
    region: str
    lab: str


def validate_lab_name(name: str) -> str:
    if not _LAB_NAME.match(name or ""):
        raise LabError(f"invalid lab --name {name!r}: use up to 40 letters, digits, '-' or '_'")
    return name


def resolve_lab(target: str | None, region: str | None, name: str | None) -> LabRef:
    """Flags first, then the recorded state, then the defaults; region and name are validated."""
    recorded = lab_state.load_state()
    return LabRef(
        target=targets.choose_target(target, recorded.get("target")),
        region=regions.validate_region(region or recorded.get("region") or regions.DEFAULT_REGION),
        lab=validate_lab_name(name or recorded.get("lab") or targets.DEFAULT_LAB),
    )


def _record(ref: LabRef, cloud: targets.Cloud | None, **ids: Any) -> None:
    """Rewrite the cached state for this lab (dropping what belonged to another lab)."""
    previous = lab_state.load_state()
    keep = {k: v for k, v in previous.items() if previous.get("lab") == ref.lab}
    keep.update(
        target=ref.target, region=ref.region, lab=ref.lab, endpoint=cloud.endpoint_url if cloud else None
    )
    keep.update(ids)
    lab_state.save_state(keep)


# --- provision / plan -------------------------------------------------------------------------------------


def _source_cidr(options: ProvisionOptions, cloud: targets.Cloud, report: Report) -> str:
    source = cidrs.resolve_source_cidr(
        options.ssh_cidr, options.open_world, cloud.real_aws, lambda: operator_ip.operator_public_ip()
    )
    if source.warning:
        report.warn(source.warning)
    return source.cidr


def _ensure_key(ref: LabRef, cloud: targets.Cloud, options: ProvisionOptions, report: Report) -> str:
    """The key pair step; returns the key pair name."""
    key_name = resource_name(ref.lab)
    public_key = Path(options.public_key).expanduser() if options.public_key else None
    result, key_file = keys.ensure_key_pair(
        cloud.ec2, ref.lab, key_name, lab_state.key_dir(), public_key, options.dry_run
    )
    report.add([result])
    if not options.dry_run:
        _record(ref, cloud, key_name=key_name, key_file=str(key_file) if key_file else None)
    return key_name


def _ensure_group(
    ref: LabRef, cloud: targets.Cloud, vpc_id: str, source: str, dry_run: bool, report: Report
) -> str | None:
    """The security group step; returns the group id (None when a dry run would create it)."""
    results, group_id = groups.ensure_security_group(cloud.ec2, ref.lab, vpc_id, source, dry_run)
    report.add(results)
    if not dry_run:
        _record(ref, cloud, security_group_id=group_id, source_cidr=source)
    return group_id


def _ensure_instances(
    ref: LabRef, cloud: targets.Cloud, spec: instances.InstanceSpec, report: Report
) -> list[dict]:
    """The instance step; returns the described instances."""
    results, described = instances.ensure_instances(cloud.ec2, spec)
    report.add(results)
    _record(ref, cloud, instance_ids=[i["InstanceId"] for i in described], image_id=spec.image_id)
    return described


def _cloud_steps(ref: LabRef, cloud: targets.Cloud, options: ProvisionOptions, report: Report) -> list[dict]:
    """Inputs first (nothing is created if one fails), then key pair, security group, instances."""
    source = _source_cidr(options, cloud, report)
    image = amis.find_ami(cloud.ec2, cloud.ssm, options.release, options.ami)
    report.line(f"  image        {image['ImageId']} ({image.get('Name', 'unnamed')})")
    vpc_id = groups.default_vpc_id(cloud.ec2, ref.region)
    recorded = lab_state.load_state()  # issue 14: check type, subnet and image before the first creation
    first_run = not (recorded.get("lab") == ref.lab and recorded.get("instance_ids"))
    launch = preflight.launch_checks(
        cloud.ec2, ref.region, vpc_id, options.instance_type, image, options.release, first_run
    )
    for warning in launch.warnings:
        report.warn(warning)
    key_name = _ensure_key(ref, cloud, options, report)
    group_id = _ensure_group(ref, cloud, vpc_id, source, options.dry_run, report)
    spec = instances.InstanceSpec(
        ref.lab, image["ImageId"], options.instance_type, key_name, group_id or "", options.count
    )._replace(subnet_id=launch.subnet_id)
    if options.dry_run:
        report.add(instances.plan_instances(cloud.ec2, spec))
        if cloud.target == "aws":  # the sandbox costs nothing
            report.line(cost_report.plan_line(options.instance_type, image, ref.region, options.count))
        return instances.find_instances(cloud.ec2, ref.lab, ["running"])
    return _ensure_instances(ref, cloud, spec, report)


def _report_instances(described: list[dict], report: Report) -> None:
    for instance in described:
        info = instances.summary(instance)
        report.line(
            f"instance {info['id']}: {info['state']}, public IP {info['public_ip'] or '-'}, "
            f"public DNS {info['public_dns'] or '-'}"
        )


def _plan_without_sandbox(ref: LabRef, report: Report) -> None:
    report.line("  the sandbox is not running: provision would start it and create everything below")
    name = resource_name(ref.lab)
    report.add(
        [
            Result(CREATED, f"key pair {name}", planned=True),
            Result(CREATED, f"security group {name}", planned=True),
            Result(CREATED, "1 instance(s)", planned=True),
        ]
    )


def provision_cloud(options: ProvisionOptions, report: Report | None = None) -> list[dict]:
    """Create or converge the lab's cloud resources (or only plan them with `dry_run`); returns instances."""
    return _provision_cloud(options, report or Report())[1]


def _provision_cloud(options: ProvisionOptions, report: Report) -> tuple[targets.Cloud | None, list[dict]]:
    """provision_cloud, also returning the Cloud it used (None: dry run without a running sandbox)."""
    ref = resolve_lab(options.target, options.region, options.name)
    report.line(header("plan" if options.dry_run else "provision", ref.target, ref.region, ref.lab))
    cloud = None
    try:
        cloud = targets.connect(ref.target, ref.region, start_sandbox=not options.dry_run)
        if cloud is None:
            _plan_without_sandbox(ref, report)
            described = []
        else:
            with aws_errors():
                described = _cloud_steps(ref, cloud, options, report)
    except KeyboardInterrupt:
        raise interrupts.provision_interrupted(report, cloud and cloud.ec2, ref.lab) from None
    _report_instances(described, report)
    if not options.dry_run:
        after_provision.print_connection_help(described, report)
    report.finish(planned=options.dry_run)
    return cloud, described


def plan(options: ProvisionOptions, report: Report | None = None) -> list[Result]:
    """What provision would create, change or start; changes nothing."""
    report = report or Report()
    provision_cloud(replace(options, dry_run=True), report)
    return report.results


def provision(
    options: ProvisionOptions,
    report: Report | None = None,
    host_options: HostOptions | None = None,
) -> list[dict]:
    """`fab provision`: the cloud resources, then (unless --cloud-only) the host setup steps.

    With --dry-run the cloud part is only planned and the host steps run in dry-run mode on instances that
    already run (a new instance gets every step).
    """
    report = report or Report()
    if not options.cloud_only:
        _connect_early()
    cloud, described = _provision_cloud(options, report)
    if options.cloud_only:
        after_provision.finish_provision(options, described, report, host_options)
        return described
    running = [i for i in described if instances.summary(i)["state"] == "running"]
    if options.dry_run and not running:
        report.line("host setup: would run every step on the new instance")
        return described
    from labctl import host_tasks  # the host layer (Fabric, paramiko), only when the hosts are set up

    hosts = targets.host_targets(cloud=cloud, running=running, out=report.out)  # just described
    host_tasks.provision_hosts(hosts, host_options, dry_run=options.dry_run)
    after_provision.finish_provision(options, described, report, host_options)
    return described


def _connect_early() -> None:
    """SSH to the instances the last run used starts now, while the cloud part runs (`lab.connect_early`)."""
    from lab import connect_early

    connect_early.start(targets.remembered_host_targets())


# --- status -----------------------------------------------------------------------------------------------


def _key_pair_status(cloud: targets.Cloud, lab: str) -> dict | None:
    pair = keys.describe_key_pair(cloud.ec2, resource_name(lab))
    if pair is None or not is_ours(pair, lab):
        return None
    recorded = lab_state.load_state().get("key_file")
    key_file = recorded or str(keys.key_file_path(lab_state.key_dir(), pair["KeyName"]))
    return {
        "name": pair["KeyName"],
        "type": pair.get("KeyType"),
        "file": key_file,
        "file_exists": Path(key_file).exists(),
    }


def _group_status(cloud: targets.Cloud, lab: str) -> dict | None:
    found = groups.find_groups(cloud.ec2, lab)
    if not found:
        return None
    group = found[0]
    rules = [rule._asdict() for rule in groups.group_rules(group)]
    return {
        "id": group["GroupId"],
        "name": group.get("GroupName"),
        "vpc_id": group.get("VpcId"),
        "rules": rules,
    }


def _not_ours(cloud: targets.Cloud, lab: str) -> list[dict]:
    found = groups.lookalike_results(cloud.ec2, lab) + instances.lookalike_results(cloud.ec2, lab)
    pair = keys.describe_key_pair(cloud.ec2, resource_name(lab))
    if pair is not None and not is_ours(pair, lab):
        found.append(Result("not ours", f"key pair {pair['KeyName']}", "has no labctl tags for this lab"))
    return [{"resource": r.resource, "reason": r.message} for r in found]


def _cloud_status(cloud: targets.Cloud, lab: str) -> dict:
    from labctl import classroom  # class mode's modules only for the tasks that look at a class

    key_pair = _key_pair_status(cloud, lab)
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
        "class": classroom.class_status(cloud, lab),  # class mode: the labs of class `lab`, else None
    }


def _sandbox_status(ref: LabRef) -> dict | None:
    if ref.target != "sandbox":
        return None
    return targets.sandbox_control().status(lab_state.state_dir())


def status_data(
    target: str | None = None,
    region: str | None = None,
    name: str | None = None,
    warn_hours: float | None = None,
) -> dict:
    """The lab's status as a JSON-ready dict with stable keys (see infra/STATUS-JSON.md)."""
    ref = resolve_lab(target, region, name)
    cloud = targets.connect(ref.target, ref.region, start_sandbox=False)
    data: dict = {"target": ref.target, "region": ref.region, "lab": ref.lab}
    data["endpoint"] = cloud.endpoint_url if cloud else None
    data["sandbox"] = _sandbox_status(ref)
    if cloud is None:
        data.update(
            instances=[], security_group=None, key_pair=None, not_ours=[], cost=None, **{"class": None}
        )
        return status_extras.add_warnings(data, warn_hours)
    with aws_errors():
        data.update(_cloud_status(cloud, ref.lab))
        cost_report.add_cost(cloud.ec2, data)
    _record_found(ref, cloud, data)
    return status_extras.add_warnings(data, warn_hours)


def _record_found(ref: LabRef, cloud: targets.Cloud, data: dict) -> None:
    """Rebuild the state cache from what the tags said."""
    group = data["security_group"]
    key_pair = data["key_pair"]
    _record(
        ref,
        cloud,
        instance_ids=[i["id"] for i in data["instances"]],
        security_group_id=group["id"] if group else None,
        key_name=key_pair["name"] if key_pair else None,
        key_file=key_pair["file"] if key_pair else None,
    )


def status_lines(data: dict) -> list[str]:
    """A human-readable rendering of status_data()."""
    from labctl import classroom

    lines = [header("status", data["target"], data["region"], data["lab"])]
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
        lines.append(f"    rule       {groups.Rule(**rule).describe()}")
    pair = data["key_pair"]
    lines.append(f"  key pair     {pair['name']} file {pair['file']}" if pair else "  key pair     none")
    lines += classroom.class_status_lines(data.get("class"))
    lines += cost_report.status_lines(data)
    lines += [f"  not ours     {item['resource']}: {item['reason']}" for item in data["not_ours"]]
    return lines + status_extras.warning_lines(data)


# --- teardown ---------------------------------------------------------------------------------------------


def _teardown_cloud(cloud: targets.Cloud, ref: LabRef, keep_key: bool) -> list[Result]:
    from labctl import classroom

    results = classroom.teardown_class(cloud, ref.lab, keep_key)  # class mode: every student's lab
    results += instances.terminate_instances(cloud.ec2, ref.lab)
    found = groups.find_groups(cloud.ec2, ref.lab)
    results += [groups.delete_group(cloud.ec2, group) for group in found] or [
        Result(ABSENT, "security group", "none of ours")
    ]
    results += keys.delete_key_pair(cloud.ec2, ref.lab, resource_name(ref.lab), lab_state.key_dir(), keep_key)
    results += groups.lookalike_results(cloud.ec2, ref.lab) + instances.lookalike_results(cloud.ec2, ref.lab)
    return results


def _forget(ref: LabRef, cloud: targets.Cloud | None, keep_key: bool) -> None:
    """Leave only which lab this was (and the kept key) in the state cache."""
    previous = lab_state.load_state()
    kept = {k: previous.get(k) for k in ("key_name", "key_file")} if keep_key else {}
    endpoint = cloud.endpoint_url if cloud else None
    lab_state.save_state(dict(target=ref.target, region=ref.region, lab=ref.lab, endpoint=endpoint, **kept))
    pinned_keys.forget_all(lab_state.state_dir())  # the instances are gone


def _sandbox_after_teardown(ref: LabRef, cloud: targets.Cloud | None, report: Report) -> None:
    if ref.target != "sandbox":
        return
    control = targets.sandbox_control()
    if cloud is None:
        orphans = control.cleanup_orphans()
        report.line(f"  sandbox not running; cleaned orphans: {', '.join(orphans) or 'none'}")
    elif control.shutdown_if_idle(lab_state.state_dir()):
        report.line("  sandbox daemon stopped (no instances left)")


def teardown(
    target: str | None = None,
    region: str | None = None,
    name: str | None = None,
    keep_key: bool = False,
    report: Report | None = None,
) -> list[Result]:
    """Remove the lab's instances, security group and key pair (and key file unless `keep_key`)."""
    report = report or Report()
    ref = resolve_lab(target, region, name)
    report.line(header("teardown", ref.target, ref.region, ref.lab))
    cloud = targets.connect(ref.target, ref.region, start_sandbox=False)
    if cloud is not None:
        try:
            with aws_errors():
                report.add(_teardown_cloud(cloud, ref, keep_key))
        except KeyboardInterrupt:
            raise interrupts.teardown_interrupted(cloud.ec2, ref.lab) from None
    _forget(ref, cloud, keep_key)
    _sandbox_after_teardown(ref, cloud, report)
    report.finish(unchanged="none of this lab's resources exist")
    return report.results
