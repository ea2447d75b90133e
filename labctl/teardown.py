"""`fab teardown`: the lab's instances, security group and key pair (and a class's every student lab)."""

from __future__ import annotations

from infra import instances, keys, pinned_keys, security_group
from infra.errors import aws_errors
from infra.results import ABSENT, Result
from infra.tags import resource_name
from labctl import interrupts, targets
from labctl.classmode.status import teardown_class
from labctl.labref import LabRef, resolve_lab
from labctl.output import Report, header
from labctl.state import LabState, key_dir, state_dir


def _teardown_cloud(cloud: targets.Cloud, ref: LabRef, keep_key: bool) -> list[Result]:
    results = teardown_class(cloud, ref.lab, keep_key)  # class mode: every student's lab
    results += instances.terminate_instances(cloud.ec2, ref.lab)
    found = security_group.find_groups(cloud.ec2, ref.lab)
    results += [security_group.delete_group(cloud.ec2, group) for group in found] or [
        Result(ABSENT, "security group", "none of ours")
    ]
    results += keys.delete_key_pair(cloud.ec2, ref.lab, resource_name(ref.lab), key_dir(), keep_key)
    results += security_group.lookalike_results(cloud.ec2, ref.lab)
    results += instances.lookalike_results(cloud.ec2, ref.lab)
    return results


def _forget(ref: LabRef, recorded: LabState, cloud: targets.Cloud | None, keep_key: bool) -> None:
    """Leave only which lab this was (and the kept key) in the state cache."""
    endpoint = cloud.endpoint_url if cloud else None
    kept = LabState(ref.target, ref.region, ref.lab, endpoint)
    if keep_key:
        kept.key_name, kept.key_file = recorded.key_name, recorded.key_file
    kept.save()
    pinned_keys.forget_all(state_dir())  # the instances are gone


def _saved_sandbox(ref: LabRef) -> bool:
    """A sandbox whose daemon died keeps its instances and key pairs in its saved state: start it again so
    they are removed as on a running one (else the key pair would outlive its removed key file)."""
    return ref.target == "sandbox" and targets.sandbox_control().has_saved_state(state_dir())


def _sandbox_after_teardown(ref: LabRef, cloud: targets.Cloud | None, report: Report) -> None:
    if ref.target != "sandbox":
        return
    control = targets.sandbox_control()
    if cloud is None:
        orphans = control.cleanup_orphans()
        report.line(f"  sandbox not running; cleaned orphans: {', '.join(orphans) or 'none'}")
    elif control.shutdown_if_idle(state_dir()):
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
    recorded = LabState.load()
    ref = resolve_lab(target, region, name, recorded)
    report.line(header("teardown", ref.target, ref.region, ref.lab))
    cloud = targets.connect(ref.target, ref.region, start_sandbox=_saved_sandbox(ref))
    if cloud is not None:
        try:
            with aws_errors():
                report.add(_teardown_cloud(cloud, ref, keep_key))
        except KeyboardInterrupt:
            raise interrupts.teardown_interrupted(cloud.ec2, ref.lab) from None
    _forget(ref, recorded, cloud, keep_key)
    _sandbox_after_teardown(ref, cloud, report)
    report.finish(unchanged="none of this lab's resources exist")
    return report.results
