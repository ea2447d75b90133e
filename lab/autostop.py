"""Auto-stop on the host: shut the machine down at a deadline so EC2 stops it (shutdown behaviour `stop`).

With systemd (every Ubuntu EC2 image, and the sandbox's booting hosts) this is `shutdown -h +MIN`. Without
systemd but with `poweroff` or `halt`, a detached root `sleep N; poweroff` timer does it (its PID is kept so
a re-run can see it); the sandbox's chroot hosts take this branch (their `poweroff` asks the host's init to
shut down, and the sandbox stops the instance as EC2 would). A host with neither cannot stop itself: that
is reported as `not possible` and nothing is scheduled. The marker `/run/labctl-auto-stop` ("DEADLINE METHOD
PID") says what was scheduled; /run is emptied by a reboot, exactly like a pending shutdown, so a re-run
after a reboot schedules again. `cancel_auto_stop` (for `--auto-stop off`) undoes what the marker names.
"""

from __future__ import annotations

import math
import time

from lab.remote import Host, q
from lab.result import StepResult, outcome

MARKER = "/run/labctl-auto-stop"
STEP = "auto-stop"
NOT_POSSIBLE = "not possible"
SYSTEMD = "systemd"
TIMER = "timer"


def minutes_until(deadline: float, now: float) -> int:
    """Whole minutes for `shutdown -h +MIN` (at least 1, rounded up so it never stops early)."""
    return max(1, math.ceil((deadline - now) / 60))


def seconds_until(deadline: float, now: float) -> int:
    return max(1, math.ceil(deadline - now))


def read_marker(host: Host) -> tuple[int, str, str] | None:
    """(deadline, method, pid) from the marker, or None."""
    text = host.read_file(MARKER)
    parts = (text or "").split()
    if len(parts) != 3 or not parts[0].isdigit():
        return None
    return int(parts[0]), parts[1], parts[2]


def still_scheduled(host: Host, method: str, pid: str) -> bool:
    """Whether the scheduled shutdown is still pending (systemd's schedule file, or the timer alive)."""
    if method == SYSTEMD:
        return host.run("test -e /run/systemd/shutdown/scheduled").ok
    return pid.isdigit() and host.sudo(f"kill -0 {pid}").ok


def shutdown_method(host: Host) -> str | None:
    """`systemd`, `timer` (poweroff/halt without systemd) or None when the host cannot power off."""
    if host.sudo("test -d /run/systemd/system && command -v shutdown").ok:
        return SYSTEMD
    if host.sudo("command -v poweroff || command -v halt").ok:
        return TIMER
    return None


def timer_command(seconds: int) -> str:
    """A detached root timer; only `setsid` is backgrounded so the SSH channel closes at once."""
    script = f"sleep {seconds}; poweroff || halt -p"
    return f"setsid nohup sh -c {q(script)} > /dev/null 2>&1 < /dev/null & echo $!"


def schedule(host: Host, method: str, deadline: int) -> str:
    """Schedule the shutdown now; returns the PID of the timer (`-` for systemd)."""
    now = time.time()
    if method == SYSTEMD:
        minutes = minutes_until(deadline, now)
        host.sudo(f"shutdown -h +{minutes} 'labctl auto-stop'", check=True)
        return "-"
    previous = read_marker(host)
    if previous and previous[1] == TIMER and previous[2].isdigit():
        host.sudo(f"kill {previous[2]}")
    return host.sudo(timer_command(seconds_until(deadline, now)), check=True).stdout.strip() or "-"


def auto_stop(host: Host, deadline: int, when: str) -> StepResult:
    """Make the host shut itself down at `deadline` (epoch seconds, `when` for people); idempotent."""
    marker = read_marker(host)
    if marker and marker[0] == deadline and still_scheduled(host, marker[1], marker[2]):
        return host.record(STEP, outcome(False, host.dry_run), f"shutdown already scheduled for {when}")
    method = shutdown_method(host)
    if method is None:
        return host.record(
            STEP,
            NOT_POSSIBLE,
            "this host has no systemd and no poweroff/halt, so it cannot stop "
            "itself; the deadline is only tagged and shown by fab status",
        )
    how = "shutdown -h" if method == SYSTEMD else "a sleep + poweroff timer (no systemd)"
    if host.dry_run:
        return host.record(STEP, outcome(True, True), f"would schedule {how} for {when}")
    pid = schedule(host, method, deadline)
    host.sudo(f"echo {deadline} {method} {pid} > {MARKER}", check=True)
    return host.record(STEP, outcome(True, False), f"{how} scheduled for {when}")


def cancel_auto_stop(host: Host) -> StepResult:
    """`--auto-stop off`: cancel what labctl scheduled (shutdown -c, or kill the timer); idempotent."""
    marker = read_marker(host)
    if marker is None:
        return host.record(STEP, outcome(False, host.dry_run), "nothing scheduled")
    _deadline, method, pid = marker
    if host.dry_run:
        return host.record(STEP, outcome(True, True), "would cancel the scheduled shutdown")
    if method == SYSTEMD:
        host.sudo("shutdown -c", check=True)
    elif pid.isdigit():
        host.sudo(f"kill {pid}")
    host.sudo(f"rm -f {MARKER}", check=True)
    return host.record(STEP, outcome(True, False), "scheduled shutdown cancelled")
