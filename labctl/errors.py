"""The command line's errors: the base of expected failures, and Ctrl-C with what it left behind."""

from labcore.errors import LabError

__all__ = ["LabError", "LabInterrupted"]


class LabInterrupted(LabError):
    """Ctrl-C stopped a task; the message says what exists now and how to converge or clean up.

    The Fabric tasks exit with 130, like a shell does after SIGINT.
    """
