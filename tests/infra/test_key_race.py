"""Issue 12 item 1: whatever the interleaving, exactly one key pair exists, its private key on disk, 0600."""

from __future__ import annotations

import os
import stat
import threading
import time

import boto3
import pytest

from infra import keys
from infra.errors import CloudError
from infra.results import CREATED, OK
from infra.tags import tag_specifications

from .conftest import REGION

LAB = "netlab"
KEY = "labctl-netlab"
PRIVATE = "-----BEGIN OPENSSH PRIVATE KEY-----"


def _pair_names(ec2) -> list[str]:
    return [pair["KeyName"] for pair in ec2.describe_key_pairs()["KeyPairs"]]


def _mode(path) -> int:
    return stat.S_IMODE(path.stat().st_mode)


def test_racing_runs_make_one_key_pair_and_keep_its_key(ec2, tmp_path):
    start = threading.Barrier(4)
    results, errors = [], []

    def run():
        client = boto3.client("ec2", region_name=REGION)
        start.wait()
        try:
            results.append(keys.ensure_key_pair(client, LAB, KEY, tmp_path)[0].status)
        except Exception as exc:  # noqa: BLE001 - reported below
            errors.append(exc)

    threads = [threading.Thread(target=run) for _ in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(60)
    assert errors == [] and sorted(results) == [CREATED, OK, OK, OK]
    key_file = keys.key_file_path(tmp_path, KEY)
    assert [p.name for p in tmp_path.iterdir()] == [key_file.name]
    assert key_file.read_text().startswith(PRIVATE) and _mode(key_file) == 0o600
    assert _pair_names(ec2) == [KEY]


def test_a_key_file_another_run_is_creating_is_waited_for_never_deleted(ec2, tmp_path):
    """The old loser took the winner's empty placeholder for an abandoned one and deleted it and the pair."""
    key_file = keys.key_file_path(tmp_path, KEY)
    fd = keys.reserve_key_file(key_file)  # run A, between reserving the file and saving the key
    created = ec2.create_key_pair(
        KeyName=KEY, KeyType="ed25519", TagSpecifications=tag_specifications("key-pair", LAB, None)
    )
    outcome = []
    loser = threading.Thread(
        target=lambda: outcome.append(keys.ensure_key_pair(boto3.client("ec2", REGION), LAB, KEY, tmp_path))
    )
    loser.start()
    time.sleep(0.6)
    assert loser.is_alive() and key_file.exists() and _pair_names(ec2) == [KEY]  # run B waits
    keys.fill_key_file(fd, key_file, created["KeyMaterial"])
    os.close(fd)
    loser.join(30)
    ((result, found),) = outcome
    assert (result.status, found) == (OK, key_file)
    assert key_file.read_text() == created["KeyMaterial"].rstrip("\n") + "\n"
    assert _pair_names(ec2) == [KEY]


def test_an_abandoned_placeholder_nobody_holds_is_still_replaced(ec2, tmp_path):
    key_file = keys.key_file_path(tmp_path, KEY)
    os.close(keys.reserve_key_file(key_file))  # a run that died before saving its key
    ec2.create_key_pair(KeyName=KEY, TagSpecifications=tag_specifications("key-pair", LAB, None))
    before = ec2.describe_key_pairs()["KeyPairs"][0]["KeyPairId"]
    result, _ = keys.ensure_key_pair(ec2, LAB, KEY, tmp_path)
    assert result.status == CREATED and key_file.read_text().startswith(PRIVATE)
    assert [p["KeyPairId"] for p in ec2.describe_key_pairs()["KeyPairs"]] != [before]


def test_duplicate_from_a_run_elsewhere_is_one_line_and_deletes_nothing(ec2, tmp_path):
    """EC2 says Duplicate: the pair was made by a run without this state dir; its key is not here."""
    elsewhere = boto3.client("ec2", region_name=REGION)

    def other_run_wins(**kwargs):
        elsewhere.create_key_pair(KeyName=KEY, TagSpecifications=tag_specifications("key-pair", LAB, None))

    ec2.meta.events.register_first("before-call.ec2.CreateKeyPair", other_run_wins)
    with pytest.raises(CloudError) as failure:
        keys.ensure_key_pair(ec2, LAB, KEY, tmp_path)
    key_file = keys.key_file_path(tmp_path, KEY)
    assert str(failure.value) == (
        f"key pair {KEY} was just created by another labctl run that does not use this state dir: its "
        f"private key is not in {key_file}; use that run's state dir (LAB_STATE_DIR), or delete the key "
        "pair there with `fab teardown`, then re-run"
    )
    assert not key_file.exists() and list(tmp_path.iterdir()) == []
    assert _pair_names(ec2) == [KEY]  # not ours to delete


@pytest.mark.parametrize("umask", [0o000, 0o022])
def test_the_key_file_is_0600_whatever_the_umask(ec2, tmp_path, umask):
    old = os.umask(umask)
    try:
        _, key_file = keys.ensure_key_pair(ec2, LAB, KEY, tmp_path)
    finally:
        os.umask(old)
    assert _mode(key_file) == 0o600


def test_a_key_file_removed_while_saving_is_never_recreated_through_the_umask(tmp_path):
    key_file = tmp_path / "k.pem"
    fd = keys.reserve_key_file(key_file)
    key_file.unlink()  # e.g. another process cleaned up the path
    try:
        with pytest.raises(CloudError, match="was removed while labctl saved the new private key"):
            keys.fill_key_file(fd, key_file, PRIVATE)
    finally:
        os.close(fd)
    assert not key_file.exists()
