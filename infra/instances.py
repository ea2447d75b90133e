"""Lab instances: found by tags, reused (started when stopped), created only when missing, waited for."""

from __future__ import annotations

import hashlib
from typing import NamedTuple

from .errors import CloudError
from .results import ABSENT, CREATED, DELETED, FOREIGN, OK, STARTED, Result
from .tags import PROJECT_KEY, lab_filters, resource_name, tag_dict, tag_specifications

DEFAULT_INSTANCE_TYPE = "t3.micro"  # free-plan eligible (t2.micro is not), Nitro: console Latest=True
LIVE_STATES = ["pending", "running", "stopping", "stopped"]
NOT_TERMINATED = LIVE_STATES + ["shutting-down"]


class InstanceSpec(NamedTuple):
    """What provision asks for. `count` is how many lab instances should exist (1 for now)."""

    lab: str
    image_id: str
    instance_type: str
    key_name: str
    group_id: str
    count: int = 1
    tags: tuple[tuple[str, str], ...] = ()  # extra tags, e.g. class mode's class and student
    subnet_id: str = ""  # a default subnet that maps public IPs (infra.preflight); "" lets EC2 choose


def _describe(ec2, filters: list[dict]) -> list[dict]:
    paginator = ec2.get_paginator("describe_instances")
    pages = paginator.paginate(Filters=filters)
    instances = [
        i for page in pages for reservation in page["Reservations"] for i in reservation["Instances"]
    ]
    return sorted(instances, key=lambda i: (str(i.get("LaunchTime", "")), i["InstanceId"]))


def find_instances(ec2, lab: str, states: list[str] | None = None) -> list[dict]:
    """Our instances for `lab` in `states` (default: every state that is not terminated)."""
    return _describe(
        ec2, lab_filters(lab) + [{"Name": "instance-state-name", "Values": states or NOT_TERMINATED}]
    )


def find_lookalikes(ec2, lab: str) -> list[dict]:
    """Instances named like ours that lack our project tag: never touched, only reported."""
    filters = [
        {"Name": "tag:Name", "Values": [resource_name(lab)]},
        {"Name": "instance-state-name", "Values": NOT_TERMINATED},
    ]
    return [i for i in _describe(ec2, filters) if PROJECT_KEY not in tag_dict(i)]


def wait_for(ec2, waiter_name: str, instance_ids: list[str], delay: int = 5, max_attempts: int = 120) -> None:
    """Block until the instances reach the waiter's state (boto3 waiter, default up to 10 minutes)."""
    if instance_ids:
        ec2.get_waiter(waiter_name).wait(
            InstanceIds=instance_ids, WaiterConfig={"Delay": delay, "MaxAttempts": max_attempts}
        )


def state_of(instance: dict) -> str:
    return instance["State"]["Name"]


def _start_stopped(ec2, instances: list[dict]) -> list[Result]:
    """Start stopped instances (waiting for stopping ones first); report running ones as ok."""
    stopping = [i["InstanceId"] for i in instances if state_of(i) == "stopping"]
    wait_for(ec2, "instance_stopped", stopping)
    to_start = [i["InstanceId"] for i in instances if state_of(i) in ("stopping", "stopped")]
    if to_start:
        ec2.start_instances(InstanceIds=to_start)
    return [
        Result(STARTED, f"instance {i['InstanceId']}", "was stopped")
        if i["InstanceId"] in to_start
        else Result(OK, f"instance {i['InstanceId']}", state_of(i))
        for i in instances
    ]


FRESH_STATES = ("pending", "running")
MAX_REPLAYS = 5


def client_token(region: str, spec: InstanceSpec, first_index: int, how_many: int, generation: str) -> str:
    """RunInstances' idempotency token for this launch: the same inputs give the same token (64 chars max).

    A crash after RunInstances and an immediate re-run (before DescribeInstances lists the new instance)
    send the same token, and EC2 answers with the first launch instead of making a second instance.
    The inputs: region, lab, the index of the first new instance, everything the launch asks for (a
    changed request gets a new token instead of IdempotentParameterMismatch) and `generation`.
    """
    parts = [region, spec.lab, str(first_index), str(how_many), spec.image_id, spec.instance_type]
    parts += [spec.key_name, spec.group_id, spec.subnet_id, repr(sorted(spec.tags)), generation]
    return "labctl-" + hashlib.sha256("\0".join(parts).encode()).hexdigest()[:48]


def _run(ec2, spec: InstanceSpec, how_many: int, token: str) -> list[dict]:
    placement = {"SubnetId": spec.subnet_id} if spec.subnet_id else {}
    response = ec2.run_instances(
        ImageId=spec.image_id,
        InstanceType=spec.instance_type,
        KeyName=spec.key_name,
        SecurityGroupIds=[spec.group_id],
        MinCount=how_many,
        MaxCount=how_many,
        ClientToken=token,
        InstanceInitiatedShutdownBehavior="stop",  # a shutdown inside (auto-stop) stops, never terminates
        TagSpecifications=tag_specifications("instance", spec.lab, dict(spec.tags))
        + tag_specifications("volume", spec.lab, dict(spec.tags)),
        **placement,
    )
    return response["Instances"]


def _launch(ec2, spec: InstanceSpec, how_many: int, first_index: int = 0) -> list[str]:
    """Launch `how_many` instances with a deterministic ClientToken.

    The token's generation starts as the security group (a torn-down lab gets a new one). When EC2
    answers with instances that are no longer pending or running, the token belonged to an earlier launch
    whose instances have since gone: the next generation names them, deterministically again.
    """
    region = ec2.meta.region_name or ""
    generation = spec.group_id
    for _ in range(MAX_REPLAYS):
        launched = _run(ec2, spec, how_many, client_token(region, spec, first_index, how_many, generation))
        if all(state_of(i) in FRESH_STATES for i in launched):
            return [instance["InstanceId"] for instance in launched]
        generation += "/" + ",".join(sorted(i["InstanceId"] for i in launched))
    raise CloudError(f"EC2 kept answering lab {spec.lab}'s launch with instances that are gone: re-run later")


def plan_instances(ec2, spec: InstanceSpec, existing: list[dict] | None = None) -> list[Result]:
    """What ensure_instances would do, without doing it (`existing`: the lab's live instances, if known)."""
    existing = find_instances(ec2, spec.lab, LIVE_STATES) if existing is None else existing
    results = [
        Result(STARTED, f"instance {i['InstanceId']}", "is stopped", True)
        if state_of(i) in ("stopping", "stopped")
        else Result(OK, f"instance {i['InstanceId']}", state_of(i))
        for i in existing
    ]
    missing = spec.count - len(existing)
    if missing > 0:
        results.append(
            Result(CREATED, f"{missing} instance(s)", f"{spec.instance_type} from {spec.image_id}", True)
        )
    return results


def ensure_instances(
    ec2, spec: InstanceSpec, existing: list[dict] | None = None
) -> tuple[list[Result], list[dict]]:
    """Reuse our instances (start stopped ones), launch only the missing ones, wait until all run.

    `existing`: the lab's live instances as just described (found here when None).
    """
    existing = find_instances(ec2, spec.lab, LIVE_STATES) if existing is None else existing
    results = _start_stopped(ec2, existing)
    missing = spec.count - len(existing)
    new_ids = _launch(ec2, spec, missing, len(existing)) if missing > 0 else []
    results += [
        Result(CREATED, f"instance {iid}", f"{spec.instance_type} from {spec.image_id}") for iid in new_ids
    ]
    if not new_ids and all(state_of(i) == "running" for i in existing):
        return results, existing  # a re-run: nothing to wait for, and just described
    ids = [i["InstanceId"] for i in existing] + new_ids
    wait_for(ec2, "instance_running", ids)
    return results, describe_by_ids(ec2, ids)


def describe_by_ids(ec2, instance_ids: list[str]) -> list[dict]:
    if not instance_ids:
        return []
    return _describe(ec2, [{"Name": "instance-id", "Values": instance_ids}])


def terminate_instances(ec2, lab: str) -> list[Result]:
    """Terminate our instances for `lab` and wait until they are gone."""
    ids = [i["InstanceId"] for i in find_instances(ec2, lab)]
    if not ids:
        return [Result(ABSENT, "instances", "none of ours")]
    ec2.terminate_instances(InstanceIds=ids)
    wait_for(ec2, "instance_terminated", ids)
    return [Result(DELETED, f"instance {iid}", "terminated") for iid in ids]


def lookalike_results(ec2, lab: str) -> list[Result]:
    return [
        Result(FOREIGN, f"instance {i['InstanceId']}", f"named {resource_name(lab)} without labctl tags")
        for i in find_lookalikes(ec2, lab)
    ]


def summary(instance: dict) -> dict:
    """The stable, JSON-ready description of one instance."""
    return {
        "id": instance["InstanceId"],
        "state": state_of(instance),
        "instance_type": instance.get("InstanceType"),
        "image_id": instance.get("ImageId"),
        "public_ip": instance.get("PublicIpAddress"),
        "public_dns": instance.get("PublicDnsName") or None,
        "private_ip": instance.get("PrivateIpAddress"),
        "key_name": instance.get("KeyName"),
    }
