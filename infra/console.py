"""An instance's console output as text (cloud-init prints the SSH host keys there)."""

from __future__ import annotations


def console_output(ec2, instance_id: str, latest: bool = False) -> str:
    """The console text of `instance_id` ('' when EC2 has none yet); botocore already decodes the base64."""
    kwargs = {"Latest": True} if latest else {}
    return ec2.get_console_output(InstanceId=instance_id, **kwargs).get("Output") or ""
