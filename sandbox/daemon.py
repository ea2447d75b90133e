"""The sandbox daemon: moto's EC2 API on 127.0.0.1, the apt proxy and the instance metadata service on the
gateway, and the reconciler.

Run as `python -m sandbox.daemon --state-dir DIR` (control.ensure_running does, detached). It writes
DIR/sandbox/daemon.json once the API answers, logs to DIR/sandbox/daemon.log, registers itself in
/run/labctl/daemons/. Its API state is saved in DIR/sandbox/api-state.* after every change (`apistate`) and
loaded again at start: the same instances (ids, states, addresses, key pairs, groups) come back and their
hosts boot again from their kept upper dirs. On SIGTERM it halts its hosts cleanly (systemd shutdown) but
keeps their files and the API state (instances still recorded as running), then drops its leases and (when
unused) the bridge.
"""

from __future__ import annotations

import argparse
import contextlib
import logging
import os
import signal
import sys
import threading
import time
from pathlib import Path

from labcore.net import SANDBOX_GATEWAY

DAEMON_MARK = "LABCTL_SANDBOX_DAEMON"
RECONCILE_INTERVAL = 0.1
log = logging.getLogger("sandbox.daemon")


class Daemon:
    def __init__(self, state_dir: Path, host_kind: str):
        self.sandbox_dir = state_dir / "sandbox"
        self.host_kind = host_kind
        self.stopping = threading.Event()

    def run(self) -> None:
        from sandbox import moto_images

        moto_images.install(self.sandbox_dir / "amis.json", with_lookalike=False)
        from moto.server import ThreadedMotoServer

        from sandbox import host, motopatch, network, registry
        from sandbox.apistate import ApiState
        from sandbox.aptproxy import AptProxy
        from sandbox.console import ConsoleBuffer, delay_from_env
        from sandbox.imds import MetadataService
        from sandbox.imds_source import MotoMetadataSource
        from sandbox.mirror import debian_mirror_url
        from sandbox.reconciler import Reconciler, snapshot_instances
        from sandbox.rootfs import ensure_rootfs

        owner = os.getpid()
        console_delay = delay_from_env()
        rootfs = ensure_rootfs(say=log.info, kind=self.host_kind)
        with contextlib.ExitStack() as cleanup:
            cleanup.callback(log.info, "stopped")
            cleanup.callback(network.remove_bridge_if_unused, exclude=owner)
            cleanup.callback(network.reserve_addresses, owner, self.sandbox_dir)  # for the saved instances
            registry.register(owner, self.sandbox_dir.parent)
            cleanup.callback(registry.unregister, owner)
            network.ensure_bridge()
            proxy = AptProxy(SANDBOX_GATEWAY, debian_mirror_url()).start()
            cleanup.callback(proxy.stop)
            imds = MetadataService(MotoMetadataSource(owner)).start()
            cleanup.callback(imds.stop)
            reconciler = Reconciler(
                self.sandbox_dir, rootfs, proxy.port, owner, imds_port=imds.port, kind=self.host_kind
            )
            cleanup.callback(reconciler.stop_all)
            console = ConsoleBuffer(
                lambda instance_id: host.console_snapshot(reconciler.host_dir(instance_id)), console_delay
            )
            motopatch.install(
                allocate=lambda instance_id: network.lease_address(owner, instance_id), console=console
            )
            api_state = ApiState(self.sandbox_dir, self.host_kind)
            restored = api_state.load()
            for instance_id in reconciler.terminate_lost(restored):
                log.warning("disk of %s gone (this machine restarted): instance terminated", instance_id)
                api_state.changed.set()
            reconciler.released |= _claim_leases(owner, restored)
            api_state.install_change_hook()
            server = ThreadedMotoServer(ip_address="127.0.0.1", port=0, verbose=False)
            server.start()
            cleanup.callback(server.stop)
            cleanup.callback(api_state.save)  # the last word: instances recorded as they are (running)
            endpoint = f"http://127.0.0.1:{server.get_host_and_port()[1]}"
            registry.write_json(
                self.sandbox_dir / "daemon.json",
                {
                    "pid": owner,
                    "endpoint": endpoint,
                    "proxy": f"http://{SANDBOX_GATEWAY}:{proxy.port}",
                    "imds_port": imds.port,
                    "console_delay": console_delay,
                    "rootfs": str(rootfs),
                    "host_kind": self.host_kind,
                    "started": time.time(),
                },
            )
            cleanup.callback((self.sandbox_dir / "daemon.json").unlink, missing_ok=True)
            cleanup.callback(log.info, "stopping: halting hosts (their files and the API state are kept)")
            log.info(
                "API at %s, apt proxy at %s, metadata service at %s, rootfs %s",
                endpoint,
                proxy.port,
                imds.port,
                rootfs,
            )
            last_views: list = []
            while not self.stopping.is_set():
                if not (self.sandbox_dir / "daemon.json").exists():
                    log.warning("%s vanished: nobody can reach this daemon; stopping", self.sandbox_dir)
                    break
                views = snapshot_instances()
                if views != last_views:
                    api_state.changed.set()
                    last_views = views
                api_state.save_if_changed()
                reconciler.step(views)
                self.stopping.wait(RECONCILE_INTERVAL)


def _claim_leases(owner: int, restored: dict[str, dict]) -> set[str]:
    """Lease the addresses of the restored instances again for this daemon; returns the terminated ones
    (their addresses were released before, and may be another instance's now)."""
    from sandbox import network
    from sandbox.apistate import LIVE_STATES

    for instance_id, entry in restored.items():
        live = entry.get("state") in LIVE_STATES and entry.get("address")
        if live and not network.claim_address(owner, entry["address"], instance_id):
            log.error("address %s of %s is another daemon's now", entry["address"], instance_id)
    return {i for i, entry in restored.items() if entry.get("state") not in LIVE_STATES}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m sandbox.daemon", description=__doc__.splitlines()[0])
    parser.add_argument("--state-dir", required=True, type=Path)
    parser.add_argument("--host-kind", choices=("systemd", "chroot"), default="systemd")
    args = parser.parse_args(argv)
    logging.basicConfig(
        level=logging.INFO, stream=sys.stderr, format="%(asctime)s %(name)s %(levelname)s %(message)s"
    )
    daemon = Daemon(args.state_dir.resolve(), args.host_kind)
    for sig in (signal.SIGTERM, signal.SIGINT, signal.SIGHUP):
        signal.signal(sig, lambda *_: daemon.stopping.set())
    try:
        daemon.run()
    except Exception:
        log.exception("the sandbox daemon failed")
        return 1
    return 0


if __name__ == "__main__":
    status = main()
    logging.shutdown()
    os._exit(status)  # all cleaned up: skip tearing down moto's heap (~0.6 s before the pid is gone)
