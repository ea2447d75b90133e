"""moto adjusted for the sandbox: instances get sandbox addresses and their hosts' consoles.

The patches are small and local: the primary network interface of each new instance gets a leased address
from 198.51.100.0/24 as its private and its public IP (also after stop/start), moto's public-IP generators
hand out sandbox addresses instead of invented 54.x ones, and GetConsoleOutput answers from the host's
console as EC2 does (`sandbox.console`: buffered per boot; `Latest` on Nitro types only).
Call `install()` in the daemon after `moto_images.install()` and before the server starts.
"""

from __future__ import annotations

import base64
import datetime
from typing import Callable

from moto.ec2.utils import generate_dns_from_ip

from sandbox.console import ConsoleBuffer, LatestUnsupported


def install(allocate: Callable[[str], str], console: ConsoleBuffer) -> None:
    """`allocate(instance_id)` leases an address; `console` holds the hosts' consoles."""
    _patch_public_ip_generators(allocate)
    _patch_instance_addresses(allocate)
    _patch_console_output(console)


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


def _patch_console_output(console: ConsoleBuffer) -> None:
    from moto.core.responses import ActionResult
    from moto.ec2.exceptions import EC2ClientError
    from moto.ec2.responses.general import General
    from moto.ec2.utils import Base64EncodedString

    def get_console_output(self) -> ActionResult:
        instance = self.ec2_backend.get_instance(self._get_param("InstanceId"))
        self.error_on_dryrun()
        try:
            text, posted = console.read(
                instance.id, instance.instance_type, latest=self._get_bool_param("Latest", False)
            )
        except LatestUnsupported as error:
            raise EC2ClientError(error.code, str(error)) from None
        timestamp = datetime.datetime.fromtimestamp(posted, datetime.timezone.utc).replace(tzinfo=None)
        result = {"InstanceId": instance.id, "Timestamp": timestamp}
        if text:
            result["Output"] = Base64EncodedString(base64.b64encode(text.encode()).decode())
        return ActionResult(result)

    General.get_console_output = get_console_output
