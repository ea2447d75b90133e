"""`fab provision` and `fab plan` for one lab: the cloud resources, then the host setup (and auto-stop).

The lab is resolved once; the Cloud, the described instances and the private key file the cloud part found
are handed to the host steps and to auto-stop, which run over one SSH connection per host. Tags on the
resources are the truth; the state file (`labctl.state.LabState`) caches what was found and is rewritten
as each resource is made.
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from pathlib import Path
from typing import TYPE_CHECKING

from infra import ami, cidr, instances, keys, operator_ip, preflight, security_group
from infra.errors import aws_errors
from infra.results import CREATED, Result
from infra.tags import resource_name
from labctl import connect_help, cost_report, interrupts, targets
from labctl.errors import LabError
from labctl.labref import LabRef, resolve_lab
from labctl.options import ProvisionOptions
from labctl.output import Report, header
from labctl.single import auto_stop
from labctl.state import LabState, key_dir

if TYPE_CHECKING:
    from lab.provision import HostOptions


@dataclass(frozen=True)
class CloudPart:
    """What the cloud part found or made, handed down to the host steps and auto-stop."""

    ref: LabRef
    cloud: targets.Cloud | None  # None: a dry run without a running sandbox
    described: list[dict]
    key_file: str | None

    @property
    def running(self) -> list[dict]:
        return [i for i in self.described if instances.state_of(i) == "running"]


# --- the cloud part ---------------------------------------------------------------------------------------


def _source_cidr(options: ProvisionOptions, cloud: targets.Cloud, report: Report) -> str:
    source = cidr.resolve_source_cidr(
        options.ssh_cidr, options.open_world, cloud.real_aws, lambda: operator_ip.operator_public_ip()
    )
    if source.warning:
        report.warn(source.warning)
    return source.cidr


def _ensure_key(
    state: LabState, cloud: targets.Cloud, options: ProvisionOptions, report: Report
) -> tuple[str, str | None]:
    """The key pair step; returns the key pair name and the private key file (None when unknown)."""
    lab = state.lab or ""
    key_name = resource_name(lab)
    public_key = Path(options.public_key).expanduser() if options.public_key else None
    result, found = keys.ensure_key_pair(cloud.ec2, lab, key_name, key_dir(), public_key, options.dry_run)
    report.add([result])
    key_file = str(found) if found else None
    if not options.dry_run:
        state.key_name, state.key_file = key_name, key_file
        state.save()
    return key_name, key_file


def _ensure_group(
    state: LabState, cloud: targets.Cloud, vpc_id: str, source: str, dry_run: bool, report: Report
) -> str | None:
    """The security group step; returns the group id (None when a dry run would create it)."""
    results, group_id = security_group.ensure_security_group(cloud.ec2, state.lab, vpc_id, source, dry_run)
    report.add(results)
    if not dry_run:
        state.security_group_id, state.source_cidr = group_id, source
        state.save()
    return group_id


def _ensure_instances(
    state: LabState, cloud: targets.Cloud, spec: instances.InstanceSpec, existing: list[dict], report: Report
) -> list[dict]:
    """The instance step (`existing`: the lab's live instances); returns the described instances."""
    results, described = instances.ensure_instances(cloud.ec2, spec, existing)
    report.add(results)
    state.instance_ids, state.image_id = [i["InstanceId"] for i in described], spec.image_id
    state.save()
    return described


def _cloud_steps(
    ref: LabRef, state: LabState, cloud: targets.Cloud, options: ProvisionOptions, report: Report
) -> tuple[list[dict], str | None]:
    """Inputs first (nothing is created if one fails), then key pair, security group, instances.

    The launch checks (type offered here, a public subnet) run whenever an instance will be launched,
    found by the lab's tags, so a bad --instance-type never leaves a key pair and a group behind.

    Returns the described instances and the private key file.
    """
    source = _source_cidr(options, cloud, report)
    image = ami.find_ami(cloud.ec2, cloud.ssm, options.release, options.ami)
    report.line(f"  image        {image['ImageId']} ({image.get('Name', 'unnamed')})")
    vpc_id = security_group.default_vpc_id(cloud.ec2, ref.region)
    existing = instances.find_instances(cloud.ec2, ref.lab, instances.LIVE_STATES)
    launches = len(existing) < options.count  # the tags say, not the state file (it may be stale)
    launch = preflight.launch_checks(  # issue 14: type, subnet and image checked before the first creation
        cloud.ec2, ref.region, vpc_id, options.instance_type, image, options.release, launches
    )
    for warning in launch.warnings:
        report.warn(warning)
    key_name, key_file = _ensure_key(state, cloud, options, report)
    group_id = _ensure_group(state, cloud, vpc_id, source, options.dry_run, report)
    spec = instances.InstanceSpec(
        ref.lab, image["ImageId"], options.instance_type, key_name, group_id or "", options.count
    )._replace(subnet_id=launch.subnet_id)
    if options.dry_run:
        report.add(instances.plan_instances(cloud.ec2, spec, existing))
        if cloud.target == "aws":  # the sandbox costs nothing
            report.line(cost_report.plan_line(options.instance_type, image, ref.region, options.count))
        return [i for i in existing if instances.state_of(i) == "running"], key_file
    return _ensure_instances(state, cloud, spec, existing, report), key_file


def _report_instances(described: list[dict], report: Report) -> None:
    for instance in described:
        info = instances.summary(instance)
        report.line(
            f"instance {info['id']}: {info['state']}, public IP {info['public_ip'] or '-'}, "
            f"public DNS {info['public_dns'] or '-'}"
        )


def print_connection_help(described: list[dict], key_file: str | None, report: Report) -> None:
    """The `fab ssh` / `ssh -i` / MobaXterm lines for every running instance (before the summary line)."""
    running = [instances.summary(i) for i in described if instances.state_of(i) == "running"]
    for info in running:
        for line in connect_help.connection_lines(info["id"], info["public_ip"], key_file, len(running) > 1):
            report.line(line)


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


def _provision_cloud(ref: LabRef, recorded: LabState, options: ProvisionOptions, report: Report) -> CloudPart:
    """Create or converge the lab's cloud resources (or only plan them with `dry_run`)."""
    report.line(header("plan" if options.dry_run else "provision", ref.target, ref.region, ref.lab))
    cloud = None
    key_file = None
    sandbox_was_running = options.dry_run or targets.sandbox_running(ref.target)
    try:
        cloud = targets.connect(ref.target, ref.region, start_sandbox=not options.dry_run)
        if cloud is None:
            _plan_without_sandbox(ref, report)
            described: list[dict] = []
        else:
            state = recorded.for_lab(ref.target, ref.region, ref.lab, cloud.endpoint_url)
            with aws_errors():
                described, key_file = _cloud_steps(ref, state, cloud, options, report)
    except KeyboardInterrupt:
        raise interrupts.provision_interrupted(report, cloud and cloud.ec2, ref.lab) from None
    except LabError:  # e.g. a type the sandbox's EC2 does not know: refused before anything was created
        if cloud is not None and not any(r.is_change for r in report.results):
            targets.stop_unused_sandbox(ref.target, sandbox_was_running)
        raise
    _report_instances(described, report)
    if not options.dry_run:
        print_connection_help(described, key_file, report)
    report.finish(planned=options.dry_run)
    return CloudPart(ref, cloud, described, key_file)


def provision_cloud(options: ProvisionOptions, report: Report | None = None) -> list[dict]:
    """Create or converge the lab's cloud resources (or only plan them with `dry_run`); returns instances."""
    recorded = LabState.load()
    ref = resolve_lab(options.target, options.region, options.name, recorded)
    return _provision_cloud(ref, recorded, options, report or Report()).described


def plan(options: ProvisionOptions, report: Report | None = None) -> list[Result]:
    """What provision would create, change or start; changes nothing (state.json included)."""
    report = report or Report()
    provision_cloud(replace(options, dry_run=True), report)
    return report.results


# --- provision: the cloud part, then the host part --------------------------------------------------------


def provision(
    options: ProvisionOptions,
    report: Report | None = None,
    host_options: HostOptions | None = None,
) -> list[dict]:
    """`fab provision`: the cloud resources, then (unless --cloud-only) the host setup steps.

    With --dry-run the cloud part is only planned and the host steps run in dry-run mode on instances that
    already run (a new instance gets every step). With --auto-stop the cloud half (tags) follows the cloud
    part and the host half runs after the host setup over the same SSH connection.
    """
    report = report or Report()
    recorded = LabState.load()
    ref = resolve_lab(options.target, options.region, options.name, recorded)
    if not options.cloud_only:
        _connect_early(recorded)
    part = _provision_cloud(ref, recorded, options, report)
    deadlines = None
    if options.auto_stop is not None:
        deadlines = auto_stop.cloud_half_of_lab(
            part.cloud, part.running, options.auto_stop, options.dry_run, report
        )
    if options.cloud_only:
        if deadlines:
            report.line("  auto-stop: --cloud-only, so the host was not touched (only the tags)")
        return part.described
    if options.dry_run and not part.running:
        report.line("host setup: would run every step on the new instance")
        return part.described
    from labctl import host_tasks  # the host layer (Fabric, paramiko), only when the hosts are set up

    assert part.cloud is not None  # instances run, so the cloud answered
    hosts = targets.lab_host_targets(part.cloud, ref.lab, part.running, part.key_file, out=report.out)
    after = auto_stop.host_job(deadlines) if deadlines else None
    host_tasks.provision_hosts(hosts, host_options, dry_run=options.dry_run, after=after)
    return part.described


def _connect_early(recorded: LabState) -> None:
    """SSH to the instances the last run used starts now, while the cloud part runs (`lab.connect_early`)."""
    from lab import connect_early

    connect_early.start(targets.remembered_host_targets(recorded))
