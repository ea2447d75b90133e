"""The host layer's error types: what can go wrong on a host reached over SSH."""

from labcore.errors import LabError


class HostError(LabError):
    """A host step, an SSH connection or a remote command failed in an expected way."""
