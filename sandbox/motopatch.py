"""moto adjusted for the sandbox: instances get sandbox addresses and a console that shows their host keys.

Both patches are small and local: the primary network interface of each new instance gets a leased address
from 198.51.100.0/24 as its private and its public IP (also after stop/start), moto's public-IP generators
hand out sandbox addresses instead of invented 54.x ones, and GetConsoleOutput prints the host-key block.
Call `install()` in the daemon after `moto_images.install()` and before the server starts.
"""

from __future__ import annotations

from typing import Callable

from moto.ec2.utils import generate_dns_from_ip

BOOT_BANNER = "labctl sandbox host: Debian GNU/Linux 12 (bookworm) in a network namespace; not Ubuntu\n"


def install(allocate: Callable[[str], str], console_text: Callable[[str], str]) -> None:
    """`allocate(instance_id)` leases an address; `console_text(instance_id)` is the host's console."""
    _patch_public_ip_generators(allocate)
    _patch_instance_addresses(allocate)
    _patch_console_output(console_text)


def _patch_public_ip_generators(allocate: Callable[[str], str]) -> None:
    from moto.ec2 import utils
    from moto.ec2.models import elastic_network_interfaces

    def random_public_ip() -> str:
        return allocate("")

    utils.random_public_ip = random_public_ip
    elastic_network_interfaces.random_public_ip = random_public_ip


def _use_address(nic, address: str) -> None:
    nic.private_ip_address = address
    nic.private_ip_addresses = [{"Primary": True, "PrivateIpAddress": address}]
    if getattr(nic, "private_dns_name", None):
        nic.private_dns_name = generate_dns_from_ip(address)
    nic.public_ip = address


def _patch_instance_addresses(allocate: Callable[[str], str]) -> None:
    from moto.ec2.models.elastic_network_interfaces import NetworkInterface
    from moto.ec2.models.instances import Instance

    original_prep_nics = Instance.prep_nics
    if getattr(original_prep_nics, "_labctl_patched", False):
        return

    def prep_nics(self, *args, **kwargs):
        original_prep_nics(self, *args, **kwargs)
        primary = self.nics.get(0)
        if primary is not None:
            _use_address(primary, allocate(self.id))

    def check_auto_public_ip(self) -> None:
        """After a start the public IP is the sandbox address again (the host keeps its address)."""
        if self.public_ip_auto_assign and str(self.public_ip_auto_assign).lower() == "true":
            self.public_ip = self.private_ip_address

    prep_nics._labctl_patched = True
    Instance.prep_nics = prep_nics
    NetworkInterface.check_auto_public_ip = check_auto_public_ip


def _patch_console_output(console_text: Callable[[str], str]) -> None:
    from moto.core.responses import ActionResult
    from moto.core.utils import utcnow
    from moto.ec2.responses.general import General
    from moto.ec2.utils import Base64EncodedString

    def get_console_output(self) -> ActionResult:
        instance = self.ec2_backend.get_instance(self._get_param("InstanceId"))
        keys = console_text(instance.id)
        result = {"InstanceId": instance.id, "Timestamp": utcnow()}
        if keys:
            result["Output"] = Base64EncodedString.from_raw_string(BOOT_BANNER + keys)
        return ActionResult(result)

    General.get_console_output = get_console_output
