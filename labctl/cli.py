"""`labctl`: the fabfile's tasks as a program that works from any directory (`labctl provision ...`)."""

from __future__ import annotations

import importlib.util
import sys
from pathlib import Path

FABFILE = Path(__file__).resolve().parent.parent / "fabfile.py"


def load_fabfile(path: Path = FABFILE):
    """Import the project's fabfile.py (next to the labctl package) as a module."""
    if not path.exists():
        print(f"error: {path} not found: install labctl from a checkout (pip install -e)", file=sys.stderr)
        raise SystemExit(1)
    spec = importlib.util.spec_from_file_location("labctl_fabfile", path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def main(argv: list[str] | None = None) -> None:
    """Run Fabric's program with the fabfile's tasks as its namespace."""
    from fabric import Config, Executor
    from fabric.main import Fab
    from invoke import Collection

    import labctl

    namespace = Collection.from_module(load_fabfile())
    program = Fab(
        name="labctl",
        binary="labctl",
        version=getattr(labctl, "__version__", "0.1.0"),
        namespace=namespace,
        executor_class=Executor,
        config_class=Config,
    )
    program.run(argv)


if __name__ == "__main__":
    main()
