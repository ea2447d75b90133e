"""Waiting for SSH and host-key checking, against real sockets and a private sshd on loopback."""

from __future__ import annotations

import socket
import threading

import pytest

from lab import connect
from lab.remote import Host
from lab.result import HostReport
from labctl.errors import LabError
from tests.support.local_sshd import keygen, target_for


class OneShotServer:
    """A loopback TCP listener that sends `greeting` to every client (None: accept and stay silent)."""

    def __init__(self, greeting: bytes | None):
        self.sock = socket.socket()
        self.sock.bind(("127.0.0.1", 0))
        self.sock.listen(8)
        self.port = self.sock.getsockname()[1]
        self.greeting = greeting
        self.clients: list[socket.socket] = []
        threading.Thread(target=self.serve, daemon=True).start()

    def serve(self):
        while True:
            try:
                client, _ = self.sock.accept()
            except OSError:
                return
            self.clients.append(client)
            if self.greeting is not None:
                client.sendall(self.greeting)

    def close(self):
        self.sock.close()
        for c in self.clients:
            c.close()


@pytest.fixture
def server_factory():
    servers = []

    def make(greeting):
        servers.append(OneShotServer(greeting))
        return servers[-1]

    yield make
    for s in servers:
        s.close()


def test_probe_accepts_an_ssh_banner(server_factory):
    server = server_factory(b"SSH-2.0-OpenSSH_8.2p1 Ubuntu\r\n")
    assert connect.probe_ssh("127.0.0.1", server.port, timeout=2) is None
    connect.wait_for_ssh("127.0.0.1", server.port, timeout=5)


def test_probe_names_a_non_ssh_service(server_factory):
    server = server_factory(b"HTTP/1.1 400 Bad Request\r\n")
    assert "is not SSH" in connect.probe_ssh("127.0.0.1", server.port, timeout=2)


def test_probe_names_a_silent_port(server_factory):
    server = server_factory(None)
    assert "no SSH banner" in connect.probe_ssh("127.0.0.1", server.port, timeout=0.5)


def test_wait_for_ssh_gives_up_with_the_cause(free_port):
    with pytest.raises(LabError) as err:
        connect.wait_for_ssh("127.0.0.1", free_port, timeout=1)
    message = str(err.value)
    assert f"SSH on 127.0.0.1:{free_port} not ready after 1 s" in message
    assert "connection refused" in message
    assert "\n" not in message


def test_host_key_entry_format():
    assert connect.host_key_entry("198.51.100.10", 22) == "198.51.100.10"
    assert connect.host_key_entry("127.0.0.1", 2222) == "[127.0.0.1]:2222"


def test_bad_pinned_key_is_a_lab_error():
    with pytest.raises(LabError, match="cannot read the pinned host key"):
        connect.decode_host_key("ssh-ed25519", "bm90IGEga2V5")


@pytest.mark.root
def test_pinned_key_connects(sshd):
    pinned = [(sshd.host_key_type, sshd.host_key_b64)]
    conn = connect.open_connection(target_for(sshd, pinned), ssh_timeout=10)
    try:
        assert conn.run("echo pinned", hide=True, in_stream=False).stdout == "pinned\n"
    finally:
        conn.close()


@pytest.mark.root
def test_other_pinned_key_is_rejected(sshd, tmp_path):
    other_type, other_b64 = keygen(tmp_path / "impostor")
    with pytest.raises(LabError, match="host key of root@127.0.0.1:.* is unknown|does not match"):
        connect.open_connection(target_for(sshd, [(other_type, other_b64)]), ssh_timeout=10)


@pytest.mark.root
def test_a_changed_host_key_is_refused_with_one_clear_line(sshd, tmp_path):
    """Issue 14: the key pinned from the console when the instance was first seen differs from the host's."""
    from dataclasses import replace

    pinned = keygen(tmp_path / "first-seen")
    target = replace(target_for(sshd, [pinned]), instance_id="i-0123456789abcdef0", target="aws")
    presented = connect.decode_host_key(sshd.host_key_type, sshd.host_key_b64)
    with pytest.raises(connect.HostKeyMismatch) as caught:
        connect.open_connection(target, ssh_timeout=10)
    message = str(caught.value)
    assert "\n" not in message
    now = f"{sshd.host_key_type} {connect.fingerprint(presented)}"
    assert message.startswith(
        f"host key of root@127.0.0.1:{sshd.port} (instance i-0123456789abcdef0) does not match the key "
        f"pinned when the instance was first seen; it now presents {now}: refused"
    )
    assert "man-in-the-middle or a rebuilt root volume" in message
    assert "`fab forget-host-keys`" in message and "`fab teardown` then `fab provision`" in message


def test_fingerprint_is_the_one_ssh_keygen_shows(tmp_path):
    import subprocess

    key_type, blob = keygen(tmp_path / "k")
    shown = subprocess.run(
        ["ssh-keygen", "-l", "-E", "sha256", "-f", f"{tmp_path / 'k'}.pub"], capture_output=True, text=True
    )
    assert connect.fingerprint(connect.decode_host_key(key_type, blob)) == shown.stdout.split()[1]


@pytest.mark.root
def test_unknown_byo_host_is_refused_without_the_flag(sshd, tmp_path, monkeypatch):
    monkeypatch.setenv("LAB_STATE_DIR", str(tmp_path / "state"))
    monkeypatch.setenv("HOME", str(tmp_path / "home"))
    with pytest.raises(LabError, match="--trust-new-host"):
        connect.open_connection(target_for(sshd), ssh_timeout=10)


@pytest.mark.root
def test_first_use_trust_saves_the_key_then_pins_it(sshd, tmp_path, monkeypatch):
    state = tmp_path / "state"
    state.mkdir()
    monkeypatch.setenv("HOME", str(tmp_path / "home"))
    lab_file = state / connect.KNOWN_HOSTS_FILE
    conn = connect.open_connection(
        target_for(sshd), ssh_timeout=10, trust_new_host=True, known_hosts_file=lab_file
    )
    conn.close()
    saved = state / connect.KNOWN_HOSTS_FILE
    assert saved.read_text() == f"[127.0.0.1]:{sshd.port} {sshd.host_key_type} {sshd.host_key_b64}\n"
    assert saved.stat().st_mode & 0o777 == 0o600
    conn = connect.open_connection(target_for(sshd), ssh_timeout=10, known_hosts_file=lab_file)  # now known
    conn.close()
    saved.write_text(f"[127.0.0.1]:{sshd.port} {' '.join(keygen(tmp_path / 'other'))}\n")
    with pytest.raises(LabError, match="does not match"):
        connect.open_connection(
            target_for(sshd), ssh_timeout=10, trust_new_host=True, known_hosts_file=lab_file
        )


@pytest.mark.root
def test_a_command_that_hangs_is_a_lab_error(sshd):
    pinned = [(sshd.host_key_type, sshd.host_key_b64)]
    conn = connect.open_connection(target_for(sshd, pinned), ssh_timeout=10)
    try:
        with pytest.raises(LabError, match="`sleep 30` did not finish within 1 s"):
            Host(conn, "local", HostReport()).run("sleep 30", timeout=1)
    finally:
        conn.close()
