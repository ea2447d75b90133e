"""Issue 12 item 6: every option is validated before the first change.

Each bad value runs the real `fab` and must end in exit 1 with one `error:` line naming the option, with
nothing created: on the sandbox no daemon was started (a fresh state dir, so each case fails in about a
second), on AWS (a moto server) no key pair, security group or instance exists afterwards. What only EC2 can
answer (a Windows --ami, a type it does not know, also on a re-run whose state file is stale) is checked on
moto in-process before the key pair is made.
"""

from __future__ import annotations

import io
import subprocess

import boto3
import pytest
from invoke import Context

from labctl import tasks
from labctl.options import ProvisionOptions
from labctl.output import Report
from labctl.single import provisioning
from labctl.state import load_state
from tests.infra.conftest import REGION, TEST_CIDR
from tests.support.fab import FAB, REPO, free_port, isolated_fab_env, moto_server_process

NOT_A_KEY = str(REPO / "README.md")

# (case id, arguments, what the one error line must name)
BAD_VALUES = [
    ("mirror", ["--mirror", "evil host;id"], "--mirror"),
    ("instance-type", ["--instance-type", "t3.micro;id"], "--instance-type"),
    ("ssh-cidr", ["--ssh-cidr", "10.0.0.0/33"], "--ssh-cidr"),
    ("ssh-cidr-ipv6", ["--ssh-cidr", "2001:db8::/32"], "--ssh-cidr"),
    ("ssh-cidr-and-open-world", ["--ssh-cidr", "198.51.100.7/32", "--open-world"], "--open-world"),
    ("region", ["--region", "mars-north-1"], "--region"),
    ("name", ["--name", "bad name;id"], "--name"),
    ("release", ["--release", "18.04"], "--release"),
    ("ami", ["--ami", "ami-xyz;id"], "--ami"),
    ("public-key-missing", ["--public-key", "/nonexistent/id_ed25519.pub"], "--public-key"),
    ("public-key-not-a-key", ["--public-key", NOT_A_KEY], "--public-key"),
    ("auto-stop", ["--auto-stop", "soon"], "--auto-stop"),
    ("count-zero", ["--count", "0"], "--count"),
    ("count-huge", ["--count", "500"], "--count"),
    ("count-not-a-number", ["--count", "many"], "--count"),
    ("parallel", ["--count", "2", "--parallel", "0"], "--parallel"),
    ("students", ["--students", "/nonexistent/roster.csv"], "--students"),
]
PLAN_FLAGS = {"--instance-type", "--ssh-cidr", "--open-world", "--region", "--name", "--release", "--ami"}
PLAN_FLAGS |= {"--public-key"}


def _one_error_line(result: subprocess.CompletedProcess, option: str) -> str:
    assert result.returncode == 1, result.stdout + result.stderr
    assert "Traceback" not in result.stderr
    errors = [line for line in result.stderr.splitlines() if line.startswith("error:")]
    assert len(errors) == 1 and option in errors[0], result.stderr
    return errors[0]


def _fab(env: dict, *args: str) -> subprocess.CompletedProcess:
    return subprocess.run([str(FAB), *args], cwd=REPO, env=env, capture_output=True, text=True, timeout=60)


# --- the sandbox: nothing started ---------------------------------------------------------------------------


def _assert_sandbox_untouched(state_dir, daemons_before: dict) -> None:
    from sandbox.registry import live_daemons

    assert not (state_dir / "sandbox" / "daemon.json").exists()
    assert not (state_dir / "state.json").exists()
    assert str(state_dir) not in live_daemons().values()
    started = set(live_daemons().values()) - set(daemons_before.values())  # (other tests' too, in parallel)
    assert not [d for d in started if d.startswith(str(REPO))]  # none for the default state dir (.lab)


SANDBOX_CASES = [
    pytest.param(mode, args, option, id=f"{case}-{mode}")
    for case, args, option in BAD_VALUES
    for mode in ("provision", "dry-run", "plan")
    if mode != "plan" or {a for a in args if a.startswith("--")} <= PLAN_FLAGS
]


@pytest.mark.root  # a regression would start the sandbox daemon: run under the shared lock
@pytest.mark.parametrize("mode, args, option", SANDBOX_CASES)
def test_a_bad_value_fails_before_the_sandbox_starts(tmp_path, mode, args, option):
    from sandbox.registry import live_daemons

    env = isolated_fab_env(tmp_path)
    state_dir = tmp_path / "state"
    before = live_daemons()
    command = {"provision": ["provision"], "dry-run": ["provision", "--dry-run"], "plan": ["plan"]}[mode]
    result = _fab(env, *command, "--target", "sandbox", *args)
    _one_error_line(result, option)
    _assert_sandbox_untouched(state_dir, before)


@pytest.mark.root
def test_a_bad_echo_server_fails_before_any_connection(tmp_path):
    from sandbox.registry import live_daemons

    before = live_daemons()
    line = _one_error_line(_fab(isolated_fab_env(tmp_path), "deploy-echo", "--server", "java"), "--server")
    assert "choose c or python" in line
    _assert_sandbox_untouched(tmp_path / "state", before)


@pytest.mark.root
def test_a_type_the_sandbox_does_not_know_stops_the_daemon_it_started(tmp_path):
    """Only EC2 knows the type: the daemon starts to ask, and is stopped again since nothing was made."""
    from sandbox.registry import live_daemons

    before = live_daemons()
    env = isolated_fab_env(tmp_path)
    result = _fab(env, "provision", "--target", "sandbox", "--cloud-only", "--instance-type", "t3.huge")
    assert "unknown instance type 't3.huge'" in _one_error_line(result, "--instance-type")
    _assert_sandbox_untouched(tmp_path / "state", before)


@pytest.mark.root
def test_a_class_of_a_type_the_sandbox_does_not_know_stops_the_daemon_it_started(tmp_path):
    """Class mode too: the daemon started to ask EC2 about the type is stopped again, nothing was made."""
    from sandbox.registry import live_daemons

    before = live_daemons()
    env = isolated_fab_env(tmp_path)
    result = _fab(env, "provision", "--target", "sandbox", "--count", "2", "--instance-type", "t3.huge")
    assert "unknown instance type 't3.huge'" in _one_error_line(result, "--instance-type")
    _assert_sandbox_untouched(tmp_path / "state", before)


# --- AWS (a moto server): nothing created -------------------------------------------------------------------


@pytest.fixture(scope="module")
def moto_endpoint(tmp_path_factory):
    """One moto server for the module (every case fails, so it stays empty), stopped by its PID."""
    amis = tmp_path_factory.mktemp("moto") / "amis.json"
    with moto_server_process(amis, free_port()) as endpoint:
        yield endpoint


def _created(endpoint: str) -> dict:
    """Everything a provision could have made on the moto server."""
    client = boto3.client(
        "ec2",
        region_name=REGION,
        endpoint_url=endpoint,
        aws_access_key_id="testing",
        aws_secret_access_key="testing",
    )
    groups = client.describe_security_groups()["SecurityGroups"]
    reservations = client.describe_instances()["Reservations"]
    return {
        "key pairs": [k["KeyName"] for k in client.describe_key_pairs()["KeyPairs"]],
        "groups": [g["GroupName"] for g in groups if g["GroupName"] != "default"],
        "instances": [i["InstanceId"] for r in reservations for i in r["Instances"]],
    }


AWS_ONLY = [
    ("unknown-instance-type", ["--instance-type", "t3.huge"], "--instance-type"),
    ("missing-ami", ["--ami", "ami-0000000000000dead"], "--ami"),
]


@pytest.mark.parametrize(
    "case, args, option", BAD_VALUES + AWS_ONLY, ids=[case for case, _, _ in BAD_VALUES + AWS_ONLY]
)
def test_a_bad_value_creates_nothing_on_aws(moto_endpoint, tmp_path, case, args, option):
    env = isolated_fab_env(tmp_path, AWS_ENDPOINT_URL=moto_endpoint)
    cidr = [] if "--ssh-cidr" in args else ["--ssh-cidr", TEST_CIDR]
    _one_error_line(_fab(env, "provision", "--target", "aws", *cidr, *args), option)
    assert _created(moto_endpoint) == {"key pairs": [], "groups": [], "instances": []}
    assert not (tmp_path / "state" / "state.json").exists()


# --- what only EC2 can answer, in-process -------------------------------------------------------------------


def _add_windows_image(image_id: str) -> None:
    """A Windows image as EC2 describes it (`Platform: windows`); our moto catalogue has only Ubuntu."""
    from moto.core import DEFAULT_ACCOUNT_ID
    from moto.ec2.models import ec2_backends
    from moto.ec2.models.amis import Ami

    backend = ec2_backends[DEFAULT_ACCOUNT_ID][REGION]
    backend.amis[image_id] = Ami(
        backend,
        image_id,
        name="Windows_Server-2022-English-Full-Base-2024.01.10",
        owner_id="801119661308",
        public=True,
        virtualization_type="hvm",
        architecture="x86_64",
        platform="windows",
    )


def _nothing_ours(client) -> None:
    assert client.describe_key_pairs()["KeyPairs"] == []
    assert [g["GroupName"] for g in client.describe_security_groups()["SecurityGroups"]] == ["default"]
    assert client.describe_instances()["Reservations"] == []


def test_a_windows_ami_is_refused_before_anything_is_created(ec2, capsys):
    _add_windows_image("ami-0123456789abcdef0")
    assert ec2.describe_images(ImageIds=["ami-0123456789abcdef0"])["Images"][0]["Platform"] == "windows"
    for dry_run in (True, False):
        with pytest.raises(SystemExit) as exited:
            tasks.provision(
                Context(), target="aws", ami="ami-0123456789abcdef0", ssh_cidr=TEST_CIDR, dry_run=dry_run
            )
        assert exited.value.code == 1
        (line,) = [x for x in capsys.readouterr().err.splitlines() if x.startswith("error:")]
        assert "--ami ami-0123456789abcdef0 is a Windows image" in line
    _nothing_ours(ec2)


def test_a_stale_state_file_does_not_skip_the_instance_type_check(ec2):
    """The recorded instance was terminated outside labctl: the re-run launches, so its type is checked
    first (the state file's instance ids do not decide)."""
    options = ProvisionOptions(target="aws", ssh_cidr=TEST_CIDR, cloud_only=True)
    (instance,) = provisioning.provision(options, Report(io.StringIO(), io.StringIO()))
    assert load_state()["instance_ids"] == [instance["InstanceId"]]
    ec2.terminate_instances(InstanceIds=[instance["InstanceId"]])
    ec2.delete_key_pair(KeyName=load_state()["key_name"])
    from labctl.errors import LabError

    with pytest.raises(LabError, match="unknown instance type 't3.huge'"):
        provisioning.provision(
            ProvisionOptions(target="aws", ssh_cidr=TEST_CIDR, cloud_only=True, instance_type="t3.huge"),
            Report(io.StringIO(), io.StringIO()),
        )
    assert ec2.describe_key_pairs()["KeyPairs"] == []  # refused before the key pair step
    states = [i["State"]["Name"] for r in ec2.describe_instances()["Reservations"] for i in r["Instances"]]
    assert states == ["terminated"]
