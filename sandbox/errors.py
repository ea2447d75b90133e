"""The sandbox's error type: what can go wrong while running the offline EC2 emulator and its hosts."""

from labcore.errors import LabError


class SandboxError(LabError):
    """The sandbox daemon, a host or the network on this machine could not be set up or torn down."""
