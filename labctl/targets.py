"""Which cloud the tasks talk to: real AWS (boto3's default chain) or the offline sandbox (moto daemon).

Also builds the host layer's `HostTarget`s from the described instances.
"""

from __future__ import annotations

import os
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from infra import console, instances, pinned_keys, session
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

    @property
    def real_aws(self) -> bool:
        return self.endpoint_url is None


def choose_target(requested: str | None = None, recorded: str | None = None) -> str:
    """--target, else $LAB_TARGET, else the recorded target, else aws with credentials / sandbox without."""
    target = requested or os.environ.get("LAB_TARGET") or recorded
    if not target:
        target = "aws" if session.has_credentials() else "sandbox"
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
    if is_aws_endpoint(endpoint):
        return Cloud("aws", region, None, ec2, session.client(aws, "ssm"))
    return Cloud("aws", region, endpoint, ec2)


def _connect_sandbox(region: str, start: bool) -> Cloud | None:
    control = sandbox_control()
    directory = state_dir()
    endpoint = control.ensure_running(directory) if start else control.running_endpoint(directory)
    if not endpoint:
        return None
    return _sandbox_cloud(region, endpoint)


def _sandbox_cloud(region: str, endpoint: str) -> Cloud:
    aws = session.aws_session(region, sandbox=True)
    return Cloud("sandbox", region, endpoint, session.client(aws, "ec2", endpoint))


HOST_KEY_TIMEOUT = 600.0


def _pinned_host_keys(cloud: Cloud, instance_id: str) -> tuple[tuple[str, str], ...]:
    """The host keys cloud-init printed on the console, polled until they appear (EC2 lags minutes).

    Never falls back to trusting whatever key the host presents.
    """
    timeout = HOST_KEY_TIMEOUT
    deadline = time.monotonic() + timeout
    delay = 0.2
    while True:
        with aws_errors():
            keys = parse_host_keys(console.console_output(cloud.ec2, instance_id))
        if keys:
            return keys
        if time.monotonic() + delay > deadline:
            raise LabError(
                f"instance {instance_id} has printed no SSH host keys on its console after {timeout:.0f} s, "
                "so its host key cannot be pinned; wait a minute and re-run (or check the instance boots)"
            )
        time.sleep(delay)
        delay = min(delay * 2, 10.0)


def host_keys_of(cloud: Cloud, instance: dict) -> tuple[tuple[str, str], ...]:
    """The instance's pinned host keys: remembered for this boot (`infra.pinned_keys`), else its console."""
    remembered = pinned_keys.remembered_keys(state_dir(), instance)
    if remembered:
        return remembered
    keys = _pinned_host_keys(cloud, instance["InstanceId"])
    pinned_keys.remember_keys(state_dir(), instance, keys)
    return keys


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


def host_target(cloud: Cloud, instance: dict, key_file: str | None) -> HostTarget:
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
        host_keys=host_keys_of(cloud, instance),
        target=cloud.target,
        instance_id=instance["InstanceId"],
    )


def host_targets(state: LabState | None = None, cloud: Cloud | None = None) -> list[HostTarget]:
    """HostTargets for the recorded lab's running instances, found by tags (the host tasks' hosts)."""
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
    return lab_host_targets(cloud, state.lab, running, state.key_file)


def lab_host_targets(cloud: Cloud, lab: str, running: list[dict], key_file: str | None) -> list[HostTarget]:
    """HostTargets for a lab's `running` instances (as just described) with the lab's private `key_file`."""
    if not running:
        raise LabError(f"lab {lab!r} has no running instance: run `fab provision` first")
    if key_file and not Path(key_file).exists():
        raise LabError(
            f"key file {key_file} is missing: run `fab teardown` then `fab provision` to get a new key"
        )
    return [host_target(cloud, instance, key_file) for instance in running]
