"""A private sshd on 127.0.0.1 for connection tests (root only): own host key, own authorized_keys.

Used only to test host-key pinning and login; no lab step runs against this machine.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import signal
import socket
import subprocess
import time
from dataclasses import dataclass
from pathlib import Path

from lab.target import HostTarget

PRIVSEP_DIR = Path("/run/sshd")


@dataclass(frozen=True)
class LocalSshd:
    port: int
    host_key_type: str
    host_key_b64: str
    client_key: str


def keygen(path: Path, key_type: str = "ed25519") -> tuple[str, str]:
    subprocess.run(["ssh-keygen", "-q", "-t", key_type, "-N", "", "-f", str(path)], check=True)
    key_type_name, b64 = Path(f"{path}.pub").read_text().split()[:2]
    return key_type_name, b64


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def wait_port(port: int, proc: subprocess.Popen, timeout: float = 10.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"sshd exited early: {proc.stderr.read() if proc.stderr else ''}")
        with contextlib.suppress(OSError), socket.create_connection(("127.0.0.1", port), timeout=1):
            return
        time.sleep(0.05)
    raise RuntimeError("sshd did not start listening")


@contextlib.contextmanager
def local_sshd(tmp: Path):
    """Run sshd -D on a free loopback port; yields a LocalSshd; kills it (by pid) on exit."""
    host_key = tmp / "host_ed25519"
    client_key = tmp / "client_ed25519"
    kt, kb64 = keygen(host_key)
    ct, cb64 = keygen(client_key)
    (tmp / "authorized_keys").write_text(f"{ct} {cb64}\n")
    port = free_port()
    config = tmp / "sshd_config"
    config.write_text(
        f"Port {port}\nListenAddress 127.0.0.1\nHostKey {host_key}\n"
        f"AuthorizedKeysFile {tmp}/authorized_keys\n"
        f"PidFile {tmp}/sshd.pid\nUsePAM no\nPermitRootLogin prohibit-password\nPasswordAuthentication no\n"
        "StrictModes no\nSubsystem sftp internal-sftp\n"
    )
    # sshd needs its privilege-separation directory; it is openssh's own runtime dir (on tmpfs), left in
    # place because other sshd processes of this machine may need it at the same moment.
    PRIVSEP_DIR.mkdir(mode=0o755, exist_ok=True)
    sshd = shutil.which("sshd") or "/usr/sbin/sshd"
    proc = subprocess.Popen([sshd, "-D", "-e", "-f", str(config)], stderr=subprocess.PIPE, text=True)
    try:
        wait_port(port, proc)
        yield LocalSshd(port, kt, kb64, str(client_key))
    finally:
        with contextlib.suppress(ProcessLookupError):
            os.kill(proc.pid, signal.SIGTERM)
        try:
            proc.wait(timeout=5)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
        if proc.stderr:
            proc.stderr.close()


def target_for(sshd: LocalSshd, host_keys=()) -> HostTarget:
    """The private sshd as a bring-your-own host (root@127.0.0.1), with `host_keys` pinned."""
    return HostTarget(
        name="local",
        address="127.0.0.1",
        user="root",
        key_file=sshd.client_key,
        port=sshd.port,
        host_keys=tuple(host_keys),
        target="byo",
    )
