"""Key pairs: created in EC2 (ed25519) or imported, the private key kept in a 0600 file, never overwritten."""

from __future__ import annotations

import os
import threading
import time
from pathlib import Path

from infra.errors import CloudError

from . import keyfile_perms
from .errors import error_code
from .results import ABSENT, CREATED, DELETED, FOREIGN, KEPT, OK, Result
from .tags import is_ours, tag_specifications

try:
    import fcntl
except ImportError:  # Windows: no flock; a concurrent creator's file looks abandoned there
    fcntl = None

DEFAULT_KEY_TYPE = "ed25519"
CREATOR_WAIT = 120.0  # seconds to wait for another run that is creating the same key right now


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


def reserve_key_file(path: Path) -> int:
    """Create the private key file empty (0600) before EC2 makes the key; refuse an existing file.

    Returns the file's descriptor, holding an exclusive `flock` on it: while this process creates the key,
    another run sees the empty file as taken, not as abandoned. The file appears under its name already
    locked (made under a temporary name, then hard-linked, which fails like O_EXCL if the name exists).
    An empty file nobody holds means a run stopped between creating the key pair and saving its key.
    """
    tmp = path.with_name(f".{path.name}.{os.getpid()}.{threading.get_ident()}.new")
    fd = os.open(tmp, os.O_RDWR | os.O_CREAT | os.O_EXCL, 0o600)  # never through the umask
    try:
        os.fchmod(fd, 0o600)
        _lock(fd, blocking=True)
        try:
            os.link(tmp, path)
        except FileExistsError:
            raise KeyFileTaken(path) from None
    except BaseException:
        os.close(fd)
        raise
    finally:
        tmp.unlink(missing_ok=True)
    try:
        keyfile_perms.restrict_key_file(path)
    except BaseException:
        _release_reservation(fd, path)
        raise
    return fd


class KeyFileTaken(CloudError):
    """The key file appeared between looking and reserving it (another run is creating the key)."""

    def __init__(self, path: Path) -> None:
        super().__init__(
            f"key file {path} already exists but EC2 has no such key pair: move the file away and re-run"
        )
        self.path = path


def fill_key_file(fd: int, path: Path, material: str) -> None:
    """Write the private key through the descriptor `reserve_key_file` returned (mode stays 0600)."""
    data = (material if material.endswith("\n") else material + "\n").encode()
    view = memoryview(data)
    while view:
        view = view[os.write(fd, view) :]
    os.fsync(fd)
    if not _same_file(fd, path):
        raise CloudError(
            f"key file {path} was removed while labctl saved the new private key into it: "
            "run `fab teardown`, then re-run"
        )


def _same_file(fd: int, path: Path) -> bool:
    try:
        return os.path.samestat(os.fstat(fd), os.stat(path))
    except OSError:
        return False


def _lock(fd: int, blocking: bool) -> bool:
    """An exclusive flock on `fd` (True), or False when another open file holds one and not `blocking`."""
    if fcntl is None:
        return True
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | (0 if blocking else fcntl.LOCK_NB))
    except BlockingIOError:
        return False
    return True


def _release_reservation(fd: int, path: Path) -> None:
    """Remove the empty file this process reserved (and still holds), then let go of it."""
    try:
        if _same_file(fd, path) and os.fstat(fd).st_size == 0:
            path.unlink()
    finally:
        os.close(fd)


def _wait_for_creator(key_file: Path, timeout: float = CREATOR_WAIT) -> None:
    """If another process holds `key_file` (it is creating the key right now), wait until it lets go."""
    deadline = time.monotonic() + timeout
    while True:
        try:
            fd = os.open(key_file, os.O_RDONLY)
        except FileNotFoundError:
            return
        try:
            if _lock(fd, blocking=False):
                return
        finally:
            os.close(fd)
        if time.monotonic() >= deadline:
            raise CloudError(
                f"another run has been creating the key in {key_file} for over {timeout:.0f} s: "
                "let it finish, then re-run"
            )
        time.sleep(0.1)


def _never_saved(key_file: Path | None) -> bool:
    """True for the empty file an interrupted key creation leaves behind."""
    return key_file is not None and key_file.exists() and key_file.stat().st_size == 0


def _discard_unsaved_key(ec2, pair: dict | None, key_file: Path) -> bool:
    """Nobody holds the private key of a pair whose file stayed empty: delete the pair and the file.

    Only when no live process holds the file (its creator is gone) and it is still empty; False (nothing
    deleted) when another run took it meanwhile.
    """
    try:
        fd = os.open(key_file, os.O_RDONLY)
    except FileNotFoundError:
        return True
    try:
        if not _lock(fd, blocking=False) or os.fstat(fd).st_size != 0 or not _same_file(fd, key_file):
            return False
        if pair is not None:
            ec2.delete_key_pair(KeyName=pair["KeyName"])
        key_file.unlink()
        return True
    finally:
        os.close(fd)


def _create_key_pair(ec2, lab: str, key_name: str, key_file: Path, tags: dict[str, str] | None) -> None:
    """Create the key pair in EC2 and save its private key; the file is reserved first (see above).

    If EC2 already has the pair (another state dir or machine made it between our look and our call), our
    empty reservation is removed and the error says so: that pair's private key is not here.
    """
    from botocore.exceptions import ClientError

    fd = reserve_key_file(key_file)
    try:
        try:
            created = ec2.create_key_pair(
                KeyName=key_name,
                KeyType=DEFAULT_KEY_TYPE,
                TagSpecifications=tag_specifications("key-pair", lab, tags),
            )
        except ClientError as exc:
            _release_reservation(fd, key_file)  # EC2 refused: no key pair of ours, so no reservation either
            fd = -1
            if error_code(exc) == "InvalidKeyPair.Duplicate":
                raise CloudError(
                    f"key pair {key_name} was just created by another labctl run that does not use this "
                    f"state dir: its private key is not in {key_file}; use that run's state dir "
                    "(LAB_STATE_DIR), or delete the key pair there with `fab teardown`, then re-run"
                ) from None
            raise
        except Exception:
            _release_reservation(fd, key_file)  # as the original: a failed call leaves no reservation
            fd = -1
            raise
        # Ctrl-C during the call: the pair may exist; the empty file stays for the next run to discard
        fill_key_file(fd, key_file, created["KeyMaterial"])
    finally:
        if fd >= 0:
            os.close(fd)


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
    if public_key is not None:
        return _ensure_imported(ec2, lab, key_name, public_key, dry_run, tags)
    key_file = key_file_path(key_dir, key_name)
    for _ in range(5):  # another run may change the key file between a look and an action: look again
        result = _ensure_own_key(ec2, lab, key_name, key_file, dry_run, tags)
        if result is not None:
            return result, key_file
    raise CloudError(f"key file {key_file} keeps changing under another run: let it finish, then re-run")


def _ensure_own_key(
    ec2, lab: str, key_name: str, key_file: Path, dry_run: bool, tags: dict[str, str] | None
) -> Result | None:
    """One look at EC2 and the key file, then one step; None when the file changed meanwhile."""
    _wait_for_creator(key_file)  # a run creating this very key right now finishes first
    pair = describe_key_pair(ec2, key_name)
    if _never_saved(key_file) and (pair is None or is_ours(pair, lab)):
        if dry_run:
            return Result(CREATED, f"key pair {key_name}", "would create (the last was never saved)", True)
        _discard_unsaved_key(ec2, pair, key_file)
        return None  # discarded, or another run took the file: look again either way
    if pair is not None:
        return _existing_key_result(pair, lab, key_file, imported=False)
    if key_file.exists():
        _wait_for_creator(key_file)
        if describe_key_pair(ec2, key_name) is not None:
            return None  # another run made the pair and its file after our look: look again
        raise CloudError(
            f"key file {key_file} exists but EC2 has no key pair {key_name}: move the file away and re-run"
        )
    if dry_run:
        return Result(CREATED, f"key pair {key_name}", "would create", True)
    try:
        _create_key_pair(ec2, lab, key_name, key_file, tags)
    except KeyFileTaken:
        return None  # another run reserved the file first: its key pair is adopted on the next look
    return Result(CREATED, f"key pair {key_name}", f"{DEFAULT_KEY_TYPE}, private key {key_file} (0600)")


def _ensure_imported(
    ec2, lab: str, key_name: str, public_key: Path, dry_run: bool, tags: dict[str, str] | None
) -> tuple[Result, Path | None]:
    """The key pair from the user's public key; the private key (next to it, if there) stays theirs."""
    key_file = private_key_for(public_key)
    material = read_public_key(public_key)
    pair = describe_key_pair(ec2, key_name)
    if pair is not None:
        return _existing_key_result(pair, lab, key_file, imported=True), key_file
    if dry_run:
        return Result(CREATED, f"key pair {key_name}", "would import", True), key_file
    ec2.import_key_pair(
        KeyName=key_name,
        PublicKeyMaterial=material,
        TagSpecifications=tag_specifications("key-pair", lab, tags),
    )
    return Result(CREATED, f"key pair {key_name}", f"imported {public_key}"), key_file


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
