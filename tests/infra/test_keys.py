"""Key pairs: ed25519 created with a 0600 file, never overwritten, imports, and clear errors."""

from __future__ import annotations

import os
import stat

import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from infra import keys
from infra.results import ABSENT, CREATED, DELETED, FOREIGN, KEPT, OK
from labctl.errors import LabError

LAB = "netlab"
KEY = "labctl-netlab"


def _ensure(ec2, key_dir, public_key=None, dry_run=False):
    return keys.ensure_key_pair(ec2, LAB, KEY, key_dir, public_key, dry_run)


def _mode(path) -> int:
    return stat.S_IMODE(path.stat().st_mode)


def _user_key_pair(tmp_path):
    """A user's own ed25519 key pair on disk (private 0600, public .pub)."""
    private = Ed25519PrivateKey.generate()
    private_file = tmp_path / "id_ed25519"
    private_file.write_bytes(
        private.private_bytes(
            serialization.Encoding.PEM, serialization.PrivateFormat.OpenSSH, serialization.NoEncryption()
        )
    )
    private_file.chmod(0o600)
    public_file = tmp_path / "id_ed25519.pub"
    public_file.write_bytes(
        private.public_key().public_bytes(serialization.Encoding.OpenSSH, serialization.PublicFormat.OpenSSH)
        + b" student@laptop\n"
    )
    return private_file, public_file


def test_creates_ed25519_key_pair_and_a_0600_private_key(ec2, tmp_path):
    result, key_file = _ensure(ec2, tmp_path)
    assert result.status == CREATED
    assert _mode(key_file) == 0o600
    assert key_file.read_text().startswith("-----BEGIN OPENSSH PRIVATE KEY-----")
    pair = ec2.describe_key_pairs(KeyNames=[KEY])["KeyPairs"][0]
    assert pair["KeyType"] == "ed25519"
    assert {"Key": "labctl:project", "Value": "labctl"} in pair["Tags"]


def test_second_run_keeps_the_same_key_and_file(ec2, tmp_path):
    _, key_file = _ensure(ec2, tmp_path)
    before = key_file.read_bytes()
    result, again = _ensure(ec2, tmp_path)
    assert (result.status, again) == (OK, key_file)
    assert key_file.read_bytes() == before


def test_key_in_ec2_but_file_missing_says_how_to_fix(ec2, tmp_path):
    _, key_file = _ensure(ec2, tmp_path)
    key_file.unlink()
    with pytest.raises(LabError, match="private key file .* is missing: run `fab teardown`"):
        _ensure(ec2, tmp_path)


def test_key_file_readable_by_others_is_refused(ec2, tmp_path):
    _, key_file = _ensure(ec2, tmp_path)
    key_file.chmod(0o644)
    with pytest.raises(LabError, match=r"mode 0644, too open: run `chmod 600"):
        _ensure(ec2, tmp_path)


def test_existing_file_without_key_pair_is_never_overwritten(ec2, tmp_path):
    stale = keys.key_file_path(tmp_path, KEY)
    stale.write_text("precious\n")
    os.chmod(stale, 0o600)
    with pytest.raises(LabError, match="exists but EC2 has no key pair"):
        _ensure(ec2, tmp_path)
    assert stale.read_text() == "precious\n"
    assert not ec2.describe_key_pairs()["KeyPairs"]


def test_write_private_key_refuses_to_overwrite(tmp_path):
    target = tmp_path / "k.pem"
    target.write_text("old\n")
    with pytest.raises(LabError, match="already exists"):
        keys.write_private_key(target, "new")
    assert target.read_text() == "old\n"


def test_imports_a_public_key_and_points_at_its_private_key(ec2, tmp_path):
    private_file, public_file = _user_key_pair(tmp_path)
    result, key_file = _ensure(ec2, tmp_path / "keys", public_key=public_file)
    assert result.status == CREATED
    assert key_file == private_file.resolve()
    assert ec2.describe_key_pairs(KeyNames=[KEY])["KeyPairs"][0]["KeyType"] == "ed25519"
    result, _ = _ensure(ec2, tmp_path / "keys", public_key=public_file)
    assert result.status == OK


def test_not_a_public_key_is_a_clear_error(ec2, tmp_path):
    bogus = tmp_path / "key.pub"
    bogus.write_text("hello\n")
    with pytest.raises(LabError, match="is not an OpenSSH public key"):
        _ensure(ec2, tmp_path, public_key=bogus)


def test_untagged_key_pair_with_our_name_is_not_ours(ec2, tmp_path):
    ec2.create_key_pair(KeyName=KEY)
    with pytest.raises(LabError, match="was not created by labctl"):
        _ensure(ec2, tmp_path)


def test_dry_run_creates_nothing(ec2, tmp_path):
    result, key_file = _ensure(ec2, tmp_path, dry_run=True)
    assert (result.status, result.planned) == (CREATED, True)
    assert not key_file.exists()
    assert not ec2.describe_key_pairs()["KeyPairs"]


def test_delete_removes_pair_and_our_file_then_says_absent(ec2, tmp_path):
    _, key_file = _ensure(ec2, tmp_path)
    assert [r.status for r in keys.delete_key_pair(ec2, LAB, KEY, tmp_path)] == [DELETED, DELETED]
    assert not key_file.exists()
    assert [r.status for r in keys.delete_key_pair(ec2, LAB, KEY, tmp_path)] == [ABSENT]


def test_delete_with_keep_leaves_pair_and_file(ec2, tmp_path):
    _, key_file = _ensure(ec2, tmp_path)
    assert [r.status for r in keys.delete_key_pair(ec2, LAB, KEY, tmp_path, keep=True)] == [KEPT]
    assert key_file.exists()
    assert ec2.describe_key_pairs(KeyNames=[KEY])["KeyPairs"]


def test_delete_never_touches_an_untagged_key_pair(ec2, tmp_path):
    ec2.create_key_pair(KeyName=KEY)
    assert [r.status for r in keys.delete_key_pair(ec2, LAB, KEY, tmp_path)] == [FOREIGN]
    assert ec2.describe_key_pairs(KeyNames=[KEY])["KeyPairs"]


def test_delete_never_removes_the_users_own_private_key(ec2, tmp_path):
    private_file, public_file = _user_key_pair(tmp_path)
    _ensure(ec2, tmp_path / "keys", public_key=public_file)
    keys.delete_key_pair(ec2, LAB, KEY, tmp_path / "keys")
    assert private_file.exists()
