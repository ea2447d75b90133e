"""Issue 12 items 2 and 3: nothing is lost when the sandbox daemon dies (SIGKILL) or is stopped (SIGTERM).

Through the real fabfile: provision, write a file in the host, kill the daemon; `fab status` then says the
sandbox is down and what to do (exit 1); the next provision brings the same instance back (same id, address,
pinned host key, the file still there) and the lab passes deploy-echo and verify.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import time
from pathlib import Path

import pytest

from sandbox import apistate, control, disk, network
from sandbox.errors import SandboxError
from sandbox.orphans import remove_unowned_host_dirs
from sandbox.registry import daemon_alive
from sandbox.testhost import sandbox_client, stop_sandbox
from tests.support.sandbox import fab_in, processes_marked_by

MARK = "/home/ubuntu/written-before-the-kill"


def fab(state_dir: Path, *args: str, timeout: float = 400) -> subprocess.CompletedProcess:
    return fab_in(state_dir, *args, timeout=timeout)


def _ok(result: subprocess.CompletedProcess) -> str:
    assert result.returncode == 0, result.stdout + result.stderr
    return result.stdout


@pytest.fixture
def state_dir(rootfs, tmp_path):
    yield tmp_path
    if control.running_endpoint(tmp_path) or control.has_saved_state(tmp_path):
        fab(tmp_path, "teardown")
    stop_sandbox(tmp_path)
    control.cleanup_orphans()


def _kill_daemon(state_dir: Path, sig: int) -> int:
    pid = json.loads(fab(state_dir, "status", "--json").stdout)["sandbox"]["pid"]
    os.kill(pid, sig)
    deadline = time.monotonic() + 60
    while daemon_alive(pid) and time.monotonic() < deadline:
        time.sleep(0.1)
    assert not daemon_alive(pid)
    return pid


@pytest.mark.root
@pytest.mark.parametrize("sig", [signal.SIGKILL, signal.SIGTERM], ids=["SIGKILL", "SIGTERM"])
def test_the_same_instance_comes_back_after_the_daemon_died(state_dir, sig):
    _ok(fab(state_dir, "provision", "--target", "sandbox", "--cloud-only"))
    (before,) = json.loads(fab(state_dir, "status", "--json").stdout)["instances"]
    _ok(fab(state_dir, "ssh", "--command", f"echo kept > {MARK} && sync"))
    pinned = json.loads((state_dir / "pinned_host_keys.json").read_text())

    daemon = _kill_daemon(state_dir, sig)
    if sig == signal.SIGTERM:  # stopped cleanly: its hosts halted, nothing of it left running
        assert processes_marked_by(daemon) == []
    sandbox_dir = state_dir / "sandbox"
    upper = disk.upper(sandbox_dir / "hosts" / before["id"])
    assert (upper / MARK.lstrip("/")).read_text() == "kept\n"
    assert apistate.live_saved_instances(sandbox_dir)[before["id"]]["state"] == "running"

    down = fab(state_dir, "status")
    assert down.returncode == 1, down.stdout + down.stderr
    assert "sandbox      down: the sandbox daemon is not running" in down.stdout
    assert before["id"] in down.stdout and "run `fab provision`" in down.stdout
    assert "instance     none" not in down.stdout and "Traceback" not in down.stderr
    as_json = fab(state_dir, "status", "--json")
    assert as_json.returncode == 1
    assert before["id"] in json.loads(as_json.stdout)["sandbox_down"]

    again = fab(state_dir, "provision", "deploy-echo", "verify")
    out = _ok(again)
    assert "Traceback" not in again.stderr and "removed orphaned files" not in out
    (after,) = json.loads(_ok(fab(state_dir, "status", "--json")))["instances"]
    assert (after["id"], after["public_ip"]) == (before["id"], before["public_ip"])
    assert json.loads((state_dir / "pinned_host_keys.json").read_text()) == pinned
    assert _ok(fab(state_dir, "ssh", "--command", f"cat {MARK}")).strip().endswith("kept")

    _ok(fab(state_dir, "teardown"))
    assert not sandbox_dir.exists()
    assert not (state_dir / "keys").exists() or not list((state_dir / "keys").iterdir())
    assert not any(str(state_dir) in owner for owner in disk.in_use())  # its disk went with it


@pytest.mark.root
def test_teardown_after_a_crash_removes_the_key_pair_and_file_for_the_next_provision(state_dir):
    _ok(fab(state_dir, "provision", "--target", "sandbox", "--cloud-only"))
    key_file = Path(json.loads(fab(state_dir, "status", "--json").stdout)["key_pair"]["file"])
    _kill_daemon(state_dir, signal.SIGKILL)

    out = _ok(fab(state_dir, "teardown"))
    assert "key pair labctl-" in out and not key_file.exists()
    assert not (state_dir / "sandbox").exists()
    _ok(fab(state_dir, "provision", "--target", "sandbox", "--cloud-only"))


@pytest.mark.root
def test_an_instance_whose_disk_was_lost_is_terminated_and_replaced(state_dir):
    """After a restart of this machine the hosts' disks (tmpfs) are gone: the next daemon terminates those
    instances before its API answers, with a server-side reason, and provision launches a new one."""
    _ok(fab(state_dir, "provision", "--target", "sandbox", "--cloud-only"))
    (before,) = json.loads(fab(state_dir, "status", "--json").stdout)["instances"]
    _kill_daemon(state_dir, signal.SIGKILL)
    control.cleanup_orphans()  # the hosts' processes go, as with the machine
    host_dir = state_dir / "sandbox" / "hosts" / before["id"]
    shutil.rmtree(os.readlink(host_dir / disk.LINK))  # ... and their disks

    out = _ok(fab(state_dir, "provision", "--cloud-only"))
    assert "Traceback" not in out
    (after,) = json.loads(_ok(fab(state_dir, "status", "--json")))["instances"]
    assert after["id"] != before["id"]
    ec2 = sandbox_client(control.running_endpoint(state_dir))
    (old,) = ec2.describe_instances(InstanceIds=[before["id"]])["Reservations"][0]["Instances"]
    assert old["State"]["Name"] == "terminated"
    assert old["StateReason"]["Code"] == "Server.InternalError"
    assert "disk was lost" in old["StateReason"]["Message"]
    _ok(fab(state_dir, "teardown"))
    assert not any(str(state_dir) in owner for owner in disk.in_use())


def test_orphan_cleanup_keeps_the_disks_of_saved_instances(tmp_path):
    """Only host dirs of instances the saved API state does not have alive go; its log and state stay."""
    sandbox_dir = tmp_path / "sandbox"
    saved = {
        "i-0live": {"state": "running", "region": "ap-northeast-2", "address": "198.51.100.10"},
        "i-0stopped": {"state": "stopped", "region": "ap-northeast-2", "address": "198.51.100.11"},
        "i-0gone": {"state": "terminated", "region": "ap-northeast-2", "address": "198.51.100.12"},
    }
    for instance_id in [*saved, "i-0unknown"]:
        (sandbox_dir / "hosts" / instance_id / "upper").mkdir(parents=True)
    (sandbox_dir / apistate.SUMMARY_FILE).write_text(json.dumps({"instances": saved}))
    (sandbox_dir / apistate.PICKLE_FILE).write_bytes(b"state")
    (sandbox_dir / "daemon.log").write_text("log\n")
    (sandbox_dir / "daemon.json").write_text("{}")

    removed = remove_unowned_host_dirs(sandbox_dir)

    assert sorted(p.name for p in (sandbox_dir / "hosts").iterdir()) == ["i-0live", "i-0stopped"]
    assert len(removed) == 2 and all("no live instance" in line for line in removed)
    assert (sandbox_dir / "daemon.log").read_text() == "log\n"
    assert (sandbox_dir / apistate.PICKLE_FILE).exists() and not (sandbox_dir / "daemon.json").exists()


def test_no_saved_state_keeps_no_host_dir(tmp_path):
    (tmp_path / "sandbox" / "hosts" / "i-0abc" / "upper").mkdir(parents=True)
    assert remove_unowned_host_dirs(tmp_path / "sandbox") == [
        f"files {tmp_path / 'sandbox' / 'hosts' / 'i-0abc'} (no live instance)"
    ]


def test_a_restored_lease_is_claimed_and_a_reused_address_is_not_released(tmp_path, monkeypatch):
    monkeypatch.setattr(network, "RUN_DIR", tmp_path)
    monkeypatch.setattr(network, "LEASE_DIR", tmp_path / "leases")
    me = os.getpid()
    assert network.claim_address(me, "198.51.100.10", "i-0old")
    network.release_address("198.51.100.10", "i-0other")  # a terminated instance that had it before
    assert network.all_leases() == [{"address": "198.51.100.10", "owner": me, "instance": "i-0old"}]
    assert not network.claim_address(1, "198.51.100.10", "i-0new")  # pid 1 is not the live holder
    network.release_address("198.51.100.10", "i-0old")
    assert network.all_leases() == []
    fresh = network.lease_address(1)  # another daemon's lease, its instance not named yet
    network.release_address(fresh, "i-0old", owner=me)  # a terminated instance of mine that had it before
    assert network.all_leases() == [{"address": fresh, "owner": 1, "instance": ""}]
    network.release_address(fresh, "i-0new", owner=1)  # its owner's instance, ended before it was named
    assert network.all_leases() == []


def test_a_stopped_daemons_saved_instances_keep_their_addresses_for_it(tmp_path, monkeypatch):
    """While a sandbox's daemon is down, no other daemon takes the addresses of the instances it will bring
    back (a restored instance would otherwise answer on another lab's host); the others are freed."""
    monkeypatch.setattr(network, "RUN_DIR", tmp_path)
    monkeypatch.setattr(network, "LEASE_DIR", tmp_path / "leases")
    dead = subprocess.run(["sh", "-c", "echo $$"], capture_output=True, text=True).stdout.strip()
    owner, other = int(dead), os.getpid()
    sandbox_dir = tmp_path / "lab-a" / "sandbox"
    sandbox_dir.mkdir(parents=True)
    saved = {
        "i-0kept": {"state": "stopped", "region": "ap-northeast-2", "address": "198.51.100.10"},
        "i-0gone": {"state": "terminated", "region": "ap-northeast-2", "address": "198.51.100.11"},
    }
    (sandbox_dir / apistate.SUMMARY_FILE).write_text(json.dumps({"instances": saved}))
    assert network.claim_address(owner, "198.51.100.10", "i-0kept")
    assert network.claim_address(owner, "198.51.100.11", "i-0gone")

    assert network.reserve_addresses(owner, sandbox_dir) == ["198.51.100.10"]
    (lease,) = network.all_leases()
    assert lease["reserved_for"] == str(sandbox_dir) and network.held(lease)
    assert network.lease_address(other, "i-0new") == "198.51.100.11"  # .10 stays reserved
    assert not network.claim_address(other, "198.51.100.10", "i-0new")
    assert network.claim_address(other, "198.51.100.10", "i-0kept")  # the next daemon of lab-a

    network.release_address("198.51.100.10", "i-0kept")
    assert network.claim_address(owner, "198.51.100.10", "i-0kept")
    network.reserve_addresses(owner, sandbox_dir)
    shutil.rmtree(tmp_path / "lab-a")  # a state dir deleted by hand: its reservations lapse
    assert network.lease_address(other, "i-0newer") == "198.51.100.10"


def test_saved_hosts_of_another_kind_are_not_restarted_as_this_kind(tmp_path, monkeypatch):
    monkeypatch.setattr(control, "check_prerequisites", lambda kind: None)
    monkeypatch.setattr("sandbox.rootfs.ensure_rootfs", lambda say, kind: None)
    monkeypatch.setattr(control, "cleanup_orphans", lambda: [])
    sandbox_dir = tmp_path / "sandbox"
    sandbox_dir.mkdir()
    saved = {"i-0live": {"state": "running", "region": "ap-northeast-2", "address": "198.51.100.10"}}
    (sandbox_dir / apistate.SUMMARY_FILE).write_text(json.dumps({"host_kind": "chroot", "instances": saved}))
    with pytest.raises(SandboxError, match="has chroot hosts, not systemd: start it with host kind chroot"):
        control.ensure_running(tmp_path)
