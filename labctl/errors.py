"""The one exception type for expected failures."""


class LabError(Exception):
    """An expected failure: its message is one line saying what went wrong and what to do.

    The Fabric tasks print it without a traceback and exit non-zero.
    """
