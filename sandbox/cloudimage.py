"""What makes the booting hosts' tree behave like an EC2 image: cloud-init's configuration, sshd's, EC2's
firmware identifiers, and the per-host files written into a host's upper dir before each boot.

cloud-init reads its configuration as YAML; each top-level key goes on its own line with a JSON (= YAML flow)
value, except `datasource_list`, which ds-identify (a shell script run by systemd's generator, that disables
cloud-init when it finds no datasource) reads with a line-based parser: `datasource_list: [ A, B ]`.
"""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

from labcore.net import SANDBOX_GATEWAY

METADATA_URL = "http://169.254.169.254"
MIRROR_NAMES = ("ap-northeast-2.ec2.archive.ubuntu.com", "mirror.kakao.com")
IMAGE_CONFIG = "etc/cloud/cloud.cfg.d/90-labctl.cfg"
NO_IMDS_CONFIG = "etc/cloud/cloud.cfg.d/95-labctl-no-imds.cfg"
DMI_DIR = "etc/labctl/dmi"
HOSTS_TEMPLATE = "etc/cloud/templates/hosts.debian.tmpl"
MASKED_UNITS = ()  # units that cannot work in a container and only add noise (see sandbox/README.md)

DATASOURCES = ("Ec2", "None")
CLOUD_CONFIG = {
    "datasource": {
        "Ec2": {"strict_id": False, "metadata_urls": [METADATA_URL], "timeout": 2, "max_wait": 10}
    },
    "network": {"config": "disabled"},  # the netns is set up from outside; netplan would call udevadm
    "manage_etc_hosts": True,
    "preserve_hostname": False,
    "ssh_pwauth": False,
    # Ubuntu's images add rsa: its 3072-bit key took 0.75-1.7 s of a boot's ~4.5 s here (measured 2026-12-01)
    "ssh_genkeytypes": ["ecdsa", "ed25519"],
    "locale": "C.UTF-8",  # built into libc; en_US.UTF-8 would need the locales package
    "apt": {"preserve_sources_list": True},  # keep the EC2 regional archive line of the image
    "system_info": {
        "default_user": {
            "name": "ubuntu",
            "lock_passwd": True,
            "gecos": "Ubuntu",
            "groups": ["adm", "sudo"],
            "sudo": ["ALL=(ALL) NOPASSWD:ALL"],
            "shell": "/bin/bash",
        }
    },
}

SSHD_CONFIG = """# labctl sandbox host: keys only; PAM on as in Ubuntu images (cloud-init locks passwords)
# the host keys cloud-init makes (no rsa in the sandbox: see ssh_genkeytypes)
HostKey /etc/ssh/ssh_host_ecdsa_key
HostKey /etc/ssh/ssh_host_ed25519_key
UsePAM yes
PasswordAuthentication no
KbdInteractiveAuthentication no
PermitRootLogin no
"""

# This machine may have no DMI table at all (then cloud-init and ds-identify ask `dmidecode`): answer from the
# per-host files as an EC2 instance's firmware would.
DMIDECODE = f"""#!/bin/sh
# labctl sandbox host: EC2's firmware identifiers, from /{DMI_DIR} (written per host)
key=
while [ $# -gt 0 ]; do
  case "$1" in
    -s|--string) key=$2; shift ;;
    --string=*) key=${{1#--string=}} ;;
  esac
  shift
done
case "$key" in
  system-manufacturer) file=sys_vendor ;;
  system-product-name) file=product_name ;;
  system-uuid) file=product_uuid ;;
  system-serial-number) file=product_serial ;;
  chassis-asset-tag) file=chassis_asset_tag ;;
  *) exit 0 ;;
esac
cat /{DMI_DIR}/$file 2>/dev/null
"""


def cloud_config_text(comment: str, datasources: tuple[str, ...], config: dict) -> str:
    """A cloud-config file: the datasource list as ds-identify can read it, then one key per line."""
    lines = [f"# labctl sandbox: {comment}", f"datasource_list: [ {', '.join(datasources)} ]"]
    lines += [f"{key}: {json.dumps(value)}" for key, value in config.items()]
    return "\n".join(lines) + "\n"


def image_files() -> dict[str, tuple[str, int]]:
    """Files of the image: relative path → (content, mode)."""
    return {
        IMAGE_CONFIG: (
            cloud_config_text("cloud-init as on an EC2 instance", DATASOURCES, CLOUD_CONFIG),
            0o644,
        ),
        "etc/ssh/sshd_config.d/60-labctl.conf": (SSHD_CONFIG, 0o644),
        "usr/sbin/dmidecode": (DMIDECODE, 0o755),
        "etc/resolv.conf": ("# no DNS in the sandbox: names come from /etc/hosts\n", 0o644),
    }


def image_digest_parts() -> tuple[str, ...]:
    """Everything of this module that shapes the image (for the rootfs stamp; per-host parts excluded)."""
    return (json.dumps(image_files(), sort_keys=True), ",".join(MASKED_UNITS), HOSTS_TEMPLATE, *MIRROR_NAMES)


def amend_hosts_template(target: Path) -> None:
    """cloud-init rewrites /etc/hosts each boot (manage_etc_hosts): its template also names the mirrors, which
    the gateway's apt proxy serves."""
    template = target / HOSTS_TEMPLATE
    line = f"{SANDBOX_GATEWAY} {' '.join(MIRROR_NAMES)}\n"
    if template.exists() and line not in template.read_text():
        with open(template, "a") as f:
            f.write(line)


def dmi_values(instance_id: str, instance_type: str = "t2.micro") -> dict[str, str]:
    """The identifiers cloud-init uses to recognise AWS: vendor "Amazon EC2", a UUID starting `ec2`."""
    digest = hashlib.sha256(instance_id.encode()).hexdigest()
    raw = "ec2" + digest[:29]
    uuid = f"{raw[:8]}-{raw[8:12]}-{raw[12:16]}-{raw[16:20]}-{raw[20:32]}"
    return {
        "sys_vendor": "Amazon EC2",
        "product_name": instance_type,
        "product_uuid": uuid,
        "product_serial": uuid,
        "chassis_asset_tag": "Amazon EC2",
    }


def no_imds_config(public_key: str) -> str:
    """Without an instance metadata service cloud-init uses its None datasource: the key comes from here."""
    comment = "no instance metadata service in this daemon: the None datasource, the key from here"
    return cloud_config_text(comment, ("None",), {"ssh_authorized_keys": [public_key.strip()]})
