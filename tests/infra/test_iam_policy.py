"""iam/labctl-policy.json is all labctl needs, and each action in it is needed: proven on moto's server.

moto's server enforces IAM once `INITIAL_NO_AUTH_ACTION_COUNT` unauthenticated calls were made (moto reads
the variable when `moto.settings` is imported, so it is set in the server's own process). The first three
calls make an admin user; the admin makes one user holding the policy and one user per action holding the
policy minus that action. Every user runs the real `fab` against the server (`--cloud-only`: moto's
invented addresses are never connected to).

moto checks only the action: it matches every request against the resource `*` and treats a condition it
cannot evaluate as a deny. So the users hold the policy with each statement's Resource set to `*` and its
Condition dropped (`moto_document`); the conditions themselves, which only real AWS evaluates, are checked
here for their shape (`test_mutating_actions_are_scoped_to_our_tags`) and documented in iam/README.md.
"""

from __future__ import annotations

import functools
import io
import json
import os
import re
import subprocess
import sys
from collections.abc import Iterator
from concurrent.futures import Future, ThreadPoolExecutor, wait
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import pytest

from infra.autostop import AUTO_STOP_AT_KEY, AUTO_STOP_HOURS_KEY
from infra.tags import PROJECT_KEY, PROJECT_VALUE
from labctl.options import ProvisionOptions
from labctl.single import provisioning
from tests.support.fab import free_port, isolated_fab_env, moto_server_process

REPO = Path(__file__).resolve().parents[2]
FAB = Path(sys.executable).with_name("fab")
POLICY_FILE = REPO / "iam" / "labctl-policy.json"
REGION = "ap-northeast-2"
NO_AUTH_CALLS = 3  # CreateUser, PutUserPolicy, CreateAccessKey for the admin; everything after is checked

# Read-only calls the preflight checks (another branch) add; listed in the policy before they are merged.
PREFLIGHT = {
    "ec2:DescribeInstanceTypes",
    "ec2:DescribeInstanceTypeOfferings",
    "ec2:DescribeSubnets",
    "servicequotas:GetServiceQuota",
}

SERVER = """
import sys
from pathlib import Path
sys.path.insert(0, sys.argv[1])
from sandbox import moto_images
moto_images.install(Path(sys.argv[2]))
from moto import settings
from moto.server import ThreadedMotoServer
assert settings.INITIAL_NO_AUTH_ACTION_COUNT == int(sys.argv[4]), settings.INITIAL_NO_AUTH_ACTION_COUNT
server = ThreadedMotoServer(ip_address="127.0.0.1", port=int(sys.argv[3]), verbose=False)
server.start()
print("ready", flush=True)
sys.stdin.read()
server.stop()
"""

pytestmark = pytest.mark.slow


def load_policy() -> dict:
    return json.loads(POLICY_FILE.read_text())


def _listed(value: str | list[str]) -> list[str]:
    return [value] if isinstance(value, str) else list(value)


def policy_actions(policy: dict) -> set[str]:
    return {action for statement in policy["Statement"] for action in _listed(statement["Action"])}


def moto_document(policy: dict, without: str | None = None) -> str:
    """The policy as moto can evaluate it (Resource `*`, no Condition), minus the action `without`."""
    statements = []
    for statement in policy["Statement"]:
        actions = [a for a in _listed(statement["Action"]) if a != without]
        if actions:
            statements.append({"Effect": statement["Effect"], "Action": actions, "Resource": "*"})
    return json.dumps({"Version": policy["Version"], "Statement": statements})


# --- which AWS operations labctl's code calls -------------------------------------------------------------

SERVICES = {"ec2": "ec2", "ssm": "ssm", "service-quotas": "servicequotas"}


@functools.lru_cache(maxsize=1)
def called_operations() -> frozenset[str]:
    """`service:Operation` for every client method, paginator and waiter named in infra/, labctl/, fabfile."""
    import botocore.session
    from botocore import xform_name

    session = botocore.session.get_session()
    by_method = {}
    for service, prefix in SERVICES.items():
        for operation in session.get_service_model(service).operation_names:
            by_method[xform_name(operation)] = f"{prefix}:{operation}"
    sources = [*REPO.glob("infra/**/*.py"), *REPO.glob("labctl/**/*.py"), REPO / "fabfile.py"]
    found = set()
    for path in sources:
        text = path.read_text()
        names = re.findall(r"\.([a-z][a-z0-9_]*)\(", text)
        names += re.findall(r"get_paginator\(\s*\"([a-z_]+)\"", text)
        found |= {by_method[name] for name in names if name in by_method}
        if "get_waiter(" in text:
            found.add("ec2:DescribeInstances")  # instance_running/stopped/terminated poll DescribeInstances
    return frozenset(found)


def test_the_policy_allows_exactly_what_labctl_calls():
    allowed = policy_actions(load_policy())
    called = called_operations()
    assert called - allowed == set(), "labctl calls these, the policy does not allow them"
    assert allowed - called - PREFLIGHT == set(), "the policy allows these, labctl never calls them"
    assert "ec2:StopInstances" not in allowed  # auto-stop is a shutdown inside the instance, not an API call


def test_mutating_actions_are_scoped_to_our_tags():
    """The conditions real AWS evaluates (moto does not): our project tag, tag-on-create, Canonical's SSM."""
    policy = load_policy()
    ours = {"StringEquals": {f"aws:ResourceTag/{PROJECT_KEY}": PROJECT_VALUE}}
    tagged_at_create = {"StringEquals": {f"aws:RequestTag/{PROJECT_KEY}": PROJECT_VALUE}}
    on_existing = {
        "ec2:StartInstances",
        "ec2:TerminateInstances",
        "ec2:ModifyInstanceAttribute",
        "ec2:GetConsoleOutput",
        "ec2:AuthorizeSecurityGroupIngress",
        "ec2:RevokeSecurityGroupIngress",
        "ec2:DeleteSecurityGroup",
        "ec2:DeleteKeyPair",
    }
    for statement in policy["Statement"]:
        actions = set(_listed(statement["Action"]))
        resources = _listed(statement["Resource"])
        assert statement["Effect"] == "Allow"
        assert not any(a.endswith("*") for a in actions), "no wildcard actions"
        if actions & on_existing:
            assert statement["Condition"] == ours, statement["Sid"]
            assert "*" not in resources
        if resources == ["*"]:
            assert all(a.split(":")[1].startswith("Describe") for a in actions), statement["Sid"]
        if "ec2:CreateTags" in actions:
            condition = statement["Condition"]
            if "ec2:CreateAction" in condition.get("StringEquals", {}):
                assert sorted(condition["StringEquals"]["ec2:CreateAction"]) == sorted(
                    ["RunInstances", "CreateSecurityGroup", "CreateKeyPair", "ImportKeyPair"]
                )
            else:
                assert condition["StringEquals"] == ours["StringEquals"]
                keys = condition["ForAllValues:StringEquals"]["aws:TagKeys"]
                assert sorted(keys) == sorted([AUTO_STOP_AT_KEY, AUTO_STOP_HOURS_KEY])
        if "ec2:DeleteTags" in actions:
            assert statement["Condition"]["StringEquals"] == ours["StringEquals"]
        if actions & {"ec2:CreateKeyPair", "ec2:ImportKeyPair"}:
            assert statement["Condition"] == tagged_at_create
        if "ssm:GetParameter" in actions:
            assert resources == ["arn:aws:ssm:*::parameter/aws/service/canonical/*"]
    launches = [s for s in policy["Statement"] if "ec2:RunInstances" in _listed(s["Action"])]
    tagged = [s for s in launches if s.get("Condition") == tagged_at_create]
    assert sorted(_listed(tagged[0]["Resource"])) == [
        "arn:aws:ec2:*:*:instance/*",
        "arn:aws:ec2:*:*:volume/*",
    ]


# --- the moto server with IAM enforced, and its users -----------------------------------------------------


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    """moto's server enforcing IAM after NO_AUTH_CALLS calls; stopped (by its PID) after the module."""
    amis = tmp_path_factory.mktemp("amis") / "amis.json"
    env = isolated_fab_env(amis.parent, INITIAL_NO_AUTH_ACTION_COUNT=str(NO_AUTH_CALLS))
    with moto_server_process(
        amis, free_port(), script=SERVER, extra=(str(NO_AUTH_CALLS),), env=env
    ) as endpoint:
        yield endpoint


def client(endpoint: str, service: str, keys: tuple[str, str]):
    """A botocore client for the moto server only (explicit loopback endpoint), with `keys`."""
    import botocore.session

    session = botocore.session.Session()
    session.set_credentials(*keys)
    region = "us-east-1" if service == "iam" else REGION
    return session.create_client(service, region_name=region, endpoint_url=endpoint)


@dataclass
class Accounts:
    endpoint: str
    admin: tuple[str, str]

    def user(self, name: str, document: str) -> tuple[str, str]:
        """A new IAM user holding exactly `document` (a managed policy); returns its access key."""
        iam = client(self.endpoint, "iam", self.admin)
        arn = iam.create_policy(PolicyName=f"{name}-policy", PolicyDocument=document)["Policy"]["Arn"]
        iam.create_user(UserName=name)
        iam.attach_user_policy(UserName=name, PolicyArn=arn)
        key = iam.create_access_key(UserName=name)["AccessKey"]
        return key["AccessKeyId"], key["SecretAccessKey"]


@pytest.fixture(scope="module")
def accounts(server) -> Accounts:
    """The admin, made by the only unauthenticated calls the server accepts."""
    from botocore.exceptions import ClientError

    iam = client(server, "iam", ("testing", "testing"))
    iam.create_user(UserName="admin")
    admin_policy = {
        "Version": "2012-10-17",
        "Statement": [{"Effect": "Allow", "Action": "*", "Resource": "*"}],
    }
    iam.put_user_policy(UserName="admin", PolicyName="all", PolicyDocument=json.dumps(admin_policy))
    key = iam.create_access_key(UserName="admin")["AccessKey"]
    with pytest.raises(ClientError) as refused:  # from now on IAM is enforced
        iam.list_users()
    assert refused.value.response["Error"]["Code"] == "InvalidClientTokenId"
    return Accounts(server, (key["AccessKeyId"], key["SecretAccessKey"]))


def test_moto_accepts_the_policy_file_as_written(accounts):
    iam = client(accounts.endpoint, "iam", accounts.admin)
    created = iam.create_policy(PolicyName="labctl-as-written", PolicyDocument=POLICY_FILE.read_text())
    assert created["Policy"]["Arn"].endswith(":policy/labctl-as-written")


def fab(endpoint: str, keys: tuple[str, str], state: Path, *args: str) -> subprocess.CompletedProcess:
    env = isolated_fab_env(
        state.parent,
        AWS_ENDPOINT_URL=endpoint,
        AWS_ACCESS_KEY_ID=keys[0],
        AWS_SECRET_ACCESS_KEY=keys[1],
        LAB_STATE_DIR=str(state),
    )
    return subprocess.run([str(FAB), *args], cwd=REPO, env=env, capture_output=True, text=True, timeout=120)


def _ok(result: subprocess.CompletedProcess) -> subprocess.CompletedProcess:
    assert result.returncode == 0, f"{result.args}\n{result.stdout}\n{result.stderr}"
    return result


def _public_key(path: Path) -> Path:
    from cryptography.hazmat.primitives import serialization
    from cryptography.hazmat.primitives.asymmetric import ed25519

    key = ed25519.Ed25519PrivateKey.generate().public_key()
    path.write_bytes(key.public_bytes(serialization.Encoding.OpenSSH, serialization.PublicFormat.OpenSSH))
    return path


def _instance_ids(endpoint: str, keys: tuple[str, str], lab: str) -> list[str]:
    ec2 = client(endpoint, "ec2", keys)
    filters = [
        {"Name": f"tag:{PROJECT_KEY}", "Values": [PROJECT_VALUE]},
        {"Name": "tag:labctl:lab", "Values": [lab]},
    ]
    found = ec2.describe_instances(Filters=filters)["Reservations"]
    return [i["InstanceId"] for r in found for i in r["Instances"] if i["State"]["Name"] != "terminated"]


def provision(lab: str, *more: str) -> tuple[str, ...]:
    return ("provision", "--target", "aws", "--cloud-only", "--name", lab, *more)


@contextmanager
def _environment(endpoint: str, keys: tuple[str, str], state: Path) -> Iterator[None]:
    """This process's environment as a `fab` run's (see `fab`), for labctl called in-process."""
    wanted = isolated_fab_env(
        state.parent,
        AWS_ENDPOINT_URL=endpoint,
        AWS_ACCESS_KEY_ID=keys[0],
        AWS_SECRET_ACCESS_KEY=keys[1],
        LAB_STATE_DIR=str(state),
    )
    with pytest.MonkeyPatch.context() as patch:
        for name in [n for n in os.environ if n.startswith(("AWS_", "LAB_")) and n not in wanted]:
            patch.delenv(name)
        for name, value in wanted.items():
            patch.setenv(name, value)
        yield


def admin_provision(accounts: Accounts, state: Path, lab: str, auto_stop: float | None = None) -> None:
    """A lab made by the admin in-process (a second `fab` process per setup costs seconds)."""
    from labctl.output import Report

    options = ProvisionOptions(target="aws", name=lab, cloud_only=True, auto_stop=auto_stop)
    with _environment(accounts.endpoint, accounts.admin, state):
        provisioning.provision(options, Report(io.StringIO(), io.StringIO()))


# --- the policy as it is: every flow succeeds -------------------------------------------------------------


def test_a_user_with_exactly_the_policy_runs_every_flow(accounts, tmp_path):
    from botocore.exceptions import ClientError

    from infra import ami, console
    from infra.errors import aws_errors

    endpoint = accounts.endpoint
    keys = accounts.user("labctl-user", moto_document(load_policy()))
    state = tmp_path / "state"

    def run(*args: str) -> subprocess.CompletedProcess:
        return _ok(fab(endpoint, keys, state, *args))

    assert "would create" in run("plan", "--target", "aws", "--name", "net").stdout
    run(*provision("net"))
    status = json.loads(run("status", "--json", "--name", "net").stdout)
    assert [i["state"] for i in status["instances"]] == ["running"]
    run(*provision("net", "--auto-stop", "2"))  # DescribeInstanceAttribute, CreateTags
    run(*provision("net", "--auto-stop", "off", "--ssh-cidr", "198.51.100.7/32"))  # DeleteTags, Revoke
    (instance_id,) = _instance_ids(endpoint, accounts.admin, "net")
    client(endpoint, "ec2", accounts.admin).stop_instances(InstanceIds=[instance_id])
    assert "started" in run(*provision("net")).stdout  # StartInstances
    with aws_errors():  # only read when labctl connects to a host, never to moto's: called directly
        assert isinstance(console.console_output(client(endpoint, "ec2", keys), instance_id), str)
    run(*provision("imported", "--public-key", str(_public_key(tmp_path / "id.pub"))))  # ImportKeyPair
    run("provision", "--target", "aws", "--cloud-only", "--name", "klass", "--count", "2")
    class_status = json.loads(run("status", "--json", "--name", "klass").stdout)
    assert len(class_status["class"]["students"]) == 2
    run("teardown", "--target", "aws", "--name", "klass")
    run("teardown", "--target", "aws", "--all-labs")  # net and imported (and any lab another test left)
    assert _instance_ids(endpoint, accounts.admin, "net") == []
    with pytest.raises(ClientError) as answer:  # allowed: moto simply has no Canonical parameter
        client(endpoint, "ssm", keys).get_parameter(Name=ami.ssm_parameter_names("20.04")[0])
    assert answer.value.response["Error"]["Code"] == "ParameterNotFound"


# --- the policy minus one action: the flow that needs it fails, naming it ---------------------------------


@dataclass(frozen=True)
class Flow:
    """What a user without one action runs, after the admin made the lab (`setup`) and changed it."""

    run: tuple[str, ...]
    setup: bool = False
    auto_stop: float | None = None  # the admin's lab has auto-stop set
    tweak: str | None = None  # "stop" | "terminate-on-shutdown"


def flows(lab: str, public_key: Path) -> dict[str, Flow]:
    create = Flow(provision(lab))
    auto_stop = provision(lab, "--auto-stop", "2")
    teardown = Flow(("teardown", "--target", "aws", "--name", lab), setup=True)
    return {
        "ec2:DescribeImages": create,
        "ec2:DescribeVpcs": create,
        "ec2:DescribeSubnets": create,
        "ec2:DescribeInstanceTypes": create,
        "ec2:DescribeInstanceTypeOfferings": create,
        "servicequotas:GetServiceQuota": Flow(provision(lab, "--count", "2")),  # class mode reads the quota
        "ec2:DescribeKeyPairs": create,
        "ec2:CreateKeyPair": create,
        "ec2:ImportKeyPair": Flow(provision(lab, "--public-key", str(public_key))),
        "ec2:DescribeSecurityGroups": create,
        "ec2:CreateSecurityGroup": create,
        "ec2:AuthorizeSecurityGroupIngress": create,
        "ec2:RevokeSecurityGroupIngress": Flow(provision(lab, "--ssh-cidr", "198.51.100.7/32"), setup=True),
        "ec2:DescribeInstances": create,
        "ec2:RunInstances": create,
        "ec2:StartInstances": Flow(provision(lab), setup=True, tweak="stop"),
        "ec2:DescribeInstanceAttribute": Flow(auto_stop, setup=True),
        "ec2:ModifyInstanceAttribute": Flow(auto_stop, setup=True, tweak="terminate-on-shutdown"),
        "ec2:CreateTags": Flow(auto_stop, setup=True),  # moto never asks for it at RunInstances
        "ec2:DeleteTags": Flow(provision(lab, "--auto-stop", "off"), setup=True, auto_stop=2.0),
        "ec2:TerminateInstances": teardown,
        "ec2:DeleteSecurityGroup": teardown,
        "ec2:DeleteKeyPair": teardown,
    }


IN_PROCESS = {"ec2:GetConsoleOutput", "ssm:GetParameter"}  # never reached by a --cloud-only fab run
ACTIONS = sorted(policy_actions(load_policy()))
FAB_RUN_ACTIONS = [a for a in ACTIONS if a not in IN_PROCESS]


def not_called_yet(action: str) -> bool:
    """A preflight action the code on this branch does not call yet (nothing to prove until it does)."""
    return action in PREFLIGHT and action not in called_operations()


def _prepare_variant(accounts: Accounts, root: Path, index: int, action: str) -> tuple:
    """The admin's lab for one variant and the variant's user; returns what `fab` needs."""
    lab = f"v{index:02d}"
    state = root / lab / "state"
    state.parent.mkdir(parents=True)
    flow = flows(lab, _public_key(root / lab / "id.pub"))[action]
    if flow.setup:
        admin_provision(accounts, state, lab, flow.auto_stop)
    ec2 = client(accounts.endpoint, "ec2", accounts.admin)
    if flow.tweak == "stop":
        ec2.stop_instances(InstanceIds=_instance_ids(accounts.endpoint, accounts.admin, lab))
    elif flow.tweak == "terminate-on-shutdown":
        for instance_id in _instance_ids(accounts.endpoint, accounts.admin, lab):
            ec2.modify_instance_attribute(
                InstanceId=instance_id, Attribute="instanceInitiatedShutdownBehavior", Value="terminate"
            )
    keys = accounts.user(f"variant-{index:02d}", moto_document(load_policy(), without=action))
    return accounts.endpoint, keys, state, *flow.run


@pytest.fixture(scope="module")
def variant_runs(accounts, tmp_path_factory) -> dict[str, Future]:
    """Every fab-run variant: the admin's labs made first (in-process), then the `fab` runs four at a time."""
    root = tmp_path_factory.mktemp("variants")
    todo = [(i, action) for i, action in enumerate(FAB_RUN_ACTIONS) if not not_called_yet(action)]
    prepared = {action: _prepare_variant(accounts, root, i, action) for i, action in todo}
    with ThreadPoolExecutor(max_workers=4) as pool:
        futures = {action: pool.submit(fab, *args) for action, args in prepared.items()}
        wait(futures.values())
    return futures


@pytest.mark.parametrize("action", FAB_RUN_ACTIONS)
def test_without_one_action_the_error_names_it(variant_runs, action):
    if not_called_yet(action):
        pytest.skip(f"{action} is not called on this branch yet (the preflight checks call it)")
    result = variant_runs[action].result()
    if action in PREFLIGHT and result.returncode == 0:  # a preflight check may only warn
        assert action in result.stdout + result.stderr
        return
    assert result.returncode == 1, f"{result.stdout}\n{result.stderr}"
    lines = result.stderr.strip().splitlines()
    assert [line for line in lines if not line.startswith("warning: ")] == [lines[-1]]
    assert lines[-1].startswith("error: not allowed to call ")
    assert f"is not authorized to perform: {action}" in lines[-1]
    assert "Traceback" not in result.stderr


def test_without_get_console_output_the_error_names_it(accounts, tmp_path):
    """Host keys are read from the console only before labctl connects to a host: called directly."""
    from infra import console
    from infra.errors import CloudError, aws_errors

    admin_provision(accounts, tmp_path / "state", "console")
    (instance_id,) = _instance_ids(accounts.endpoint, accounts.admin, "console")
    keys = accounts.user("no-console", moto_document(load_policy(), without="ec2:GetConsoleOutput"))
    with pytest.raises(CloudError) as failure, aws_errors():
        console.console_output(client(accounts.endpoint, "ec2", keys), instance_id)
    assert "is not authorized to perform: ec2:GetConsoleOutput" in str(failure.value)
    assert "\n" not in str(failure.value)


def test_without_the_ssm_read_labctl_falls_back_to_describe_images(accounts):
    """Canonical's SSM parameter is optional: denied, labctl searches Canonical's images instead.

    moto denies it (HTTP 403) in an XML body botocore cannot read for SSM's JSON protocol, so the fallback
    is shown with SSM's real answer, AccessDeniedException, from a Stubber.
    """
    from botocore.exceptions import ClientError
    from botocore.stub import Stubber

    from infra import ami, errors

    keys = accounts.user("no-ssm", moto_document(load_policy(), without="ssm:GetParameter"))
    ssm, ec2 = client(accounts.endpoint, "ssm", keys), client(accounts.endpoint, "ec2", keys)
    with pytest.raises(ClientError) as denied:
        ssm.get_parameter(Name=ami.ssm_parameter_names("20.04")[0])
    assert denied.value.response["ResponseMetadata"]["HTTPStatusCode"] == 403
    assert "is not authorized to perform: ssm:GetParameter" in str(denied.value)
    real = "User: arn:aws:iam::123456789012:user/no-ssm is not authorized to perform: ssm:GetParameter"
    with Stubber(ssm) as stub:
        for _ in ami.ssm_parameter_names("20.04"):
            stub.add_client_error("get_parameter", "AccessDeniedException", real, 400)
        assert ami.find_ami(ec2, ssm, "20.04")["OwnerId"] == ami.CANONICAL_OWNER
        stub.assert_no_pending_responses()
    line = str(
        errors.translate(
            ClientError({"Error": {"Code": "AccessDeniedException", "Message": real}}, "GetParameter")
        )
    )
    assert "is not authorized to perform: ssm:GetParameter" in line
