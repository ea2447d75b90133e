"""Sandbox pieces that need no root: SG rules → iptables lines, the mirror from apt sources, the proxy."""

from __future__ import annotations

import importlib.machinery
import importlib.util

import pytest

from sandbox import control, mirror
from sandbox.aptproxy import AptProxy
from sandbox.errors import SandboxError
from sandbox.firewall import render_ruleset
from tests.support.mirror import FakeMirror, fetch_via


def rule(protocol, from_port, to_port, *cidrs):
    return {
        "IpProtocol": protocol,
        "FromPort": from_port,
        "ToPort": to_port,
        "IpRanges": [{"CidrIp": c} for c in cidrs],
    }


@pytest.mark.parametrize(
    ("given", "expected"),
    [
        (rule("tcp", 22, 22, "198.51.100.1/32"), ["-A INPUT -p tcp -s 198.51.100.1/32 --dport 22 -j ACCEPT"]),
        (rule("tcp", 12345, 12345, "0.0.0.0/0"), ["-A INPUT -p tcp --dport 12345 -j ACCEPT"]),
        (
            rule("tcp", 8000, 8010, "10.0.0.0/8"),
            ["-A INPUT -p tcp -s 10.0.0.0/8 --dport 8000:8010 -j ACCEPT"],
        ),
        (rule("icmp", -1, -1, "0.0.0.0/0"), ["-A INPUT -p icmp -j ACCEPT"]),
        (rule("icmp", 8, -1, "0.0.0.0/0"), ["-A INPUT -p icmp --icmp-type 8 -j ACCEPT"]),
        (rule("-1", None, None, "198.51.100.0/24"), ["-A INPUT -s 198.51.100.0/24 -j ACCEPT"]),
        (
            rule("udp", 53, 53, "1.2.3.4/32", "5.6.7.0/24"),
            [
                "-A INPUT -p udp -s 1.2.3.4/32 --dport 53 -j ACCEPT",
                "-A INPUT -p udp -s 5.6.7.0/24 --dport 53 -j ACCEPT",
            ],
        ),
        (rule("47", None, None, "0.0.0.0/0"), []),
    ],
)
def test_each_rule_becomes_accept_lines(given, expected):
    lines = render_ruleset([given]).splitlines()
    assert lines[:6] == [
        "*filter",
        ":INPUT DROP [0:0]",
        ":FORWARD DROP [0:0]",
        ":OUTPUT ACCEPT [0:0]",
        "-A INPUT -i lo -j ACCEPT",
        "-A INPUT -m conntrack --ctstate ESTABLISHED,RELATED -j ACCEPT",
    ]
    assert lines[6:-1] == expected and lines[-1] == "COMMIT"


def test_duplicate_rules_give_one_line():
    ssh = rule("tcp", 22, 22, "0.0.0.0/0")
    assert render_ruleset([ssh, ssh]).count("--dport 22") == 1


def test_mirror_is_read_from_deb822_sources(tmp_path, monkeypatch):
    (tmp_path / "debian.sources").write_text(
        "Types: deb\nURIs: http://mirror.example/debian/\nSuites: bookworm bookworm-updates\n"
        "Components: main\n\n"
        "Types: deb\nURIs: http://security.example/debian-security\nSuites: bookworm-security\n"
    )
    monkeypatch.setattr(mirror, "APT_SOURCES", tmp_path / "missing.list")
    monkeypatch.setattr(mirror, "APT_SOURCES_DIR", tmp_path)
    assert mirror.debian_mirror_url() == "http://mirror.example/debian"


def test_mirror_is_read_from_a_one_line_sources_list(tmp_path, monkeypatch):
    (tmp_path / "sources.list").write_text(
        "# comment\ndeb-src http://src.example/debian bookworm main\n"
        "deb [arch=amd64 signed-by=/k.gpg] http://one.example/debian bookworm main\n"
    )
    monkeypatch.setattr(mirror, "APT_SOURCES", tmp_path / "sources.list")
    monkeypatch.setattr(mirror, "APT_SOURCES_DIR", tmp_path / "none")
    assert mirror.debian_mirror_url() == "http://one.example/debian"


def test_no_mirror_is_one_clear_error(tmp_path, monkeypatch):
    from labctl.errors import LabError

    monkeypatch.setattr(mirror, "APT_SOURCES", tmp_path / "missing.list")
    monkeypatch.setattr(mirror, "APT_SOURCES_DIR", tmp_path)
    with pytest.raises(LabError, match="no Debian mirror for 'bookworm'"):
        mirror.debian_mirror_url()


@pytest.fixture
def proxy(tmp_path):
    upstream = FakeMirror()
    apt_proxy = AptProxy("127.0.0.1", upstream.url, cache_dir=tmp_path / "cache").start()
    yield apt_proxy, upstream
    apt_proxy.stop()
    upstream.close()


def test_proxy_maps_the_ec2_archive_and_kakao_to_the_mirror(proxy):
    apt_proxy, upstream = proxy
    for host in ("ap-northeast-2.ec2.archive.ubuntu.com", "mirror.kakao.com"):
        status, body = fetch_via(apt_proxy, f"http://{host}/debian/dists/bookworm/InRelease")
        assert (status, body) == (200, b"content of /debian/dists/bookworm/InRelease")
    assert upstream.requests == ["/debian/dists/bookworm/InRelease"] * 2  # indexes are always fetched


def test_proxy_refuses_every_other_host(proxy):
    apt_proxy, upstream = proxy
    status, body = fetch_via(apt_proxy, "http://example.org/debian/dists/bookworm/InRelease")
    assert status == 403 and b"only the Debian mirror" in body
    assert upstream.requests == []


def test_proxy_serves_packages_from_its_cache(proxy):
    apt_proxy, upstream = proxy
    url = "http://mirror.kakao.com/debian/pool/main/m/make-dfsg/make_4.3-4.1_amd64.deb"
    first, second = fetch_via(apt_proxy, url), fetch_via(apt_proxy, url)
    assert first == second == (200, b"content of /debian/pool/main/m/make-dfsg/make_4.3-4.1_amd64.deb")
    assert len(upstream.requests) == 1


@pytest.mark.parametrize("cuts, status", [(1, 200), (5, 502)])
def test_a_package_download_cut_short_is_fetched_again_and_never_cached_half(tmp_path, cuts, status):
    upstream = FakeMirror(cut_short=cuts)
    apt_proxy = AptProxy("127.0.0.1", upstream.url, cache_dir=tmp_path / "cache").start()
    try:
        path = "/debian/pool/main/m/make-dfsg/make_4.3-4.1_amd64.deb"
        got, body = fetch_via(apt_proxy, f"http://mirror.kakao.com{path}")
        cached = [f.read_bytes() for f in (tmp_path / "cache").rglob("*") if f.is_file()]
    finally:
        apt_proxy.stop()
        upstream.close()
    assert got == status
    if status == 200:
        assert body == cached[0] == f"content of {path}".encode() and len(upstream.requests) == 2
    else:
        assert cached == [] and len(upstream.requests) == 3  # UPSTREAM_ATTEMPTS, then apt sees the 502


def test_the_image_config_reads_as_cloud_init_and_ds_identify_read_it():
    import yaml

    from sandbox import cloudimage

    text = cloudimage.image_files()[cloudimage.IMAGE_CONFIG][0]
    config = yaml.safe_load(text)
    assert config["datasource_list"] == ["Ec2", "None"]
    assert config["datasource"]["Ec2"]["metadata_urls"] == ["http://169.254.169.254"]
    assert config["network"] == {"config": "disabled"} and config["manage_etc_hosts"] is True
    assert config["system_info"]["default_user"]["name"] == "ubuntu"
    assert config["system_info"]["default_user"]["sudo"] == ["ALL=(ALL) NOPASSWD:ALL"]
    assert "datasource_list: [ Ec2, None ]\n" in text  # ds-identify's line-based reader
    fallback = yaml.safe_load(cloudimage.no_imds_config("ssh-ed25519 AAAA key\n"))
    assert fallback == {"datasource_list": ["None"], "ssh_authorized_keys": ["ssh-ed25519 AAAA key"]}


def test_dmi_identifiers_say_aws_the_way_cloud_init_checks():
    from sandbox import cloudimage

    values = cloudimage.dmi_values("i-0123456789abcdef0")
    assert values["sys_vendor"] == "Amazon EC2"
    assert values["product_uuid"].startswith("ec2") and values["product_uuid"] == values["product_serial"]
    assert len(values["product_uuid"]) == 36 and values == cloudimage.dmi_values("i-0123456789abcdef0")
    assert values["product_uuid"] != cloudimage.dmi_values("i-0fedcba9876543210")["product_uuid"]


def test_a_host_namespace_gets_the_metadata_route_before_it_boots(tmp_path, monkeypatch):
    """With a metadata service port, the reconciler runs sandbox.imds.netns_commands(port) in the netns."""
    from sandbox import imds, network
    from sandbox.reconciler import Reconciler

    ran = []
    monkeypatch.setattr(network, "run", lambda *command, input=None: ran.append(command))
    Reconciler(tmp_path, tmp_path, 3142, 1, imds_port=8123)._route_metadata("labctl-abc")
    assert ran == [("ip", "netns", "exec", "labctl-abc", *command) for command in imds.netns_commands(8123)]
    assert any("198.51.100.1:8123" in " ".join(command) for command in ran)


@pytest.mark.root
def test_missing_moto_server_is_one_line_without_importing_it(monkeypatch):
    """check_prerequisites looks moto and flask up without importing them (importing costs ~0.5 s)."""
    looked_up = []

    def find_spec(name):
        looked_up.append(name)
        return None if name == "flask" else importlib.machinery.ModuleSpec(name, None)

    monkeypatch.setattr(importlib.util, "find_spec", find_spec)
    with pytest.raises(
        SandboxError, match=r"^the sandbox target needs moto's server: pip install 'labctl\[sandbox\]'$"
    ):
        control.check_prerequisites("chroot")
    assert "flask" in looked_up
