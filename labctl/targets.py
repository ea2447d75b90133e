"""Which cloud the tasks talk to: real AWS (boto3's default chain) or the offline sandbox (moto daemon).

Also builds the host layer's `HostTarget`s from the described instances.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TextIO

from infra import console, instances, pinned_keys, session, ssh_source
from infra.errors import aws_errors
from lab.target import HostTarget
from labcore.net import check_connectable, is_aws_endpoint, is_sandbox_address
from labctl.errors import LabError
from labctl.hostkeys import parse_host_keys
from labctl.state import LabState, state_dir

TARGETS = ("aws", "sandbox")
DEFAULT_LAB = "netlab"


@dataclass(frozen=True)
class Cloud:
    """An EC2 API to talk to. `endpoint_url` is None for real AWS, the emulator's URL otherwise."""

    target: str
    region: str
    endpoint_url: str | None
    ec2: Any
    ssm: Any | None = None
    aws_session: Any | None = None  # what ec2 was built from (not the sandbox's): builds the quotas client

    def quotas(self) -> Any | None:
        """A Service Quotas client built like `ec2` (None for the sandbox)."""
        return session.client(self.aws_session, "service-quotas") if self.aws_session else None

    @property
    def real_aws(self) -> bool:
        return self.endpoint_url is None


def choose_target(requested: str | None = None, recorded: str | None = None) -> str:
    """--target, else $LAB_TARGET, else the recorded target, else aws with credentials / sandbox without."""
    target = requested or os.environ.get("LAB_TARGET") or recorded
    if not target:
        target = "aws" if session.has_local_credentials() else "sandbox"  # no network (no IMDS) for a guess
    if target not in TARGETS:
        raise LabError(f"unknown target {target!r}: use --target aws or --target sandbox")
    return target


def sandbox_control():
    """The sandbox engineer's `sandbox.control` module, imported only when the sandbox is used."""
    try:
        from sandbox import control
    except ImportError:
        raise LabError("sandbox target not available yet: use --target aws") from None
    return control


def connect(target: str, region: str, start_sandbox: bool = True) -> Cloud | None:
    """A Cloud for `target`; None when the sandbox is not running and `start_sandbox` is False.

    A task connects once and hands the Cloud (and its clients) down to every step that needs it.
    """
    if target == "sandbox":
        return _connect_sandbox(region, start_sandbox)
    return _connect_aws(region)


def _connect_aws(region: str) -> Cloud:
    aws = session.aws_session(region)
    if not session.has_credentials(aws):
        raise LabError(
            "no AWS credentials found: set AWS_PROFILE or run `aws configure`, or use --target sandbox"
        )
    with aws_errors():
        ec2 = session.client(aws, "ec2")
    endpoint = ec2.meta.endpoint_url
    session.refuse_ignored_endpoint(endpoint)  # issue 14: AWS_ENDPOINT_URL set, yet EC2 would go to AWS
    if is_aws_endpoint(endpoint):
        return Cloud("aws", region, None, ec2, session.client(aws, "ssm"), aws)
    return Cloud("aws", region, endpoint, ec2, None, aws)


def _connect_sandbox(region: str, start: bool) -> Cloud | None:
    control = sandbox_control()
    directory = state_dir()
    endpoint = control.ensure_running(directory) if start else control.running_endpoint(directory)
    if not endpoint:
        return None
    return _sandbox_cloud(region, endpoint)


def sandbox_running(target: str) -> bool:
    """True when `target` is the sandbox and its daemon for this state dir already runs."""
    return target == "sandbox" and bool(sandbox_control().running_endpoint(state_dir()))


def stop_unused_sandbox(target: str, was_running: bool) -> None:
    """After a run refused before creating anything: stop the sandbox daemon it started, if it holds no
    instance (a daemon that ran before, or holds a lab, is left alone)."""
    if target == "sandbox" and not was_running:
        sandbox_control().shutdown_if_idle(state_dir())


def _sandbox_cloud(region: str, endpoint: str) -> Cloud:
    aws = session.aws_session(region, sandbox=True)
    return Cloud("sandbox", region, endpoint, session.client(aws, "ec2", endpoint))


def host_keys_of(cloud: Cloud, instance: dict, out: TextIO | None = None) -> tuple[tuple[str, str], ...]:
    """The instance's pinned host keys: remembered for its id (`infra.pinned_keys`), else read from its
    console (`infra.console.wait_for_host_keys`, progress on `out`). Kept across stops and starts: cloud-init
    prints the keys once per instance, so a later boot's console has none."""
    remembered = pinned_keys.remembered_keys(state_dir(), instance)
    keys = remembered or console.wait_for_host_keys(cloud.ec2, instance, parse_host_keys, out=out)
    pinned_keys.remember_keys(state_dir(), instance, keys)  # also its current address
    return keys


def forget_host_keys(instance_id: str | None = None) -> str:
    """`fab forget-host-keys`: drop the pinned keys of `instance_id` (default: the only pinned one).

    For after a HostKeyMismatch once the user checked the console shows the new key (a replaced root volume):
    the next task reads the keys from the console again.
    """
    pinned = pinned_keys.pinned_ids(state_dir())
    if instance_id is None:
        if len(pinned) != 1:
            raise LabError(
                "no pinned host keys to forget"
                if not pinned
                else f"host keys are pinned for {len(pinned)} instances: pick one with --instance "
                f"({', '.join(pinned)})"
            )
        (instance_id,) = pinned
    if not pinned_keys.forget_keys(state_dir(), instance_id):
        raise LabError(
            f"no pinned host keys for {instance_id}: nothing to forget ({', '.join(pinned) or 'none'})"
        )
    return (
        f"forgot the pinned host keys of {instance_id}: the next task pins the keys its console shows "
        "(cloud-init prints them on an instance's first boot only, or after its root volume was replaced)"
    )


def remembered_host_targets(state: LabState | None = None) -> list[HostTarget]:
    """The recorded lab's hosts as the last run used them, without any API call: only a guess.

    `lab.connect_early` connects to them while the cloud check runs; the task uses such a connection
    only if `host_targets()` then gives exactly the same target. Addresses still pass the emulator check.
    """
    state = LabState.load() if state is None else state
    if state.is_class or state.target not in TARGETS:
        return []
    guesses = []
    for instance_id in state.instance_ids or []:
        seen = pinned_keys.last_seen(state_dir(), instance_id)
        if seen is None:
            continue
        address, keys = seen
        if not _may_connect(address, state):
            continue
        guesses.append(
            HostTarget(
                name=instance_id,
                address=address,
                key_file=state.key_file,
                host_keys=keys,
                target=state.target,
                instance_id=instance_id,
            )
        )
    return guesses


def _may_connect(address: str, state: LabState) -> bool:
    """The emulator address check on a remembered address (a sandbox lab: sandbox addresses only)."""
    if state.target == "sandbox" and not is_sandbox_address(address):
        return False
    try:
        check_connectable(address, state.endpoint)
    except LabError:
        return False
    return True


def host_target(cloud: Cloud, instance: dict, key_file: str | None, out: TextIO | None = None) -> HostTarget:
    """The HostTarget of one running instance; its address must pass the emulator safety check."""
    address = instance.get("PublicIpAddress")
    if not address:
        raise LabError(
            f"instance {instance['InstanceId']} has no public IP address: check its subnet, then re-run"
        )
    check_connectable(address, cloud.endpoint_url)
    return HostTarget(
        name=instance["InstanceId"],
        address=address,
        key_file=key_file,
        host_keys=host_keys_of(cloud, instance, out),
        target=cloud.target,
        instance_id=instance["InstanceId"],
    )


def host_targets(
    state: LabState | None = None, cloud: Cloud | None = None, out: TextIO | None = None
) -> list[HostTarget]:
    """HostTargets for the recorded lab's running instances, found by tags (the host tasks' hosts).

    `out`: where a wait for the host keys shows its progress (None: nowhere).
    """
    state = LabState.load() if state is None else state
    if not state.lab or not state.region:
        raise LabError("no lab recorded in the state directory: run `fab provision` first")
    if cloud is None:
        cloud = connect(choose_target(recorded=state.target), state.region, start_sandbox=False)
    if cloud is None:
        raise LabError("the sandbox is not running: run `fab provision --target sandbox` first")
    with aws_errors():
        running = instances.find_instances(cloud.ec2, state.lab, ["running"])
    if not running and state.is_class:
        raise LabError(
            f"lab {state.lab!r} is a class (one lab per student): re-run `fab provision --count N` or "
            "`--students FILE` (with --all to redo passed students) to deploy and verify every student"
        )
    return lab_host_targets(cloud, state.lab, running, state.key_file, out)


def lab_host_targets(
    cloud: Cloud, lab: str, running: list[dict], key_file: str | None, out: TextIO | None = None
) -> list[HostTarget]:
    """HostTargets for a lab's `running` instances (as just described) with the lab's private `key_file`;
    a wait for host keys shows its progress on `out`."""
    if not running:
        raise LabError(f"lab {lab!r} has no running instance: run `fab provision` first")
    if key_file and not Path(key_file).exists():
        raise LabError(
            f"key file {key_file} is missing: run `fab teardown` then `fab provision` to get a new key"
        )
    return [host_target(cloud, instance, key_file, out) for instance in running]


def ssh_timeout_hint(target: HostTarget, message: str) -> str:
    """After an SSH timeout to an AWS instance: whether the operator's public IP left its group's rule."""
    if "connection timed out" not in message or target.target != "aws" or not target.instance_id:
        return ""
    region = LabState.load().region
    try:
        cloud = connect("aws", region, start_sandbox=False) if region else None
    except LabError:
        return ""  # the timeout line stands on its own
    if cloud is None or not cloud.real_aws:
        return ""  # the IP lookup is for real AWS only
    return ssh_source.ssh_source_hint(cloud.ec2, target.instance_id, target.port)
