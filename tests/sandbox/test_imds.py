"""The instance metadata service: EC2's IMDS protocol (tokens, IMDSv1/v2, versions, the tree cloud-init
reads) against a server on loopback with a fake lookup, and the real thing inside a host's namespace."""

from __future__ import annotations

import datetime
import http.client
import io
import json
import os
import subprocess

import pytest

from labcore.net import SANDBOX_GATEWAY
from sandbox import network
from sandbox.imds import (
    IMDS_ADDRESS,
    TOKEN_HEADER,
    TTL_HEADER,
    InstanceMetadata,
    MetadataService,
    netns_commands,
)

ED25519_KEY = "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIOZlyX2x5JddcAi1kvMBK+LhK04JPjpLx3RcDwnz/hY+ lab"
MAC = "06:5a:1b:2c:3d:4e"


def metadata(instance_id: str = "i-0123456789abcdef0", **changes) -> InstanceMetadata:
    fields = dict(
        instance_id=instance_id,
        ami_id="ami-0abcdef1234567890",
        instance_type="t2.micro",
        hostname="ip-198-51-100-10.ap-northeast-2.compute.internal",
        local_ipv4="198.51.100.10",
        public_ipv4="198.51.100.10",
        public_hostname="ec2-198-51-100-10.ap-northeast-2.compute.amazonaws.com",
        availability_zone="ap-northeast-2a",
        region="ap-northeast-2",
        mac=MAC,
        interface_id="eni-0123456789abcdef0",
        vpc_id="vpc-12345678",
        subnet_id="subnet-12345678",
        account_id="123456789012",
        launch_time=datetime.datetime(2026, 12, 1, 3, 4, 5),
        public_keys=(("lab", ED25519_KEY),),
        user_data=b"#cloud-config\ntimezone: Asia/Seoul\n",
        reservation_id="r-0123456789abcdef0",
        subnet_cidr="172.31.0.0/20",
        vpc_cidr="172.31.0.0/16",
        security_groups=(("sg-12345678", "lab"),),
    )
    fields.update(changes)
    return InstanceMetadata(**fields)


class Instances:
    """A fake lookup: source address → metadata; records who asked."""

    def __init__(self, by_address: dict[str, InstanceMetadata]):
        self.by_address = by_address
        self.asked: list[str] = []

    def __call__(self, source_ip: str):
        self.asked.append(source_ip)
        return self.by_address.get(source_ip)


@pytest.fixture
def instances():
    return Instances({"127.0.0.1": metadata(), "127.0.0.3": metadata("i-0fedcba9876543210")})


@pytest.fixture
def service(instances):
    server = MetadataService(instances, listen="127.0.0.1").start()
    yield server
    server.stop()


def call(
    service: MetadataService, method: str, path: str, headers: dict | None = None, source: str = "127.0.0.1"
) -> tuple[int, bytes, http.client.HTTPResponse]:
    conn = http.client.HTTPConnection("127.0.0.1", service.port, timeout=10, source_address=(source, 0))
    try:
        conn.request(method, path, headers=headers or {})
        response = conn.getresponse()
        return response.status, response.read(), response
    finally:
        conn.close()


def token(service: MetadataService, ttl: str = "21600", source: str = "127.0.0.1") -> str:
    status, body, response = call(service, "PUT", "/latest/api/token", {TTL_HEADER: ttl}, source)
    assert status == 200 and response.getheader(TTL_HEADER) == ttl
    return body.decode()


def get(service: MetadataService, path: str, tok: str | None = None, source: str = "127.0.0.1"):
    status, body, _ = call(service, "GET", path, {TOKEN_HEADER: tok} if tok is not None else {}, source)
    return status, body


# ---- tokens ------------------------------------------------------------------------------------------


def test_a_token_put_then_get_with_it_answers(service):
    tok = token(service)
    assert len(tok) >= 40
    status, body, response = call(service, "GET", "/latest/meta-data/instance-id", {TOKEN_HEADER: tok})
    assert (status, body) == (200, b"i-0123456789abcdef0")
    assert 21590 <= int(response.getheader(TTL_HEADER)) <= 21600


@pytest.mark.parametrize("ttl", [None, "", "0", "21601", "-5", "abc", "1.5"])
def test_a_token_put_without_a_valid_ttl_is_400(service, ttl):
    headers = {TTL_HEADER: ttl} if ttl is not None else {}
    assert call(service, "PUT", "/latest/api/token", headers)[0] == 400


@pytest.mark.parametrize("ttl", ["1", "21600"])
def test_the_ttl_bounds_are_accepted(service, ttl):
    assert token(service, ttl)


def test_a_token_put_with_x_forwarded_for_is_403(service):
    headers = {TTL_HEADER: "60", "X-Forwarded-For": "203.0.113.9"}
    assert call(service, "PUT", "/latest/api/token", headers)[0] == 403


def test_an_invalid_token_is_401_even_when_tokens_are_optional(service):
    assert get(service, "/latest/meta-data/instance-id", "not-a-token")[0] == 401


def test_an_expired_token_is_401(instances):
    now = [1000.0]
    server = MetadataService(instances, listen="127.0.0.1", clock=lambda: now[0]).start()
    try:
        tok = token(server, "5")
        assert get(server, "/latest/meta-data/instance-id", tok)[0] == 200
        now[0] += 5.5
        assert get(server, "/latest/meta-data/instance-id", tok)[0] == 401
    finally:
        server.stop()


def test_a_token_is_valid_only_for_the_instance_it_was_issued_to(service):
    tok = token(service)
    assert get(service, "/latest/meta-data/instance-id", tok, source="127.0.0.3")[0] == 401
    other = token(service, source="127.0.0.3")
    assert get(service, "/latest/meta-data/instance-id", other, source="127.0.0.3") == (
        200,
        b"i-0fedcba9876543210",
    )


def test_imdsv1_works_when_http_tokens_is_optional(service):
    assert get(service, "/latest/meta-data/instance-id") == (200, b"i-0123456789abcdef0")


def test_imdsv1_is_401_when_http_tokens_is_required(service, instances):
    instances.by_address["127.0.0.1"] = metadata(http_tokens="required")
    assert get(service, "/latest/meta-data/instance-id")[0] == 401
    assert get(service, "/latest/meta-data/instance-id", token(service)) == (200, b"i-0123456789abcdef0")


def test_a_disabled_endpoint_is_403(service, instances):
    instances.by_address["127.0.0.1"] = metadata(http_endpoint="disabled")
    assert call(service, "PUT", "/latest/api/token", {TTL_HEADER: "60"})[0] == 403
    assert get(service, "/latest/meta-data/instance-id")[0] == 403


def test_the_token_path_only_takes_put(service):
    assert get(service, "/latest/api/token")[0] == 405
    assert call(service, "PUT", "/latest/meta-data/instance-id", {TTL_HEADER: "60"})[0] == 404
    assert call(service, "POST", "/latest/api/token", {TTL_HEADER: "60"})[0] == 405


def test_a_source_that_is_no_instance_gets_404_and_nothing_else(service, instances):
    status, body = get(service, "/latest/meta-data/instance-id", source="127.0.0.2")
    assert status == 404 and b"i-0" not in body
    assert call(service, "PUT", "/latest/api/token", {TTL_HEADER: "60"}, "127.0.0.2")[0] == 404
    assert instances.asked[-2:] == ["127.0.0.2", "127.0.0.2"]


def test_a_failing_lookup_is_500_not_another_instances_data():
    def broken(source_ip: str):
        raise RuntimeError("moto changed under us")

    server = MetadataService(broken, listen="127.0.0.1").start()
    try:
        assert get(server, "/latest/meta-data/instance-id")[0] == 500
        assert call(server, "PUT", "/latest/api/token", {TTL_HEADER: "60"})[0] == 500
    finally:
        server.stop()


# ---- the tree ----------------------------------------------------------------------------------------


def test_root_lists_the_versions_cloud_init_asks_for(service):
    status, body = get(service, "/")
    versions = body.decode().splitlines()
    assert status == 200
    assert {"2009-04-04", "2016-09-02", "2018-09-24", "2021-03-23", "latest"} <= set(versions)
    assert versions[-1] == "latest"


@pytest.mark.parametrize("version", ["latest", "2021-03-23", "2018-09-24", "2009-04-04"])
def test_every_version_serves_the_instance(service, version):
    tok = token(service)
    assert get(service, f"/{version}/meta-data/instance-id", tok) == (200, b"i-0123456789abcdef0")
    assert get(service, f"/{version}/meta-data/local-ipv4", tok) == (200, b"198.51.100.10")


def test_an_unknown_version_or_path_is_404(service):
    tok = token(service)
    for path in (
        "/2099-01-01/meta-data/instance-id",
        "/latest/meta-data/nonsense",
        "/latest/meta-data/instance-id/",
        "/latest/meta-data/../meta-data/instance-id",
        "/latest/nothing",
        "/meta-data/instance-id",
    ):
        assert get(service, path, tok)[0] == 404, path


def test_meta_data_listing_marks_subtrees_with_a_slash(service):
    status, body = get(service, "/2021-03-23/meta-data/", token(service))
    entries = body.decode().splitlines()
    assert status == 200
    for leaf in ("ami-id", "hostname", "instance-id", "instance-type", "local-hostname", "local-ipv4"):
        assert leaf in entries
    for leaf in ("mac", "public-hostname", "public-ipv4", "reservation-id", "security-groups"):
        assert leaf in entries
    for subtree in ("block-device-mapping/", "network/", "placement/", "public-keys/", "services/"):
        assert subtree in entries
    assert get(service, "/2021-03-23/meta-data", token(service)) == (200, body)


def test_leaves_hold_the_instance_values(service):
    tok = token(service)
    expected = {
        "ami-id": "ami-0abcdef1234567890",
        "hostname": "ip-198-51-100-10.ap-northeast-2.compute.internal",
        "local-hostname": "ip-198-51-100-10.ap-northeast-2.compute.internal",
        "instance-type": "t2.micro",
        "public-ipv4": "198.51.100.10",
        "public-hostname": "ec2-198-51-100-10.ap-northeast-2.compute.amazonaws.com",
        "mac": MAC,
        "placement/availability-zone": "ap-northeast-2a",
        "placement/region": "ap-northeast-2",
        "services/domain": "amazonaws.com",
        "block-device-mapping/root": "/dev/sda1",
        "security-groups": "lab",
    }
    for path, value in expected.items():
        assert get(service, f"/latest/meta-data/{path}", tok) == (200, value.encode()), path


def test_public_keys_list_index_equals_name_then_the_openssh_key(service):
    tok = token(service)
    assert get(service, "/2021-03-23/meta-data/public-keys/", tok) == (200, b"0=lab")
    assert get(service, "/2021-03-23/meta-data/public-keys/0/", tok) == (200, b"openssh-key")
    assert get(service, "/2021-03-23/meta-data/public-keys/0/openssh-key", tok) == (200, ED25519_KEY.encode())


def test_no_key_pair_means_no_public_keys(service, instances):
    instances.by_address["127.0.0.1"] = metadata(public_keys=())
    tok = token(service)
    assert "public-keys/" not in get(service, "/latest/meta-data/", tok)[1].decode().splitlines()
    assert get(service, "/latest/meta-data/public-keys/", tok)[0] == 404


def test_network_interface_by_mac(service):
    tok = token(service)
    base = f"/2021-03-23/meta-data/network/interfaces/macs/{MAC}"
    assert get(service, "/2021-03-23/meta-data/network/interfaces/macs/", tok) == (200, f"{MAC}/".encode())
    listing = get(service, base + "/", tok)[1].decode().splitlines()
    assert {"device-number", "local-ipv4s", "mac", "subnet-id", "vpc-id", "interface-id"} <= set(listing)
    assert get(service, base + "/device-number", tok) == (200, b"0")
    assert get(service, base + "/local-ipv4s", tok) == (200, b"198.51.100.10")
    assert get(service, base + "/subnet-id", tok) == (200, b"subnet-12345678")
    assert get(service, base + "/vpc-id", tok) == (200, b"vpc-12345678")


def test_user_data_is_the_decoded_bytes_or_404(service, instances):
    tok = token(service)
    status, body, response = call(service, "GET", "/2021-03-23/user-data", {TOKEN_HEADER: tok})
    assert (status, body) == (200, b"#cloud-config\ntimezone: Asia/Seoul\n")
    assert response.getheader("Content-Type") == "application/octet-stream"
    assert get(service, "/latest/", tok)[1].decode().splitlines() == ["dynamic", "meta-data", "user-data"]
    instances.by_address["127.0.0.1"] = metadata(user_data=None)
    assert get(service, "/2021-03-23/user-data", tok)[0] == 404
    assert "user-data" not in get(service, "/latest/", tok)[1].decode().splitlines()


def test_instance_identity_document_is_ec2s_json(service):
    tok = token(service)
    assert get(service, "/2021-03-23/dynamic/instance-identity", tok) == (200, b"document")
    status, body = get(service, "/2021-03-23/dynamic/instance-identity/document", tok)
    document = json.loads(body)
    assert status == 200
    assert document["instanceId"] == "i-0123456789abcdef0"
    assert document["accountId"] == "123456789012"
    assert document["region"] == "ap-northeast-2"
    assert document["availabilityZone"] == "ap-northeast-2a"
    assert document["privateIp"] == "198.51.100.10"
    assert document["imageId"] == "ami-0abcdef1234567890"
    assert document["instanceType"] == "t2.micro"
    assert document["pendingTime"] == "2026-12-01T03:04:05Z"


def test_cloud_init_materializes_the_whole_tree_without_an_error(service):
    """Walk the tree the way cloud-init's MetadataMaterializer does: every listed entry must answer 200."""
    tok = token(service)

    def walk(path: str) -> dict:
        status, body = get(service, path, tok)
        assert status == 200, path
        tree = {}
        for entry in body.decode().splitlines():
            if entry.endswith("/"):
                tree[entry[:-1]] = walk(path + entry)
            elif "=" in entry:
                index, name = entry.split("=", 1)
                tree[name] = get(service, f"{path}{index}/openssh-key", tok)
                assert tree[name][0] == 200
            else:
                status, value = get(service, path + entry, tok)
                assert status == 200, path + entry
                tree[entry] = value
        return tree

    tree = walk("/2021-03-23/meta-data/")
    assert tree["instance-id"] == b"i-0123456789abcdef0"
    assert tree["public-keys"]["lab"] == (200, ED25519_KEY.encode())


# ---- netns commands ------------------------------------------------------------------------------------


def test_netns_commands_dnat_the_metadata_address_to_the_gateway_port():
    commands = netns_commands(40123)
    assert ["ip", "route", "replace", "169.254.169.254/32", "via", "198.51.100.1"] in commands
    script = " ".join(" ".join(c) for c in commands)
    assert "-t nat -A OUTPUT -d 169.254.169.254/32 -p tcp -m tcp --dport 80 -j DNAT" in script
    assert "--to-destination 198.51.100.1:40123" in script
    assert all("ip addr" not in " ".join(c) for c in commands)


def _root_namespace_reaches_metadata_address_locally() -> list[str]:
    """Why this machine itself would answer on 169.254.169.254 (empty: it would not). Checked without
    sending a packet: the address would leave through the machine's uplink, which tests never use."""
    problems = []
    addresses = subprocess.run(["ip", "-4", "-o", "addr"], capture_output=True, text=True).stdout
    if f"{IMDS_ADDRESS}/" in addresses:
        problems.append("an interface has 169.254.169.254")
    route = subprocess.run(["ip", "route", "get", IMDS_ADDRESS], capture_output=True, text=True).stdout
    if route.startswith("local") or f"dev {network.BRIDGE}" in route:
        problems.append(f"169.254.169.254 is routed locally or to the sandbox bridge: {route.strip()}")
    for table in ("nat", "mangle"):
        rules = subprocess.run(["iptables", "-t", table, "-S"], capture_output=True, text=True).stdout
        if IMDS_ADDRESS in rules:
            problems.append(f"the {table} table of the root namespace mentions 169.254.169.254")
    return problems


@pytest.fixture
def bare_host(rootfs):
    """A bare namespace on the bridge (no host inside): (instance id, netns, address)."""
    instance_id = "i-0feedface0000001"
    network.ensure_bridge()
    address = network.lease_address(os.getpid(), instance_id)
    try:
        netns = network.create_host_network(instance_id, address)
        yield instance_id, netns, address
    finally:
        network.delete_host_network(instance_id)
        network.release_address(address)
        network.remove_bridge_if_unused()


def in_netns(netns: str, *command: str) -> subprocess.CompletedProcess:
    return subprocess.run(
        ["ip", "netns", "exec", netns, *command], capture_output=True, text=True, timeout=30
    )


@pytest.mark.root
def test_inside_a_host_namespace_169_254_169_254_is_the_service(bare_host):
    instance_id, netns, address = bare_host
    instances = Instances({address: metadata(instance_id, local_ipv4=address)})
    service = MetadataService(instances).start()
    try:
        for _ in range(2):  # idempotent: applying twice adds nothing
            for command in netns_commands(service.port):
                assert in_netns(netns, *command).returncode == 0, command
        rules = in_netns(netns, "iptables", "-t", "nat", "-S", "OUTPUT").stdout
        assert rules.count(IMDS_ADDRESS) == 1
        put = in_netns(
            netns, "curl", "-sS", "-m", "5", "-X", "PUT", f"-H{TTL_HEADER}: 60",
            f"http://{IMDS_ADDRESS}/latest/api/token",
        )  # fmt: skip
        assert put.returncode == 0 and put.stdout, put.stderr
        got = in_netns(
            netns, "curl", "-sS", "-m", "5", f"-H{TOKEN_HEADER}: {put.stdout}",
            f"http://{IMDS_ADDRESS}/latest/meta-data/instance-id",
        )  # fmt: skip
        assert got.stdout == instance_id
        assert set(instances.asked) == {address}  # the daemon sees the instance's own address
        assert _root_namespace_reaches_metadata_address_locally() == []
    finally:
        service.stop()


@pytest.mark.root
def test_the_machine_itself_gets_no_instance_data(bare_host):
    """From the root namespace the service sees the gateway as source: no instance, 404."""
    instance_id, _, address = bare_host
    instances = Instances({address: metadata(instance_id, local_ipv4=address)})
    service = MetadataService(instances).start()
    try:
        conn = http.client.HTTPConnection(SANDBOX_GATEWAY, service.port, timeout=5)
        conn.request("GET", "/latest/meta-data/instance-id")
        response = conn.getresponse()
        assert response.status == 404 and instance_id.encode() not in response.read()
        conn.close()
        assert _root_namespace_reaches_metadata_address_locally() == []
    finally:
        service.stop()


# ---- the daemon's service, answering from moto ------------------------------------------------------------


def imds_get(netns: str, path: str, token: str | None = None) -> tuple[str, str]:
    """(HTTP status, body) of GET http://169.254.169.254<path> from inside `netns`."""
    header = [f"-H{TOKEN_HEADER}: {token}"] if token else []
    result = in_netns(
        netns, "curl", "-sS", "-m", "5", "-w", "\n%{http_code}", *header, f"http://{IMDS_ADDRESS}{path}"
    )
    assert result.returncode == 0, result.stderr
    body, _, status = result.stdout.rpartition("\n")
    return status, body


def imds_token(netns: str) -> str:
    result = in_netns(
        netns,
        "curl",
        "-sS",
        "-m",
        "5",
        "-X",
        "PUT",
        f"-H{TTL_HEADER}: 300",
        f"http://{IMDS_ADDRESS}/latest/api/token",
    )
    assert result.returncode == 0 and result.stdout, result.stderr
    return result.stdout


@pytest.mark.root
def test_each_sandbox_instance_reads_its_own_metadata_from_moto(sandbox):
    import paramiko
    from cryptography.hazmat.primitives import serialization
    from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

    from sandbox import control
    from sandbox.testhost import wait_for_port

    port = json.loads((control.sandbox_dir(sandbox.state_dir) / "daemon.json").read_text())["imds_port"]
    imported = (
        Ed25519PrivateKey.generate()
        .public_key()
        .public_bytes(serialization.Encoding.OpenSSH, serialization.PublicFormat.OpenSSH)
        .decode()
    )
    sandbox.ec2.import_key_pair(KeyName="imported", PublicKeyMaterial=(imported + " me@laptop\n").encode())
    user_data = "#cloud-config\ntimezone: Asia/Seoul\n"
    launched = [
        sandbox.ec2.run_instances(
            ImageId=sandbox.ami,
            InstanceType="t2.micro",
            MinCount=1,
            MaxCount=1,
            KeyName=key_name,
            SecurityGroupIds=[sandbox.group_id],
            **extra,
        )["Instances"][0]
        for key_name, extra in (("lab", {"UserData": user_data}), ("imported", {}))
    ]
    lab_key = paramiko.Ed25519Key.from_private_key(io.StringIO(sandbox.key_pem))
    expected_keys = [f"ssh-ed25519 {lab_key.get_base64()} lab", f"{imported} imported"]
    try:
        for described, expected_key in zip(launched, expected_keys):
            instance_id, address = described["InstanceId"], described["PrivateIpAddress"]
            wait_for_port(address)
            netns = network.netns_name(instance_id)
            for command in netns_commands(port):
                assert in_netns(netns, *command).returncode == 0, command
            token = imds_token(netns)
            assert imds_get(netns, "/latest/meta-data/instance-id", token) == ("200", instance_id)
            assert imds_get(netns, "/2021-03-23/meta-data/local-ipv4", token) == ("200", address)
            assert imds_get(netns, "/2021-03-23/meta-data/public-keys/0/openssh-key", token) == (
                "200",
                expected_key,
            )
            assert imds_get(netns, "/2021-03-23/meta-data/placement/availability-zone", token)[1].startswith(
                "ap-northeast-2"
            )
            document = json.loads(imds_get(netns, "/2021-03-23/dynamic/instance-identity/document", token)[1])
            assert (document["instanceId"], document["region"]) == (instance_id, "ap-northeast-2")
        first, second = (network.netns_name(d["InstanceId"]) for d in launched)
        assert imds_get(first, "/2021-03-23/user-data", imds_token(first)) == ("200", user_data)
        assert imds_get(second, "/2021-03-23/user-data", imds_token(second))[0] == "404"

        assert imds_get(first, "/latest/meta-data/instance-id")[0] == "200"  # IMDSv1 while optional
        sandbox.ec2.modify_instance_metadata_options(
            InstanceId=launched[0]["InstanceId"], HttpTokens="required"
        )
        assert imds_get(first, "/latest/meta-data/instance-id")[0] == "401"
        assert imds_get(first, "/latest/meta-data/instance-id", imds_token(first))[0] == "200"
        assert imds_get(second, "/latest/meta-data/instance-id")[0] == "200"  # the other one is unchanged
        assert _root_namespace_reaches_metadata_address_locally() == []
    finally:
        sandbox.ec2.terminate_instances(InstanceIds=[d["InstanceId"] for d in launched])
