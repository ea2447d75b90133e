"""One pinned SSH connection per host: wait for sshd, check its host key, never prompt.

AWS and sandbox hosts come with the host keys read from the console output: those are loaded into the
paramiko client and anything else is rejected. A bring-your-own host is checked against known_hosts (the
user's and the state directory's); an unknown key is trusted only with an explicit flag and then saved.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import os
import socket
import time
from pathlib import Path

import paramiko
from fabric import Config, Connection

from lab.errors import HostError
from lab.target import HostTarget

BANNER_PREFIX = b"SSH-"
KNOWN_HOSTS_FILE = "known_hosts"


class HostKeyMismatch(HostError):
    """The host presented a key other than the pinned/known one: the connection was refused."""


def open_connection(
    host: HostTarget,
    *,
    ssh_timeout: float = 180.0,
    trust_new_host: bool = False,
    known_hosts_file: Path | None = None,
    config: Config | None = None,
) -> Connection:
    """Wait for SSH on `host`, then open and return its one Connection (host key checked).

    A host without pinned keys is checked against ~/.ssh/known_hosts and `known_hosts_file` (the lab's own,
    where a key trusted on first use is saved).
    """
    wait_for_ssh(host.address, host.port, timeout=ssh_timeout)
    conn = Connection(
        host.address,
        user=host.user,
        port=host.port,
        config=config,
        connect_timeout=15,
        connect_kwargs=connect_kwargs(host),
    )
    if host.host_keys:
        pin_host_keys(conn.client, host)
    else:
        use_known_hosts(conn.client, trust_new_host, known_hosts_file)
    authenticate(conn, host)
    return conn


def connect_kwargs(host: HostTarget) -> dict:
    if not host.key_file:
        return {}
    return {"key_filename": [host.key_file], "look_for_keys": False, "allow_agent": False}


def authenticate(conn: Connection, host: HostTarget) -> None:
    """Open the SSH session, turning paramiko's exceptions into one-line LabErrors."""
    where = f"{host.user}@{host.address}:{host.port}"
    try:
        conn.open()
    except paramiko.BadHostKeyException as exc:
        if host.host_keys:
            raise HostKeyMismatch(changed_key_message(where, host, exc.key)) from None
        raise HostKeyMismatch(
            f"host key of {where} does not match the known key ({exc.key.get_name()} "
            f"{fingerprint(exc.key)}): this is not the machine you connected to before (or it was rebuilt); "
            "check the host, then remove the stale known_hosts entry"
        ) from None
    except paramiko.SSHException as exc:
        if host.host_keys and "known_hosts" in str(exc):  # a key type other than the pinned ones
            raise HostKeyMismatch(changed_key_message(where, host, None)) from None
        if "known_hosts" in str(exc):
            raise HostError(
                f"host key of {where} is unknown: add it to ~/.ssh/known_hosts (ssh-keyscan, checked against "
                f"the console) or pass --trust-new-host to trust it on first use"
            ) from None
        if isinstance(exc, paramiko.AuthenticationException):
            raise HostError(
                f"SSH login as {where} was refused: wrong user or key "
                f"({host.key_file or 'ssh config/agent'}); "
                f"Ubuntu images log in as 'ubuntu' with the key pair the instance was launched with"
            ) from None
        raise HostError(f"SSH to {where} failed: {exc}") from None
    except OSError as exc:
        raise HostError(f"SSH to {where} failed: {exc}; is the instance still running?") from None


def fingerprint(key: paramiko.PKey) -> str:
    """`SHA256:...`, as `ssh-keygen -l` and cloud-init's fingerprint block show it."""
    digest = hashlib.sha256(key.asbytes()).digest()
    return "SHA256:" + base64.b64encode(digest).decode().rstrip("=")


def changed_key_message(where: str, host: HostTarget, presented: paramiko.PKey | None) -> str:
    """One line for a host whose key is not the one pinned from its console: what happened, what to do.

    The pinned keys are kept (cloud-init prints the keys once per instance, so the console cannot vouch for
    a new key after a reboot): only the user, after checking, drops them with `fab forget-host-keys`.
    """
    instance = f" (instance {host.instance_id})" if host.instance_id else ""
    now = f"; it now presents {presented.get_name()} {fingerprint(presented)}" if presented else ""
    return (
        f"host key of {where}{instance} does not match the key pinned when the instance was first seen{now}: "
        "refused, as this may be a man-in-the-middle or a rebuilt root volume; check the SSH HOST KEY block "
        "in the instance's system log (EC2 console: Monitor and troubleshoot > Get system log): if it shows "
        "this new key, run `fab forget-host-keys` and re-run, otherwise `fab teardown` then `fab provision`"
    )


def host_key_entry(address: str, port: int) -> str:
    """The known_hosts name of a host: `addr` on port 22, `[addr]:port` otherwise."""
    return address if port == 22 else f"[{address}]:{port}"


def decode_host_key(key_type: str, key_b64: str) -> paramiko.PKey | None:
    """A paramiko key from a (type, base64) pair as printed in the console output.

    None for a key type paramiko cannot load (`ssh-dss` since paramiko 4, `sk-*` security-key types).
    """
    try:
        return paramiko.PKey.from_type_string(key_type, base64.b64decode(key_b64))
    except paramiko.UnknownKeyType:
        return None
    except (binascii.Error, ValueError, paramiko.SSHException) as exc:
        raise HostError(
            f"cannot read the pinned host key ({key_type}): {exc}; re-run fab provision"
        ) from None


def pin_host_keys(client: paramiko.SSHClient, host: HostTarget) -> None:
    """Trust exactly the host's pinned keys (those paramiko can check) and reject every other key."""
    entry = host_key_entry(host.address, host.port)
    keys = client.get_host_keys()
    keys.clear()
    for key_type, key_b64 in host.host_keys:
        key = decode_host_key(key_type, key_b64)
        if key is not None:
            keys.add(entry, key_type, key)
    if not keys.lookup(entry):
        types = ", ".join(key_type for key_type, _ in host.host_keys)
        raise HostError(
            f"none of the host keys of {host.address} read from its console ({types}) is a type SSH here "
            "can check: enable an ed25519, ecdsa or rsa host key on the instance"
        )
    client.set_missing_host_key_policy(paramiko.RejectPolicy())


def use_known_hosts(client: paramiko.SSHClient, trust_new_host: bool, lab_file: Path | None) -> None:
    """Check against known_hosts; with `trust_new_host`, accept and save an unknown key in `lab_file`."""
    user_file = Path("~/.ssh/known_hosts").expanduser()
    if user_file.exists():
        client.load_system_host_keys(str(user_file))
    if lab_file is not None and lab_file.exists():
        client.load_host_keys(str(lab_file))
    if trust_new_host and lab_file is None:
        raise ValueError("trusting a new host key needs a known_hosts file to save it in")
    policy = SaveNewKeyPolicy(lab_file) if trust_new_host else paramiko.RejectPolicy()
    client.set_missing_host_key_policy(policy)


class SaveNewKeyPolicy(paramiko.MissingHostKeyPolicy):
    """First-use trust: accept an unknown host key and append it to the lab's known_hosts (0600)."""

    def __init__(self, path: Path) -> None:
        self.path = path

    def missing_host_key(self, client, hostname, key) -> None:
        client.get_host_keys().add(hostname, key.get_name(), key)
        fd = os.open(self.path, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o600)
        with os.fdopen(fd, "a") as f:
            f.write(f"{hostname} {key.get_name()} {key.get_base64()}\n")


def wait_for_ssh(address: str, port: int = 22, *, timeout: float = 180.0) -> None:
    """Return once `address:port` accepts TCP and sends an SSH banner; HostError naming the cause if not."""
    deadline = time.monotonic() + timeout
    delay = 0.2
    last_problem = "no attempt made"
    while True:
        last_problem = probe_ssh(address, port, timeout=min(5.0, max(0.5, deadline - time.monotonic())))
        if last_problem is None:
            return
        if time.monotonic() + delay > deadline:
            raise HostError(f"SSH on {address}:{port} not ready after {timeout:.0f} s: {last_problem}")
        time.sleep(delay)
        delay = min(delay * 2, 5.0)


def probe_ssh(address: str, port: int, *, timeout: float) -> str | None:
    """None when an SSH banner arrives; otherwise the probable cause as a short phrase."""
    try:
        sock = socket.create_connection((address, port), timeout=timeout)
    except ConnectionRefusedError:
        return "connection refused (the instance is booting or sshd is not running)"
    except socket.timeout:
        return (
            f"connection timed out (the security group has no rule for port {port} from your address, "
            f"or the instance is not running)"
        )
    except OSError as exc:
        return f"{exc.strerror or exc} (no route to the instance: is it running, is the address right?)"
    with sock:
        return read_banner_problem(sock, port, timeout)


def read_banner_problem(sock: socket.socket, port: int, timeout: float) -> str | None:
    sock.settimeout(timeout)
    try:
        banner = sock.recv(64)
    except socket.timeout:
        return f"port {port} accepts connections but sends no SSH banner (sshd still starting?)"
    except OSError as exc:
        return f"port {port} closed the connection before the SSH banner ({exc.strerror or exc})"
    if not banner.startswith(BANNER_PREFIX):
        return f"port {port} answered but is not SSH (got {banner[:20]!r})"
    return None
