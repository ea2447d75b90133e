"""An instance's console output, and the bounded wait for the SSH host keys cloud-init prints there.

`Latest=True` (the live serial console) is asked first on types that may support it (Nitro); EC2 refuses it
on Xen types with `UnsupportedOperation`, and then the buffered console is read instead, for the rest of the
run for that type. A t2's buffered console shows up minutes after boot, so the wait prints a progress line
with the elapsed time and ends, at its deadline, in one line naming the ways forward.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import TextIO

from botocore.exceptions import ClientError

from infra.errors import CloudError, aws_errors, error_code

HostKeys = tuple[tuple[str, str], ...]

# EC2's answer to Latest=True on a Xen type: "This instance type does not support retrieving the latest
# console logs".
LATEST_UNSUPPORTED = "UnsupportedOperation"
# Xen families (no Latest): https://docs.aws.amazon.com/ec2/latest/instancetypes/ec2-nitro-instances.html
XEN_FAMILIES = frozenset(
    {"t1", "t2", "m1", "m2", "m3", "m4", "c1", "c3", "c4", "r3", "r4", "x1", "x1e", "d2", "i2", "i3"}
    | {"g2", "g3", "g3s", "p2", "p3", "h1", "f1", "cc2", "cr1", "hs1"}
)
XEN_TIMEOUT = 600.0  # a t2's buffered console appears minutes after boot
NITRO_TIMEOUT = 300.0  # the live console shows the keys as cloud-init prints them
PROGRESS_EVERY = 15.0  # seconds between progress lines when the output is not a terminal
FIRST_MINUTE = 60.0  # while keys usually appear (a few seconds in the sandbox), reads stay close together
FIRST_MINUTE_DELAY = 1.0  # at most this long between reads then: each one is a cheap Describe-class call
MAX_POLL_DELAY = 10.0

_LATEST_REFUSED: set[str] = set()  # instance types EC2 refused Latest=True for, in this process


def console_output(ec2, instance_id: str, latest: bool = False) -> str:
    """The console text of `instance_id` ('' when EC2 has none yet); botocore already decodes the base64."""
    kwargs = {"Latest": True} if latest else {}
    return ec2.get_console_output(InstanceId=instance_id, **kwargs).get("Output") or ""


def is_xen(instance_type: str | None) -> bool:
    """Whether `instance_type` runs on Xen (buffered console only); unknown types count as Nitro."""
    family, _, size = (instance_type or "").partition(".")
    return family in XEN_FAMILIES and size != "metal"


def asks_latest(instance_type: str | None) -> bool:
    """Whether to ask for the live console (`Latest=True`) on this type in this run."""
    return not is_xen(instance_type) and (instance_type or "") not in _LATEST_REFUSED


def read_console(ec2, instance_id: str, instance_type: str | None) -> str:
    """The console text, live when the type supports it; EC2's UnsupportedOperation → the buffered one."""
    if asks_latest(instance_type):
        try:
            return console_output(ec2, instance_id, latest=True)
        except ClientError as exc:
            if error_code(exc) != LATEST_UNSUPPORTED:
                raise
            _LATEST_REFUSED.add(instance_type or "")
    return console_output(ec2, instance_id)


def host_key_timeout(instance_type: str | None) -> float:
    """How long to wait for the keys: longer where only the buffered console can be read."""
    return NITRO_TIMEOUT if asks_latest(instance_type) else XEN_TIMEOUT


class _Progress:
    """`waiting for the host keys on i-...'s console (...) 35 s`: redrawn in place on a terminal, else one
    line every PROGRESS_EVERY seconds."""

    def __init__(self, out: TextIO | None, text: str) -> None:
        self.out = out
        self.text = text
        self.tty = out is not None and out.isatty()
        self.shown_at: float | None = None

    def show(self, elapsed: float) -> None:
        if self.out is None:
            return
        if self.tty:
            self.out.write(f"\r\x1b[2K{self.text} {elapsed:.0f} s")
        elif self.shown_at is None or elapsed - self.shown_at >= PROGRESS_EVERY:
            self.out.write(f"{self.text} {elapsed:.0f} s\n")
        else:
            return
        self.out.flush()
        self.shown_at = elapsed

    def end(self) -> None:
        if self.tty and self.shown_at is not None:
            self.out.write("\r\x1b[2K")
            self.out.flush()


def wait_for_host_keys(
    ec2,
    instance: dict,
    parse: Callable[[str], HostKeys],
    *,
    out: TextIO | None = None,
    timeout: float | None = None,
    sleep: Callable[[float], None] | None = None,
    clock: Callable[[], float] | None = None,
) -> HostKeys:
    """The host keys `parse` finds on the console of `instance`, polled until they appear or `timeout`.

    `out`: where the progress line goes (None: nowhere); `sleep` and `clock` are for tests.

    Never falls back to trusting whatever key the host presents: at the deadline, a CloudError.
    """
    sleep, clock = sleep or time.sleep, clock or time.monotonic
    instance_id, instance_type = instance["InstanceId"], instance.get("InstanceType")
    start = clock()
    deadline: float | None = None  # set after the first read, once it is known which console EC2 gives
    progress = _Progress(None, "")
    delay = 0.2
    next_poll = start
    try:
        while True:
            now = clock()
            if now >= next_poll or (deadline is not None and now >= deadline):
                with aws_errors():
                    keys = parse(read_console(ec2, instance_id, instance_type))
                if keys:
                    return keys
                if deadline is None:
                    deadline = start + (host_key_timeout(instance_type) if timeout is None else timeout)
                    progress = _Progress(out, _waiting(instance_id, instance_type))
                next_poll = clock() + delay
                delay = min(delay * 2, poll_cap(clock() - start))
                now = clock()
                if now >= deadline:
                    raise CloudError(_gave_up(instance, now - start))
            progress.show(now - start)
            wake = min(next_poll, deadline)
            sleep(max(0.0, min(wake - now, 1.0) if progress.tty else wake - now))
    finally:
        progress.end()


def poll_cap(elapsed: float) -> float:
    """The longest pause between two console reads `elapsed` seconds into the wait."""
    return FIRST_MINUTE_DELAY if elapsed < FIRST_MINUTE else MAX_POLL_DELAY


def _waiting(instance_id: str, instance_type: str | None) -> str:
    if asks_latest(instance_type):
        hint = "usually within a minute of boot"
    else:
        hint = f"{(instance_type or 'xen').split('.')[0]} consoles appear a few minutes after boot"
    return f"waiting for the host keys on {instance_id}'s console ({hint})"


def _gave_up(instance: dict, elapsed: float) -> str:
    instance_id, address = instance["InstanceId"], instance.get("PublicIpAddress") or "its address"
    return (
        f"instance {instance_id} has printed no SSH host keys on its console after {elapsed:.0f} s, so its "
        "host key cannot be pinned (labctl never trusts an unchecked key): wait a few minutes and re-run; "
        f"or open the instance's system log in the EC2 console (Monitor and troubleshoot > Get system "
        f"log), and if it shows the SSH HOST KEY block, log in with plain `ssh ubuntu@{address}` accepting "
        f"only that fingerprint; or `fab teardown` then `fab provision` for a fresh instance"
    )
