"""Issue 12 item 8: a console host key paramiko cannot load (ssh-dss, sk-*) is skipped, not a crash."""

from __future__ import annotations

import base64

import paramiko
import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from lab import connect
from lab.errors import HostError
from lab.target import HostTarget


def _blob(key_type: str, *parts: bytes) -> str:
    message = paramiko.Message()
    message.add_string(key_type)
    for part in parts:
        message.add_string(part)
    return base64.b64encode(message.asbytes()).decode()


DSS = ("ssh-dss", _blob("ssh-dss", b"\x01" * 128, b"\x02" * 20, b"\x03" * 128, b"\x04" * 128))
SK = ("sk-ssh-ed25519@openssh.com", _blob("sk-ssh-ed25519@openssh.com", b"\x05" * 32, b"ssh:"))


def _ed25519() -> tuple[str, str]:
    public = Ed25519PrivateKey.generate().public_key()
    key_type, blob = public.public_bytes(
        serialization.Encoding.OpenSSH, serialization.PublicFormat.OpenSSH
    ).split()
    return key_type.decode(), blob.decode()


def _host(*host_keys) -> HostTarget:
    return HostTarget(name="lab", address="198.51.100.10", host_keys=tuple(host_keys), instance_id="i-1")


def test_unloadable_key_types_are_skipped_and_the_others_pinned():
    ed25519 = _ed25519()
    client = paramiko.SSHClient()
    connect.pin_host_keys(client, _host(DSS, SK, ed25519))
    pinned = client.get_host_keys().lookup("198.51.100.10")
    assert list(pinned.keys()) == ["ssh-ed25519"]
    assert pinned["ssh-ed25519"].get_base64() == ed25519[1]
    assert isinstance(client._policy, paramiko.RejectPolicy)


def test_only_unloadable_key_types_is_one_line():
    with pytest.raises(HostError) as failure:
        connect.pin_host_keys(paramiko.SSHClient(), _host(DSS, SK))
    assert str(failure.value) == (
        "none of the host keys of 198.51.100.10 read from its console (ssh-dss, sk-ssh-ed25519@openssh.com) "
        "is a type SSH here can check: enable an ed25519, ecdsa or rsa host key on the instance"
    )
