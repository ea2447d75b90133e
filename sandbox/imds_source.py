"""Where the metadata service's answers come from: moto's EC2 backend, in the daemon's own process.

`MotoMetadataSource(owner)` is the `lookup` of `sandbox.imds.MetadataService`: the source address of a
request names the pending/running moto instance with that private address, and only when this daemon
(`owner`) holds the address's lease, so a host never sees another instance's data (not even one of another
sandbox daemon on the same bridge). Everything is read per request: ModifyInstanceMetadataOptions and
ModifyInstanceAttribute(UserData) take effect at once.
"""

from __future__ import annotations

import base64
import binascii
import threading
from typing import Any

from sandbox import network
from sandbox.imds import InstanceMetadata

SERVED_STATES = ("pending", "running")
FIND_ATTEMPTS = 3


def user_data_bytes(user_data: Any) -> bytes | None:
    """RunInstances' user data as the instance sees it (moto keeps the base64 text)."""
    if user_data is None:
        return None
    if hasattr(user_data, "as_bytes"):  # moto's Base64EncodedString
        encoded = user_data.as_bytes()
    elif isinstance(user_data, str):
        encoded = user_data.encode()
    else:
        encoded = bytes(user_data)
    try:
        return base64.b64decode(encoded, validate=True)
    except (binascii.Error, ValueError):
        return encoded


def openssh_public_key(key_pair: Any) -> str:
    """`<type> <base64> <key name>`, as EC2's IMDS shows a key pair (the name is the comment); derived from
    the private key when moto kept no public material."""
    public = (getattr(key_pair, "material_public", b"") or b"").decode().strip()
    if not public and getattr(key_pair, "material", b""):
        from cryptography.hazmat.primitives import serialization

        material = key_pair.material
        if b"OPENSSH PRIVATE KEY" in material:
            private = serialization.load_ssh_private_key(material, password=None)
        else:
            private = serialization.load_pem_private_key(material, password=None)
        public = (
            private.public_key()
            .public_bytes(serialization.Encoding.OpenSSH, serialization.PublicFormat.OpenSSH)
            .decode()
        )
    fields = public.split()
    if len(fields) < 2:
        return ""
    return f"{fields[0]} {fields[1]} {key_pair.key_name}"


def _reservation_id(backend: Any, instance: Any) -> str:
    for reservation in list(dict.values(getattr(backend, "reservations", {}))):
        if instance in reservation.instances:
            return reservation.id
    return ""


def instance_metadata(
    backend: Any, instance: Any, public_keys: tuple[tuple[str, str], ...] = ()
) -> InstanceMetadata:
    """The metadata of one moto instance (`backend` is its region's EC2 backend)."""
    nic = instance.nics.get(0) if instance.nics else None
    subnet = getattr(nic, "subnet", None)
    vpc_cidr = ""
    if subnet is not None:
        vpc = backend.vpcs.get(subnet.vpc_id) if hasattr(backend, "vpcs") else None
        vpc_cidr = getattr(vpc, "cidr_block", "") or ""
    options = instance.metadata_options
    return InstanceMetadata(
        instance_id=instance.id,
        ami_id=instance.image_id or "",
        instance_type=instance.instance_type,
        hostname=instance.private_dns_name or "",
        local_ipv4=instance.private_ip_address or "",
        public_ipv4=instance.public_ip or "",
        public_hostname=instance.public_dns_name or "",
        availability_zone=instance.placement.zone or "",
        region=backend.region_name,
        mac=getattr(nic, "mac_address", "") or "",
        interface_id=getattr(nic, "id", "") or "",
        vpc_id=instance.vpc_id or "",
        subnet_id=instance.subnet_id or "",
        account_id=backend.account_id,
        launch_time=instance.launch_time,
        public_keys=public_keys,
        user_data=user_data_bytes(instance.user_data),
        http_tokens=options.http_tokens or "optional",
        http_endpoint=options.http_endpoint or "enabled",
        reservation_id=_reservation_id(backend, instance),
        ami_launch_index=int(instance.ami_launch_index or 0),
        architecture=instance.architecture or "x86_64",
        root_device_name=instance.root_device_name or "/dev/sda1",
        subnet_cidr=getattr(subnet, "cidr_block", "") or "",
        vpc_cidr=vpc_cidr,
        security_groups=tuple((group.id, group.name) for group in list(instance.security_groups)),
    )


class MotoMetadataSource:
    """`lookup(source_ip)` over every loaded account and region of moto's EC2 backends.

    An instance keeps the key it was launched with (as on EC2) even when the key pair is deleted later:
    the key is remembered the first time the instance is seen.
    """

    def __init__(self, owner: int):
        self.owner = owner
        self._keys: dict[str, tuple[tuple[str, str], ...]] = {}
        self._lock = threading.Lock()

    def __call__(self, source_ip: str) -> InstanceMetadata | None:
        if not self._leased_by_us(source_ip):
            return None
        found = self._find(source_ip)
        if found is None:
            return None
        backend, instance = found
        return instance_metadata(backend, instance, self._public_keys(backend, instance))

    def _leased_by_us(self, address: str) -> bool:
        return any(
            lease["address"] == address and lease["owner"] == self.owner for lease in network.all_leases()
        )

    def _find(self, address: str) -> tuple[Any, Any] | None:
        from moto.ec2.models import ec2_backends

        for attempt in range(FIND_ATTEMPTS):
            try:
                for account in list(dict.values(ec2_backends)):
                    for backend in list(dict.values(account)):
                        for instance in list(backend.all_instances()):
                            if instance.state in SERVED_STATES and instance.private_ip_address == address:
                                return backend, instance
                return None
            except RuntimeError:  # moto changed a dict under us (an API call in another thread): look again
                if attempt == FIND_ATTEMPTS - 1:
                    raise
        return None

    def _public_keys(self, backend: Any, instance: Any) -> tuple[tuple[str, str], ...]:
        with self._lock:
            if instance.id not in self._keys:
                key_pair = backend.key_pairs.get(instance.key_name) if instance.key_name else None
                key = openssh_public_key(key_pair) if key_pair is not None else ""
                self._keys[instance.id] = ((instance.key_name, key),) if key else ()
            return self._keys[instance.id]
