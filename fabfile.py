"""labctl's Fabric tasks for `fab` in a checkout; they live in labctl/tasks.py (`labctl` runs the same).

Run `fab --list` for the tasks and `fab --help provision` for a task's options.
"""

from labctl import taskargs
from labctl.tasks import (
    deploy_echo,
    forget_host_keys,
    freeze_startup,
    plan,
    provision,
    ssh,
    status,
    teardown,
    verify,
)

__all__ = ["deploy_echo", "forget_host_keys", "plan", "provision", "ssh", "status", "teardown", "verify"]

freeze_startup()
taskargs.install()  # "did you mean" for a mistyped task; one line for `-- COMMAND` without -H
