"""The one exception type for expected failures."""


class LabError(Exception):
    """An expected failure: its message is one line saying what went wrong and what to do.

    The Fabric tasks print it without a traceback and exit non-zero.
    """


class LabInterrupted(LabError):
    """Ctrl-C stopped a task; the message says what exists now and how to converge or clean up.

    The Fabric tasks exit with 130, like a shell does after SIGINT.
    """
