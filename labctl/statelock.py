"""One changing labctl run per state directory: an exclusive `flock` on `<state dir>/lock`.

The tasks that change the lab (provision, deploy-echo, teardown) call `hold()` first; the lock is held until
the process exits (the kernel drops it then, also after a crash or kill -9, so it never goes stale).
Read-only tasks (status, plan, verify, ssh) never take it. A second run does not fail at once: it prints one
line, `waiting for the other labctl run in DIR (pid N)`, and goes on when the first one finishes; after
$LAB_LOCK_WAIT seconds (default 900, 0 = do not wait) it gives up with one line instead.
A run holding the lock may call `hold()` again (`fab provision deploy-echo`): that is a no-op.
"""

from __future__ import annotations

import os
import sys
import threading
import time
from pathlib import Path
from typing import Callable

from labctl.errors import LabError

try:
    import fcntl
except ImportError:  # Windows: no flock; runs are not serialised there
    fcntl = None

LOCK_FILE = "lock"
DEFAULT_WAIT = 900.0
_POLL = 0.2
_held: dict[Path, int] = {}  # state dir → the open lock file of this process
_guard = threading.Lock()


def wait_seconds() -> float:
    """How long a second run waits for the first: $LAB_LOCK_WAIT seconds, else DEFAULT_WAIT."""
    value = os.environ.get("LAB_LOCK_WAIT", "")
    try:
        return max(0.0, float(value)) if value else DEFAULT_WAIT
    except ValueError:
        raise LabError(f"LAB_LOCK_WAIT={value!r} is not a number of seconds") from None


def hold(
    directory: Path | None = None, say: Callable[[str], None] | None = None, dry_run: bool = False
) -> None:
    """Take the state directory's lock for the rest of this process (waiting for another run if needed).

    A dry run changes nothing and takes no lock (so it never waits either).
    """
    if fcntl is None or dry_run:
        return
    if directory is None:
        from labctl.state import state_dir

        directory = state_dir()
    with _guard:
        if directory in _held:
            return
        _held[directory] = _acquire(directory, wait_seconds(), say or _to_stderr)


def release(directory: Path) -> None:
    """Drop the lock early (tests; a task never needs to)."""
    with _guard:
        fd = _held.pop(directory, None)
    if fd is not None:
        os.close(fd)  # closing the only descriptor releases the flock


def _acquire(directory: Path, wait: float, say: Callable[[str], None]) -> int:
    path = directory / LOCK_FILE
    fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o600)  # not inherited by child processes (PEP 446)
    try:
        if not _try_lock(fd):
            holder = _holder(fd)
            say(f"waiting for the other labctl run in {directory} ({holder})")
            deadline = time.monotonic() + wait
            while not _try_lock(fd):
                if time.monotonic() >= deadline:
                    raise LabError(
                        f"another labctl run ({_holder(fd)}) still changes {directory} after {wait:.0f} s: "
                        "let it finish (or stop it), then re-run"
                    )
                time.sleep(_POLL)
        os.ftruncate(fd, 0)
        os.pwrite(fd, f"{os.getpid()}\n".encode(), 0)
        return fd
    except BaseException:
        os.close(fd)
        raise


def _try_lock(fd: int) -> bool:
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        return False
    return True


def _holder(fd: int) -> str:
    """`pid N` as the holder wrote it into the lock file (`pid unknown` while it is still writing it)."""
    try:
        text = os.pread(fd, 32, 0).decode().strip()
    except (OSError, UnicodeDecodeError):
        text = ""
    return f"pid {text}" if text.isdigit() else "pid unknown"


def _to_stderr(text: str) -> None:
    print(text, file=sys.stderr, flush=True)
