"""GetConsoleOutput as EC2 answers it: a buffered snapshot per boot, and the live console on Nitro only.

EC2's API reference: "By default, the console output returns buffered information that was posted shortly
after an instance transition state (start, stop, reboot, or terminate) ... Only the most recent 64 KB of
console output is available. You can optionally retrieve the latest serial console output at any time during
the instance lifecycle. This option is supported on instance types that use the Nitro hypervisor."

So, per instance (a Nitro type without `Latest` is buffered too: the reference says "by default" for every
type and offers the live console only through `Latest`):
- without `Latest` (every instance type): nothing until `delay` seconds after the boot started and the boot
  got past cloud-init (`boot_settled`; at most SETTLE_LIMIT more), then one snapshot of that boot's console,
  posted at the first request after that, which stays the same until a
  later boot's snapshot is posted (after a stop/start the previous boot's post is shown until then, as EC2
  keeps a post "for at least one hour"). Timestamp: when it was posted.
- `Latest=True` on a Nitro type: the console as it is now, Timestamp now.
- `Latest=True` on a Xen type: refused with EC2's `UnsupportedOperation` (`LatestUnsupported`).
The delay is `$LABCTL_SANDBOX_CONSOLE_DELAY` seconds (default DEFAULT_DELAY).
"""

from __future__ import annotations

import os
import re
import threading
import time
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Callable

from sandbox.errors import SandboxError

DELAY_ENV = "LABCTL_SANDBOX_CONSOLE_DELAY"
DEFAULT_DELAY = 5.0
SETTLE_LIMIT = 60.0  # a boot that never says it finished is posted this long after the delay anyway
BOOT_DONE_MARKS = (
    " finished at ",
    "-----END SSH HOST KEY KEYS-----",
)  # cloud-init's last line; a chroot host
OUTPUT_LIMIT = 64 * 1024
LATEST_UNSUPPORTED_CODE = "UnsupportedOperation"
LATEST_UNSUPPORTED_MESSAGE = "This instance type does not support retrieving the latest console logs"

# Families that run on the Xen hypervisor (AWS, "Instances built on the AWS Nitro System": every family not
# listed there is Xen). Every family launched since 2017 (t3, t3a, t4g, m5, c5, r5, ... m7i, c8g) is Nitro,
# so an unknown family counts as Nitro. i3.metal and p3dn.24xlarge are Nitro within Xen families.
XEN_FAMILIES = frozenset(
    {
        "t1",
        "t2",
        "m1",
        "m2",
        "m3",
        "m4",
        "c1",
        "c3",
        "c4",
        "cc2",
        "cr1",
        "r3",
        "r4",
        "i2",
        "i3",
        "d2",
        "h1",
        "hs1",
        "g2",
        "g3",
        "g3s",
        "p2",
        "p3",
        "x1",
        "x1e",
        "f1",
    }
)
NITRO_IN_XEN_FAMILIES = frozenset({"i3.metal", "p3dn.24xlarge"})


class LatestUnsupported(SandboxError):
    """GetConsoleOutput(Latest=True) on an instance type without the Nitro hypervisor."""

    code = LATEST_UNSUPPORTED_CODE

    def __init__(self) -> None:
        super().__init__(LATEST_UNSUPPORTED_MESSAGE)


def is_nitro(instance_type: str) -> bool:
    """True when `instance_type` (e.g. t3.micro) runs on the Nitro hypervisor, False for Xen (t2.micro)."""
    if instance_type in NITRO_IN_XEN_FAMILIES:
        return True
    family = instance_type.split(".", 1)[0]
    return family not in XEN_FAMILIES


def delay_from_env(environ: Mapping[str, str] = os.environ) -> float:
    """The console delay in seconds from $LABCTL_SANDBOX_CONSOLE_DELAY (default DEFAULT_DELAY)."""
    raw = environ.get(DELAY_ENV, "").strip()
    if not raw:
        return DEFAULT_DELAY
    if not re.fullmatch(r"\d+(\.\d+)?", raw):
        raise SandboxError(f"{DELAY_ENV}={raw!r} is not a number of seconds (e.g. {DEFAULT_DELAY:g})")
    return float(raw)


def boot_settled(text: str) -> bool:
    """The boot got past cloud-init (its final stage's "Cloud-init v. N finished at ..." line, or the host-key
    block a chroot host prints): EC2 posts a Xen console "shortly after" the transition, i.e. with the boot's
    output in it; the sandbox does not post a half-written boot that would lack the keys until the next.
    """
    return any(mark in text for mark in BOOT_DONE_MARKS)


def last_64k(text: str) -> str:
    """The most recent 64 KB of `text`."""
    data = text.encode()
    return data[-OUTPUT_LIMIT:].decode(errors="ignore") if len(data) > OUTPUT_LIMIT else text


@dataclass(frozen=True)
class Post:
    """One buffered snapshot: the console of the boot started at `boot_started`, posted at `posted`."""

    boot_started: float
    text: str
    posted: float


class ConsoleBuffer:
    """The console outputs of one daemon's instances. `snapshot(instance_id)` is the host's
    (text of its latest boot, when that boot started | None if it never booted)."""

    def __init__(
        self,
        snapshot: Callable[[str], tuple[str, float | None]],
        delay: float = DEFAULT_DELAY,
        clock: Callable[[], float] = time.time,
    ):
        self.snapshot = snapshot
        self.delay = delay
        self.clock = clock
        self._posts: dict[str, Post] = {}
        self._lock = threading.Lock()

    def read(self, instance_id: str, instance_type: str, latest: bool = False) -> tuple[str, float]:
        """(output, timestamp in epoch seconds) as GetConsoleOutput gives them; '' while nothing is posted."""
        if latest and not is_nitro(instance_type):
            raise LatestUnsupported()
        text, started = self.snapshot(instance_id)
        now = self.clock()
        if latest:
            return last_64k(text), now
        with self._lock:
            post = self._posts.get(instance_id)
            due = (
                started is not None
                and now >= started + self.delay
                and (boot_settled(text) or now >= started + self.delay + SETTLE_LIMIT)
            )
            if due and (post is None or post.boot_started != started):
                post = Post(started, last_64k(text), now)
                self._posts[instance_id] = post
        if post is None:
            return "", now
        return post.text, post.posted
