"""Issue 12 item 8: the sandbox apt proxy fetches from http or https mirrors below any path prefix."""

from __future__ import annotations

import datetime
import ipaddress
import ssl

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

from sandbox.aptproxy import AptProxy
from sandbox.errors import SandboxError
from tests.support.mirror import FakeMirror, fetch_via

INRELEASE = "/debian/dists/bookworm/InRelease"
PACKAGE = "/debian/pool/main/m/make-dfsg/make_4.3-4.1_amd64.deb"


def _self_signed(tmp_path) -> tuple[str, str]:
    """A certificate for 127.0.0.1 and its key, as PEM files."""
    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "127.0.0.1")])
    now = datetime.datetime.now(datetime.timezone.utc)
    cert = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(minutes=5))
        .not_valid_after(now + datetime.timedelta(hours=1))
        .add_extension(
            x509.SubjectAlternativeName([x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]), False
        )
        .sign(key, hashes.SHA256())
    )
    cert_file, key_file = tmp_path / "cert.pem", tmp_path / "key.pem"
    cert_file.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    key_file.write_bytes(
        key.private_bytes(
            serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
        )
    )
    return str(cert_file), str(key_file)


@pytest.mark.parametrize("scheme", ["http", "https"])
def test_the_proxy_fetches_below_the_mirrors_path_over_its_scheme(tmp_path, scheme):
    client_tls = None
    server_tls = None
    if scheme == "https":
        cert, key = _self_signed(tmp_path)
        server_tls = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        server_tls.load_cert_chain(cert, key)
        client_tls = ssl.create_default_context(cafile=cert)
    upstream = FakeMirror(tls=server_tls)
    proxy = AptProxy(
        "127.0.0.1",
        f"{scheme}://{upstream.address}/mirrors/ftp.debian.org/debian/",
        cache_dir=tmp_path / "cache",
        ssl_context=client_tls,
    ).start()
    try:
        index = fetch_via(proxy, f"http://mirror.kakao.com{INRELEASE}")
        package = [
            fetch_via(proxy, f"http://ap-northeast-2.ec2.archive.ubuntu.com{PACKAGE}") for _ in range(2)
        ]
    finally:
        proxy.stop()
        upstream.close()
    prefix = "/mirrors/ftp.debian.org"
    assert index == (200, f"content of {prefix}{INRELEASE}".encode())
    assert package == [(200, f"content of {prefix}{PACKAGE}".encode())] * 2
    assert upstream.requests == [prefix + INRELEASE, prefix + PACKAGE]  # the package once: cached


def test_an_untrusted_https_mirror_is_a_502_not_a_crash(tmp_path):
    cert, key = _self_signed(tmp_path)
    server_tls = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    server_tls.load_cert_chain(cert, key)
    upstream = FakeMirror(tls=server_tls)
    proxy = AptProxy("127.0.0.1", f"https://{upstream.address}/debian", cache_dir=tmp_path / "c").start()
    try:
        status, _ = fetch_via(proxy, f"http://mirror.kakao.com{INRELEASE}")  # system CAs: not trusted
    finally:
        proxy.stop()
        upstream.close()
    assert status == 502


@pytest.mark.parametrize(
    "url, expected",
    [
        ("ftp://127.0.0.1/debian", "fetches from http:// or https:// mirrors, not 'ftp://127.0.0.1/debian'"),
        ("file:///srv/debian", "fetches from http:// or https:// mirrors, not 'file:///srv/debian'"),
        ("http://user:secret@127.0.0.1/debian", "cannot use the mirror URL"),
        ("http://127.0.0.1:99999/debian", "has an invalid port"),
    ],
)
def test_an_unsupported_mirror_url_is_refused_in_one_line_at_start(tmp_path, url, expected):
    with pytest.raises(SandboxError) as refused:
        AptProxy("127.0.0.1", url, cache_dir=tmp_path / "cache")
    assert expected in str(refused.value) and "\n" not in str(refused.value)
