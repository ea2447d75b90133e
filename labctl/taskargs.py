"""The tasks' command line where Invoke/Fabric fall short: odd flags, repeated options, mistyped names.

- `task` is Fabric's decorator with `LabTask`: no auto short flag made of a dash (Invoke picks `-` for
  `--auto-stop` when its letters are taken, which `fab --help` shows as `--=STRING`).
- `one_value` turns a list-typed option (`iterable=`) given twice into one clear line.
- `class_mode_only` refuses class-mode flags without class mode instead of ignoring them.
- `install()` (called once by the fabfile) adds "did you mean" to Invoke's `No idea what 'X' is!` and turns
  Fabric's traceback for `fab TASK -- COMMAND` without -H hosts into one line.
"""

from __future__ import annotations

import ast
import difflib
import functools
import re

from fabric import tasks

from labctl.errors import LabError

_UNKNOWN = re.compile(r"^No idea what (.+) is!$")


class LabTask(tasks.Task):
    """Fabric's Task whose automatic short flags are letters or digits only."""

    def arg_opts(self, name, default, taken_names):
        opts = super().arg_opts(name, default, taken_names)
        opts["names"] = [n for n in opts["names"] if len(n) > 1 or n.isalnum()]
        return opts


def task(*args, **kwargs):
    """`fabric.task` making a LabTask."""
    kwargs.setdefault("klass", LabTask)
    return tasks.task(*args, **kwargs)


def one_value(flag: str, values: list[str] | str | None) -> str | None:
    """The one value of a list-typed option (None when not given); LabError when given more than once.

    A task called as a function (not from the command line) may pass the one value as it is.
    """
    if not values:
        return None
    if isinstance(values, str):
        return values
    if len(values) > 1:
        raise LabError(f"--{flag} was given {len(values)} times ({', '.join(values)}): give it once")
    return values[0]


def class_mode_only(students: str | None, count: str | None, **flags: object) -> None:
    """Refuse class-mode flags (given as name=value) when neither --students nor --count is."""
    if students or count:
        return
    given = [f"--{name.strip('_').replace('_', '-')}" for name, value in flags.items() if value]
    if given:
        verb = "applies" if len(given) == 1 else "apply"
        raise LabError(f"{' and '.join(given)} only {verb} to class mode: add --students FILE or --count N")


def did_you_mean(token: str, candidates: list[str]) -> str:
    """` Did you mean 'x'?` for the closest candidate, or ''."""
    close = difflib.get_close_matches(token, candidates, n=1, cutoff=0.6)
    return f" Did you mean {close[0]!r}?" if close else ""


def _unknown_token(message: str) -> str | None:
    match = _UNKNOWN.match(message)
    if not match:
        return None
    try:
        token = ast.literal_eval(match.group(1))
    except (ValueError, SyntaxError):
        return None
    return token if isinstance(token, str) else None


def _candidates(machine, token: str) -> list[str]:
    """Task names for a word, the current task's and the core flags for a flag."""
    if not token.startswith("-"):
        return list(machine.contexts.keys())
    flags = list(machine.context.flags.keys()) if machine.context else []
    return flags + (list(machine.initial.flags.keys()) if machine.initial else [])


def install() -> None:
    """Patch Invoke's parser and Fabric's executor once (idempotent) for the two messages above."""
    from fabric.exceptions import NothingToDo
    from fabric.executor import Executor
    from invoke.exceptions import Exit
    from invoke.parser.parser import ParseMachine

    if getattr(ParseMachine.error, "labctl", False):
        return
    raise_error = ParseMachine.error

    @functools.wraps(raise_error)
    def error(self, msg: str) -> None:
        token = _unknown_token(msg)
        raise_error(self, msg + did_you_mean(token, _candidates(self, token)) if token else msg)

    error.labctl = True
    ParseMachine.error = error
    expand_calls = Executor.expand_calls

    @functools.wraps(expand_calls)
    def expand(self, *args, **kwargs):
        try:
            return expand_calls(self, *args, **kwargs)
        except NothingToDo:
            raise Exit(
                f"error: `-- {self.core.remainder}` runs that command on -H hosts, and none were given: "
                "drop it (see `fab --help TASK` for a task's options)",
                code=1,
            ) from None

    Executor.expand_calls = expand
