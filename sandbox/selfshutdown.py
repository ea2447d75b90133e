"""Instance-initiated shutdown in the sandbox: `poweroff`, `halt` and `shutdown -h now` inside a host.

The hosts have no systemd, so these commands (seeded into every host's upper layer at boot) leave a request
file on the overlay and send SIGTERM to the host's init (PID 1 of its PID namespace), which exits. The
reconciler sees the host gone with the request file present and does what EC2 does: the instance becomes
`stopped` (upper dir kept, a later StartInstances boots it again) or `terminated` when its
InstanceInitiatedShutdownBehavior is `terminate`.
"""

from __future__ import annotations

from pathlib import Path

from sandbox import disk

REQUEST_FILE = "var/lib/labctl/poweroff-requested"  # inside the host's tree
STOPPED = "stopped"
TERMINATED = "terminated"

POWEROFF_SCRIPT = f"""#!/bin/sh
# labctl sandbox host: no systemd, so ask the tiny init (PID 1) to shut down; EC2's shutdown behaviour follows
if [ "$(id -u)" != 0 ]; then echo "$0: must be root (try sudo)" >&2; exit 1; fi
mkdir -p /{Path(REQUEST_FILE).parent}
echo "$0 $*" > /{REQUEST_FILE}
exec kill -TERM 1
"""

SHUTDOWN_SCRIPT = """#!/bin/sh
# labctl sandbox host: only an immediate shutdown is possible (nothing could keep a schedule)
case " $* " in
  *" now "*|*" +0 "*) exec /usr/sbin/poweroff ;;
esac
echo "shutdown: this sandbox host only supports 'shutdown -h now' (no systemd to schedule it)" >&2
exit 1
"""

COMMANDS = {
    "usr/sbin/poweroff": POWEROFF_SCRIPT,
    "usr/sbin/halt": POWEROFF_SCRIPT,
    "usr/sbin/shutdown": SHUTDOWN_SCRIPT,
}


def request_path(host_dir: Path) -> Path:
    """Where a host's shutdown request appears on this machine (its overlay upper dir)."""
    return disk.upper(host_dir) / REQUEST_FILE


def take_request(host_dir: Path) -> bool:
    """True (and the request removed) when the host asked to be shut down."""
    path = request_path(host_dir)
    if not path.exists():
        return False
    path.unlink()
    return True


def apply_in_moto(instance_id: str) -> str | None:
    """Stop (or terminate, per its shutdown behaviour) the instance; returns the new state or None."""
    instance = find_instance(instance_id)
    if instance is None or instance.state not in ("pending", "running"):
        return None
    if instance.instance_initiated_shutdown_behavior == "terminate":
        instance.terminate()
    else:
        instance.stop()
        instance._reason = "Instance initiated shutdown"
    _mark_instance_initiated(instance)
    return instance.state


def _mark_instance_initiated(instance) -> None:
    from moto.ec2.models.instances import StateReason

    instance.state_reason = StateReason(
        "Client.InstanceInitiatedShutdown: Instance initiated shutdown", "Client.InstanceInitiatedShutdown"
    )


def find_instance(instance_id: str):
    """moto's instance `instance_id` in any loaded account and region, or None."""
    from moto.ec2.models import ec2_backends

    for account in list(dict.values(ec2_backends)):
        for backend in list(dict.values(account)):
            for instance in list(backend.all_instances()):
                if instance.id == instance_id:
                    return instance
    return None
