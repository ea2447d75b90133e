"""The base of every expected failure; each layer derives its own error types from it."""


class LabError(Exception):
    """An expected failure: its message is one line saying what went wrong and what to do.

    The command line prints it without a traceback and exits non-zero. Layers raise their own subclasses
    (`infra.errors.CloudError`, `lab.errors.HostError`, `sandbox.errors.SandboxError`).
    """
