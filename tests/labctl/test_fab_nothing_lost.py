"""The real `fab` against a moto server: damaged state, concurrent runs, the command line's odd corners."""

from __future__ import annotations

import json
import stat
import subprocess

import boto3
import pytest

from tests.support.fab import FAB, REPO, isolated_fab_env

pytestmark = pytest.mark.slow
KEY = "labctl-netlab"
CIDR = ("--ssh-cidr", "198.51.100.7/32")


def _one_error_line(done: subprocess.CompletedProcess) -> str:
    assert done.returncode == 1, done.stdout + done.stderr
    assert "Traceback" not in done.stderr, done.stderr
    lines = done.stderr.strip().splitlines()
    assert len(lines) == 1, done.stderr
    return lines[0]


@pytest.mark.parametrize(
    "content, why",
    [
        ("null", "holds null, not an object"),
        ("[]", "holds a list, not an object"),
        ('{"target": "aws", "key_file": 12}', "key_file is the number 12, not text"),
        (None, "a directory, not a file"),
    ],
)
def test_damaged_state_is_one_line_for_status_and_provision(fab, tmp_path, content, why):
    state_file = tmp_path / "state" / "state.json"
    state_file.parent.mkdir(mode=0o700)
    if content is None:
        state_file.mkdir()
    else:
        state_file.write_text(content)
    for args in (("status",), ("provision", "--target", "aws", "--cloud-only", *CIDR)):
        line = _one_error_line(fab(*args))
        assert line.startswith(f"error: {state_file} is damaged ({why}): ")
        assert "the next run rebuilds it from the tags" in line
    assert state_file.is_dir() if content is None else state_file.read_text() == content  # not rewritten


def test_after_deleting_a_damaged_state_the_tags_rebuild_it(fab, tmp_path):
    assert fab("provision", "--target", "aws", "--cloud-only", *CIDR).returncode == 0
    state_file = tmp_path / "state" / "state.json"
    state_file.write_text('{"key_file": 12}')
    assert fab("status").returncode == 1
    state_file.unlink()
    status = fab("status", "--target", "aws", "--json")
    assert status.returncode == 0, status.stderr
    assert json.loads(status.stdout)["key_pair"]["name"] == KEY
    assert not state_file.exists()  # status is read-only (issue 12 item 4): provision rebuilds the file
    assert fab("provision", "--target", "aws", "--cloud-only", *CIDR).returncode == 0
    assert json.loads(state_file.read_text())["key_file"].endswith(f"{KEY}.pem")


def _key_pairs(endpoint: str) -> list[dict]:
    ec2 = boto3.client(
        "ec2",
        region_name="ap-northeast-2",
        endpoint_url=endpoint,
        aws_access_key_id="testing",
        aws_secret_access_key="testing",
    )
    return ec2.describe_key_pairs()["KeyPairs"]


def test_two_provisions_at_once_in_one_state_dir_keep_exactly_one_key(moto_server, tmp_path):
    """Issue 12 item 1: the second run waits for the first (one line), then finds the key pair and its key."""
    env = isolated_fab_env(tmp_path, AWS_ENDPOINT_URL=moto_server)
    command = [str(FAB), "provision", "--target", "aws", "--cloud-only", *CIDR]
    runs = [
        subprocess.Popen(
            command, cwd=REPO, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True
        )
        for _ in range(2)
    ]
    outputs = [run.communicate(timeout=180) for run in runs]
    assert [run.returncode for run in runs] == [0, 0], outputs
    created = [out for out, _ in outputs if f"created      key pair {KEY}" in out]
    assert len(created) == 1, outputs  # exactly one run made the key pair; the other found it
    waited = [err for _, err in outputs if "waiting for the other labctl run in" in err]
    assert len(waited) <= 1 and all(err.strip().count("\n") == 0 for err in waited), outputs
    key_files = list((tmp_path / "state" / "keys").iterdir())
    assert [f.name for f in key_files] == [f"{KEY}.pem"]
    assert stat.S_IMODE(key_files[0].stat().st_mode) == 0o600
    assert key_files[0].read_text().startswith("-----BEGIN OPENSSH PRIVATE KEY-----")
    assert [pair["KeyName"] for pair in _key_pairs(moto_server)] == [KEY]


def test_a_second_run_gives_up_after_lab_lock_wait_in_one_line(moto_server, tmp_path):
    import fcntl

    env = isolated_fab_env(tmp_path, AWS_ENDPOINT_URL=moto_server, LAB_LOCK_WAIT="0.5")
    state = tmp_path / "state"
    state.mkdir(mode=0o700)
    with open(state / "lock", "w") as held:
        fcntl.flock(held, fcntl.LOCK_EX)
        held.write("4242\n")
        held.flush()
        done = subprocess.run(
            [str(FAB), "teardown"], cwd=REPO, env=env, capture_output=True, text=True, timeout=60
        )
        status = subprocess.run(  # read-only: never waits
            [str(FAB), "status", "--target", "aws"], cwd=REPO, env=env, capture_output=True, text=True
        )
    assert done.returncode == 1 and "Traceback" not in done.stderr
    assert done.stderr.splitlines() == [
        f"waiting for the other labctl run in {state} (pid 4242)",
        f"error: another labctl run (pid 4242) still changes {state} after 0 s: let it finish (or stop it), "
        "then re-run",
    ]
    assert status.returncode == 0, status.stderr


def test_status_says_how_to_fix_a_key_file_others_can_read(fab, tmp_path):
    """Issue 12 item 7: status's `ssh -i` line would be refused by OpenSSH: one warning with the fix."""
    assert fab("provision", "--target", "aws", "--cloud-only", *CIDR).returncode == 0
    key_file = tmp_path / "state" / "keys" / f"{KEY}.pem"
    key_file.chmod(0o644)
    status = fab("status")
    assert status.returncode == 0, status.stderr
    fix = f"key file {key_file} has mode 0644, too open: run `chmod 600 {key_file}` (ssh refuses such a key)"
    assert f"  warning: {fix}" in status.stdout.splitlines()
    assert fix in json.loads(fab("status", "--json").stdout)["warnings"]
    assert stat.S_IMODE(key_file.stat().st_mode) == 0o644  # a read-only task changes nothing
    key_file.chmod(0o600)
    assert "too open" not in fab("status").stdout


@pytest.mark.parametrize(
    "args, expected",
    [
        (("provision", "--parallel", "3"), "error: --parallel only applies to class mode: add --students"),
        (
            ("provision", "--shared-sg", "--all"),
            "error: --shared-sg and --all only apply to class mode: add --students",
        ),
        (
            ("provision", "--ssh-cidr", "198.51.100.7/32", "--ssh-cidr", "198.51.100.8/32"),
            "error: --ssh-cidr was given 2 times (198.51.100.7/32, 198.51.100.8/32): give it once",
        ),
        (("plan", "--ssh-cidr", "198.51.100.7/32", "--ssh-cidr", "198.51.100.8/32"), "error: --ssh-cidr was"),
        (
            ("provision", "--", "5"),
            "error: `-- 5` runs that command on -H hosts, and none were given: drop it",
        ),
        (("provison",), "No idea what 'provison' is! Did you mean 'provision'?"),
        (("provision", "--cloud-onyl"), "No idea what '--cloud-onyl' is! Did you mean '--cloud-only'?"),
        (("provision", "--=5"), "No idea what '--' is!"),  # no `--=STRING` flag for --auto-stop any more
    ],
)
def test_command_line_mistakes_are_one_line(tmp_path, args, expected):
    env = isolated_fab_env(tmp_path, AWS_ENDPOINT_URL="http://127.0.0.1:9")  # never reached
    done = subprocess.run([str(FAB), *args], cwd=REPO, env=env, capture_output=True, text=True, timeout=60)
    assert _one_error_line(done).startswith(expected)
    assert not (tmp_path / "state" / "lock").exists()  # refused before taking the lock or changing anything


def test_help_shows_no_dash_short_flag(tmp_path):
    env = isolated_fab_env(tmp_path)
    done = subprocess.run(
        [str(FAB), "--help", "provision"], cwd=REPO, env=env, capture_output=True, text=True
    )
    assert done.returncode == 0 and "--auto-stop=STRING" in done.stdout
    assert "--=" not in done.stdout and " -, " not in done.stdout


def test_one_ssh_cidr_still_works(fab, moto_server):
    done = fab("provision", "--target", "aws", "--cloud-only", "--ssh-cidr", "198.51.100.9/32")
    assert done.returncode == 0, done.stderr
    status = json.loads(fab("status", "--json").stdout)
    assert {r["source"] for r in status["security_group"]["rules"]} == {"198.51.100.9/32"}
