"""Key pairs: created in EC2 (ed25519) or imported, the private key kept in a 0600 file, never overwritten."""

from __future__ import annotations

import os
from pathlib import Path

from infra.errors import CloudError

from . import keyfile_perms
from .errors import error_code
from .results import ABSENT, CREATED, DELETED, FOREIGN, KEPT, OK, Result
from .tags import is_ours, tag_specifications

DEFAULT_KEY_TYPE = "ed25519"


def key_file_path(key_dir: Path, key_name: str) -> Path:
    return key_dir / f"{key_name}.pem"


def describe_key_pair(ec2, key_name: str) -> dict | None:
    """The key pair called `key_name`, or None."""
    from botocore.exceptions import ClientError

    try:
        pairs = ec2.describe_key_pairs(KeyNames=[key_name])["KeyPairs"]
    except ClientError as exc:
        if error_code(exc) == "InvalidKeyPair.NotFound":
            return None
        raise
    return pairs[0] if pairs else None


def check_key_file_mode(path: Path) -> None:
    """Raise a CloudError when a private key file is readable by group or others (ssh refuses it too)."""
    keyfile_perms.check_key_file(path)  # POSIX mode bits; on Windows the owner-only ACL


def write_private_key(path: Path, material: str) -> None:
    """Write a new private key file with mode 0600; refuse to overwrite an existing file."""
    try:
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    except FileExistsError:
        raise CloudError(
            f"key file {path} already exists but EC2 has no such key pair: move the file away and re-run"
        ) from None
    with os.fdopen(fd, "w") as f:
        f.write(material if material.endswith("\n") else material + "\n")
    keyfile_perms.restrict_key_file(path)


def reserve_key_file(path: Path) -> None:
    """Create the private key file empty (0600) before EC2 makes the key; refuse an existing file.

    An empty file found later means a run stopped between creating the key pair and saving its key.
    """
    try:
        os.close(os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600))
    except FileExistsError:
        raise CloudError(
            f"key file {path} already exists but EC2 has no such key pair: move the file away and re-run"
        ) from None
    keyfile_perms.restrict_key_file(path)


def fill_key_file(path: Path, material: str) -> None:
    """Write the private key into the file `reserve_key_file` made."""
    with open(path, "w") as f:
        f.write(material if material.endswith("\n") else material + "\n")


def _never_saved(key_file: Path | None) -> bool:
    """True for the empty file an interrupted key creation leaves behind."""
    return key_file is not None and key_file.exists() and key_file.stat().st_size == 0


def _discard_unsaved_key(ec2, pair: dict | None, key_file: Path) -> None:
    """Nobody holds the private key of a pair whose file stayed empty: delete the pair and the file."""
    if pair is not None:
        ec2.delete_key_pair(KeyName=pair["KeyName"])
    key_file.unlink()


def _create_key_pair(ec2, lab: str, key_name: str, key_file: Path, tags: dict[str, str] | None) -> None:
    """Create the key pair in EC2 and save its private key; the file is reserved first (see above)."""
    reserve_key_file(key_file)
    try:
        created = ec2.create_key_pair(
            KeyName=key_name,
            KeyType=DEFAULT_KEY_TYPE,
            TagSpecifications=tag_specifications("key-pair", lab, tags),
        )
    except Exception:
        key_file.unlink()  # EC2 refused: no key pair, so no reservation either
        raise
    fill_key_file(key_file, created["KeyMaterial"])


def read_public_key(public_key: Path) -> bytes:
    try:
        material = Path(public_key).expanduser().read_bytes()
    except OSError as exc:
        raise CloudError(f"cannot read --public-key {public_key}: {exc.strerror}") from None
    if not material.strip().startswith((b"ssh-", b"ecdsa-")):
        raise CloudError(
            f"--public-key {public_key} is not an OpenSSH public key (expected ssh-ed25519/ssh-rsa ...)"
        )
    return material.strip()


def private_key_for(public_key: Path) -> Path | None:
    """The private key next to an OpenSSH public key (`id_ed25519.pub` → `id_ed25519`), if present."""
    public_key = Path(public_key).expanduser()
    candidate = public_key.with_suffix("") if public_key.suffix == ".pub" else None
    return candidate.resolve() if candidate and candidate.exists() else None


def _existing_key_result(pair: dict, lab: str, key_file: Path | None, imported: bool) -> Result:
    name = pair["KeyName"]
    if not is_ours(pair, lab):
        raise CloudError(
            f"key pair {name} exists but was not created by labctl for lab {lab!r}: "
            "delete it or pick another --name"
        )
    if key_file is None:
        return Result(OK, f"key pair {name}", "imported public key; use your own private key")
    if not key_file.exists():
        hint = (
            "pass --public-key with the matching public key"
            if imported
            else "run `fab teardown` (or delete it)"
        )
        raise CloudError(
            f"key pair {name} exists in EC2 but its private key file {key_file} is missing: "
            f"{hint}, then re-run"
        )
    check_key_file_mode(key_file)
    return Result(OK, f"key pair {name}", f"private key {key_file}")


def ensure_key_pair(
    ec2,
    lab: str,
    key_name: str,
    key_dir: Path,
    public_key: Path | None = None,
    dry_run: bool = False,
    tags: dict[str, str] | None = None,
) -> tuple[Result, Path | None]:
    """Make sure our key pair exists; returns the result and the private key file (None if unknown)."""
    key_file = private_key_for(public_key) if public_key else key_file_path(key_dir, key_name)
    material = read_public_key(public_key) if public_key else None
    pair = describe_key_pair(ec2, key_name)
    if public_key is None and _never_saved(key_file) and (pair is None or is_ours(pair, lab)):
        if dry_run:
            return Result(
                CREATED, f"key pair {key_name}", "would create (the last was never saved)", True
            ), key_file
        _discard_unsaved_key(ec2, pair, key_file)
        pair = None
    if pair is not None:
        return _existing_key_result(pair, lab, key_file, imported=public_key is not None), key_file
    if key_file is not None and public_key is None and key_file.exists():
        raise CloudError(
            f"key file {key_file} exists but EC2 has no key pair {key_name}: move the file away and re-run"
        )
    if dry_run:
        return Result(
            CREATED, f"key pair {key_name}", "would import" if material else "would create", True
        ), key_file
    if material is not None:
        ec2.import_key_pair(
            KeyName=key_name,
            PublicKeyMaterial=material,
            TagSpecifications=tag_specifications("key-pair", lab, tags),
        )
        return Result(CREATED, f"key pair {key_name}", f"imported {public_key}"), key_file
    _create_key_pair(ec2, lab, key_name, key_file, tags)
    return Result(
        CREATED, f"key pair {key_name}", f"{DEFAULT_KEY_TYPE}, private key {key_file} (0600)"
    ), key_file


def delete_key_pair(ec2, lab: str, key_name: str, key_dir: Path, keep: bool = False) -> list[Result]:
    """Delete our key pair and the private key file labctl saved; never a key pair without our tags.

    An imported key's private file belongs to the user and is never touched.
    """
    key_file = key_file_path(key_dir, key_name)
    pair = describe_key_pair(ec2, key_name)
    if pair is not None and not is_ours(pair, lab):
        return [Result(FOREIGN, f"key pair {key_name}", "has no labctl tags for this lab: left alone")]
    if keep:
        return (
            [Result(KEPT, f"key pair {key_name}", "--keep-key: kept, with its file if any")] if pair else []
        )
    results = []
    if pair is None:
        results.append(Result(ABSENT, f"key pair {key_name}"))
    else:
        ec2.delete_key_pair(KeyName=key_name)
        results.append(Result(DELETED, f"key pair {key_name}"))
    results.extend(_delete_key_file(key_file))
    return results


def _delete_key_file(key_file: Path) -> list[Result]:
    if not key_file.exists():
        return []
    key_file.unlink()
    return [Result(DELETED, f"key file {key_file}")]
