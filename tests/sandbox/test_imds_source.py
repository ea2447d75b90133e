"""What the metadata service reads of a moto instance: a real moto server on loopback, read in-process as the
daemon does."""

from __future__ import annotations

import pytest
from cryptography.hazmat.primitives import serialization

from sandbox.imds_source import instance_metadata, openssh_public_key, user_data_bytes
from sandbox.testhost import REGION, sandbox_client


@pytest.fixture(scope="module")
def moto_ec2():
    """(client, in-process backend) of a moto server on 127.0.0.1."""
    from moto.ec2.models import ec2_backends
    from moto.server import ThreadedMotoServer

    server = ThreadedMotoServer(ip_address="127.0.0.1", port=0, verbose=False)
    server.start()
    try:
        client = sandbox_client(f"http://127.0.0.1:{server.get_host_and_port()[1]}")
        account = client.describe_security_groups()["SecurityGroups"][0]["OwnerId"]
        yield client, ec2_backends[account][REGION]
    finally:
        server.stop()


def launch(client, **kwargs) -> str:
    image = client.describe_images(Owners=["amazon"])["Images"][0]["ImageId"]
    params = dict(ImageId=image, InstanceType="t2.micro", MinCount=1, MaxCount=1)
    return client.run_instances(**params, **kwargs)["Instances"][0]["InstanceId"]


def test_metadata_of_a_moto_instance(moto_ec2):
    client, backend = moto_ec2
    instance_id = launch(
        client,
        UserData="#cloud-config\ntimezone: Asia/Seoul\n",
        MetadataOptions={"HttpTokens": "required"},
    )
    described = client.describe_instances(InstanceIds=[instance_id])["Reservations"][0]
    instance = described["Instances"][0]
    md = instance_metadata(backend, backend.get_instance(instance_id))
    address = instance["PrivateIpAddress"]
    assert md.instance_id == instance_id and md.ami_id == instance["ImageId"]
    assert md.instance_type == "t2.micro"
    assert md.local_ipv4 == address
    assert (
        md.hostname
        == f"ip-{address.replace('.', '-')}.{REGION}.compute.internal"
        == instance["PrivateDnsName"]
    )
    assert md.availability_zone == instance["Placement"]["AvailabilityZone"]
    assert md.region == REGION and md.account_id == described["OwnerId"]
    assert (md.vpc_id, md.subnet_id) == (instance["VpcId"], instance["SubnetId"])
    assert md.mac == instance["NetworkInterfaces"][0]["MacAddress"]
    assert md.interface_id == instance["NetworkInterfaces"][0]["NetworkInterfaceId"]
    assert md.reservation_id == described["ReservationId"]
    assert md.user_data == b"#cloud-config\ntimezone: Asia/Seoul\n"
    assert md.http_tokens == "required"
    assert md.public_keys == ()


def test_modify_instance_metadata_options_is_seen(moto_ec2):
    client, backend = moto_ec2
    instance_id = launch(client)
    assert instance_metadata(backend, backend.get_instance(instance_id)).http_tokens == "optional"
    assert instance_metadata(backend, backend.get_instance(instance_id)).user_data is None
    client.modify_instance_metadata_options(InstanceId=instance_id, HttpTokens="required")
    assert instance_metadata(backend, backend.get_instance(instance_id)).http_tokens == "required"
    client.modify_instance_metadata_options(
        InstanceId=instance_id, HttpTokens="optional", HttpEndpoint="disabled"
    )
    md = instance_metadata(backend, backend.get_instance(instance_id))
    assert (md.http_tokens, md.http_endpoint) == ("optional", "disabled")


def test_a_created_ed25519_key_pair_is_shown_with_its_name(moto_ec2):
    client, backend = moto_ec2
    created = client.create_key_pair(KeyName="created", KeyType="ed25519")
    private = serialization.load_ssh_private_key(created["KeyMaterial"].encode(), password=None)
    public = private.public_key().public_bytes(
        serialization.Encoding.OpenSSH, serialization.PublicFormat.OpenSSH
    )
    assert openssh_public_key(backend.key_pairs["created"]) == public.decode() + " created"


def test_an_imported_key_is_shown_with_the_key_name_not_its_comment(moto_ec2):
    client, backend = moto_ec2
    key = "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIOZlyX2x5JddcAi1kvMBK+LhK04JPjpLx3RcDwnz/hY+"
    client.import_key_pair(KeyName="imported", PublicKeyMaterial=(key + " me@laptop\n").encode())
    assert openssh_public_key(backend.key_pairs["imported"]) == key + " imported"


def test_a_key_pair_without_public_material_is_derived_from_the_private_key(moto_ec2):
    client, backend = moto_ec2
    created = client.create_key_pair(KeyName="rsa", KeyType="rsa")
    key_pair = backend.key_pairs["rsa"]
    expected = openssh_public_key(key_pair)
    key_pair.material_public = b""
    assert openssh_public_key(key_pair) == expected and expected.startswith("ssh-rsa AAAA")
    assert created["KeyMaterial"].startswith("-----BEGIN RSA PRIVATE KEY-----")


def test_user_data_bytes():
    from moto.ec2.utils import parse_user_data

    assert user_data_bytes(None) is None
    assert user_data_bytes(parse_user_data("I2Nsb3VkLWNvbmZpZwo=")) == b"#cloud-config\n"
    assert user_data_bytes("AAEC") == b"\x00\x01\x02"
