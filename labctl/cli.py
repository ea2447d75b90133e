"""`labctl`: the tasks of labctl.tasks as their own program, from any directory (`labctl provision ...`).

Invoke's documented way to ship tasks as a command ("Reusing Invoke's CLI module as a distinct binary"):
Fabric's `Fab` program with a bundled namespace, so `-H`, `-i` and the other SSH flags work as with `fab`,
and no fabfile is searched for or read. pyproject's console script is `labctl = "labctl.cli:main"`.
"""

from __future__ import annotations

from fabric import Config, Executor
from fabric.main import Fab
from invoke import Collection

import labctl
from labctl import taskargs, tasks

program = Fab(
    name="labctl",
    binary="labctl",
    version=labctl.__version__,
    namespace=Collection.from_module(tasks),
    executor_class=Executor,
    config_class=Config,
)


def main(argv: list[str] | None = None) -> None:
    """Run the program on `argv` (default: sys.argv); a LabError ends as one `error:` line and exit 1."""
    tasks.freeze_startup()
    taskargs.install()  # "did you mean" for a mistyped task; one line for `-- COMMAND` without -H
    program.run(argv)


if __name__ == "__main__":
    main()
