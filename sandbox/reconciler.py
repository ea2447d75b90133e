"""Make the hosts match the EC2 API: pending/running → up, stopping/stopped → down (upper dir kept),
terminated or gone → destroyed; a host's firewall follows its security groups' ingress rules. A host that
ran `poweroff` moves its instance to stopped (or terminated), as an instance-initiated shutdown on EC2."""

from __future__ import annotations

import json
import logging
import os
import subprocess
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

from sandbox import cgroups, container, disk, firewall, host, network, selfshutdown
from sandbox.errors import SandboxError
from sandbox.rootfs import BOOT_KIND, CHROOT_KIND

log = logging.getLogger("sandbox.reconciler")

UP_STATES = ("pending", "running")
DOWN_STATES = ("stopping", "stopped", "shutting-down")
RETRY_DELAY = 5.0


@dataclass(frozen=True)
class InstanceView:
    """What the reconciler needs of one moto instance."""

    instance_id: str
    region: str
    state: str
    address: str
    public_key: str
    rules: tuple = ()


@dataclass
class LiveHost:
    netns: str
    address: str
    process: subprocess.Popen | None = None
    ruleset: str = ""
    state: str = "down"


class ChrootHosts:
    """Hosts of kind `chroot` (no systemd): sandbox/host.py."""

    kind = CHROOT_KIND

    def __init__(self, hosts_dir: Path):
        self.hosts_dir = hosts_dir

    def seed(self, rootfs: Path, spec: host.HostSpec) -> None:
        host.seed_host(self.hosts_dir / spec.instance_id, rootfs, spec)

    def start(self, rootfs: Path, spec: host.HostSpec, netns: str, owner: int) -> subprocess.Popen:
        return host.start_host(self.hosts_dir / spec.instance_id, rootfs, spec, netns, owner)

    def stop(self, instance_id: str, process: subprocess.Popen) -> None:
        host.stop_host(process)

    def shut_itself_down(self, instance_id: str, process: subprocess.Popen) -> bool:
        return selfshutdown.take_request(self.hosts_dir / instance_id)


class ContainerHosts:
    """Hosts of kind `systemd` (nspawn containers booting the EC2-like image): sandbox/container.py."""

    kind = BOOT_KIND

    def __init__(self, hosts_dir: Path):
        self.hosts_dir = hosts_dir

    def seed(self, rootfs: Path, spec: host.HostSpec) -> None:
        container.seed(self.hosts_dir / spec.instance_id, rootfs, spec)

    def start(self, rootfs: Path, spec: host.HostSpec, netns: str, owner: int) -> subprocess.Popen:
        return container.start(self.hosts_dir / spec.instance_id, rootfs, spec, netns, owner)

    def stop(self, instance_id: str, process: subprocess.Popen) -> None:
        container.stop(process, instance_id)

    def shut_itself_down(self, instance_id: str, process: subprocess.Popen) -> bool:
        cgroups.kill(instance_id)
        cgroups.remove(instance_id)
        return container.shut_itself_down(process)


HOST_KINDS = {CHROOT_KIND: ChrootHosts, BOOT_KIND: ContainerHosts}


def snapshot_instances() -> list[InstanceView]:
    """Every instance of every loaded account and region of moto's EC2 backends."""
    from moto.ec2.models import ec2_backends

    views = []
    for account in list(dict.values(ec2_backends)):
        for backend in list(dict.values(account)):
            instances = list(backend.all_instances())
            members = _group_members(instances)
            views += [_view(backend, instance, members) for instance in instances]
    return views


def _group_members(instances: list) -> dict[str, list[str]]:
    """Security group id and name → addresses of its pending/running instances."""
    members: dict[str, list[str]] = {}
    for instance in instances:
        if instance.state in UP_STATES and instance.private_ip_address:
            for group in list(instance.security_groups):
                for key in (group.id, group.name):
                    members.setdefault(key, []).append(instance.private_ip_address)
    return members


def _view(backend, instance, members: dict[str, list[str]]) -> InstanceView:
    key_pair = backend.key_pairs.get(instance.key_name) if instance.key_name else None
    public_key = key_pair.material_public.decode() if key_pair is not None else ""
    return InstanceView(
        instance_id=instance.id,
        region=backend.region_name,
        state=instance.state,
        address=instance.private_ip_address or "",
        public_key=public_key,
        rules=tuple(
            json.dumps(r, sort_keys=True) for r in firewall.moto_rules(instance.security_groups, members)
        ),
    )


def _terminate_lost(instance_id: str) -> None:
    """Terminate an instance whose disk is gone, with a server-side state reason (as EC2 for a lost host)."""
    from moto.ec2.models.instances import StateReason

    instance = selfshutdown.find_instance(instance_id)
    if instance is None or instance.state == "terminated":
        return
    instance.terminate()
    instance.state_reason = StateReason(
        "Server.InternalError: the sandbox host's disk was lost (this machine restarted)",
        "Server.InternalError",
    )


class Reconciler:
    """Owns the hosts of one daemon. `step()` is called in a loop; `stop_all()` on shutdown."""

    def __init__(
        self,
        sandbox_dir: Path,
        rootfs: Path,
        proxy_port: int,
        owner: int,
        imds_port: int | None = None,
        kind: str = BOOT_KIND,
    ):
        self.hosts_dir = sandbox_dir / "hosts"
        self.hosts_dir.mkdir(mode=0o700, parents=True, exist_ok=True)
        self.status_file = sandbox_dir / "hosts.json"
        self.rootfs = rootfs
        self.proxy_port = proxy_port
        self.imds_port = imds_port
        self.kind = HOST_KINDS[kind](self.hosts_dir)
        self.owner = owner
        self.hosts: dict[str, LiveHost] = {}
        self.lock = threading.Lock()
        self._last_status = ""
        self.released: set[str] = set()
        self.retry_after: dict[str, float] = {}

    def host_dir(self, instance_id: str) -> Path:
        return self.hosts_dir / instance_id

    def terminate_lost(self, instance_ids) -> list[str]:
        """Terminate those of `instance_ids` whose disk is gone (before the API serves them); their ids."""
        gone = [i for i in instance_ids if disk.lost(self.host_dir(i))]
        for instance_id in gone:
            _terminate_lost(instance_id)
        return gone

    def step(self, views: list[InstanceView]) -> None:
        with self.lock:
            seen = set()
            now = time.monotonic()
            for view in views:
                seen.add(view.instance_id)
                if self.retry_after.get(view.instance_id, 0.0) > now:
                    continue
                try:
                    self._reconcile(view)
                except Exception:  # one broken host must not stop the others
                    log.exception("reconciling %s failed; retrying in %.0f s", view.instance_id, RETRY_DELAY)
                    self.retry_after[view.instance_id] = now + RETRY_DELAY
            for instance_id in [i for i in self.hosts if i not in seen]:
                self._destroy(instance_id)
            self._write_status(views)

    def _reconcile(self, view: InstanceView) -> None:
        if view.state in UP_STATES:
            self._ensure_up(view)
        elif view.state in DOWN_STATES:
            self._ensure_down(view.instance_id)
        elif view.state == "terminated":
            self._destroy(view.instance_id)
            if view.instance_id not in self.released and view.address:
                network.release_address(view.address, view.instance_id, self.owner)
                self.released.add(view.instance_id)

    def _ensure_up(self, view: InstanceView) -> None:
        live = self.hosts.get(view.instance_id)
        if live is not None and live.process is not None and live.process.poll() is None:
            self._sync_firewall(live, view)
            return
        if live is not None and live.process is not None and self._shut_itself_down(view.instance_id, live):
            return
        if live is not None and live.process is not None:
            if live.process.returncode == container.REBOOT_EXIT and self.kind.kind == BOOT_KIND:
                log.info("host %s rebooted itself; booting it again", view.instance_id)
            else:
                code = live.process.returncode
                log.warning("host %s died (exit %s); restarting it", view.instance_id, code)
            self._ensure_down(view.instance_id)
        if not view.address:
            return
        spec = host.HostSpec(view.instance_id, view.address, view.public_key, self.proxy_port, self.imds_port)
        try:
            self.kind.seed(self.rootfs, spec)  # attaches the host's disk (before any network is made for it)
        except disk.DiskLost as lost:
            log.warning("%s; terminating the instance", lost)
            _terminate_lost(view.instance_id)
            return
        if not network.claim_address(self.owner, view.address, view.instance_id):  # names it, too
            raise SandboxError(
                f"address {view.address} of {view.instance_id} is another daemon's: not booting it"
            )
        netns = network.create_host_network(view.instance_id, view.address)
        live = LiveHost(netns=netns, address=view.address)
        self.hosts[view.instance_id] = live
        self._sync_firewall(live, view)
        if self.imds_port is not None:
            self._route_metadata(netns)
        live.process = self.kind.start(self.rootfs, spec, netns, self.owner)
        live.state = "up"
        log.info(
            "host %s up at %s (netns %s, pid %s)", view.instance_id, view.address, netns, live.process.pid
        )

    def _route_metadata(self, netns: str) -> None:
        """169.254.169.254:80 inside the host's namespace → the daemon's metadata service on the gateway."""
        from sandbox import imds

        for command in imds.netns_commands(self.imds_port):
            network.run("ip", "netns", "exec", netns, *command)

    def _shut_itself_down(self, instance_id: str, live: LiveHost) -> bool:
        """A host that exited after `poweroff`: down, and the instance stopped/terminated as on EC2."""
        assert live.process is not None
        if not self.kind.shut_itself_down(instance_id, live.process):
            return False
        self._ensure_down(instance_id)
        state = selfshutdown.apply_in_moto(instance_id)
        log.info("host %s shut itself down; instance now %s", instance_id, state or "unchanged")
        return True

    def _sync_firewall(self, live: LiveHost, view: InstanceView) -> None:
        ruleset = firewall.render_ruleset(json.loads(r) for r in view.rules)
        if ruleset != live.ruleset:
            firewall.apply_ruleset(live.netns, ruleset)
            if live.ruleset:
                log.info("firewall of %s changed", view.instance_id)
            live.ruleset = ruleset

    def _ensure_down(self, instance_id: str) -> None:
        """Stop the host's processes and remove its network; its files stay (also after a half-done start)."""
        live = self.hosts.get(instance_id)
        if live is None:
            return
        if live.process is not None:
            self.kind.stop(instance_id, live.process)
            live.process = None
        if network.netns_exists(live.netns):
            network.delete_host_network(instance_id)
        if live.state != "down":
            log.info("host %s down (its files are kept)", instance_id)
        live.state, live.ruleset = "down", ""

    def _destroy(self, instance_id: str) -> None:
        if instance_id in self.hosts:
            self._ensure_down(instance_id)
            del self.hosts[instance_id]
        elif not self.host_dir(instance_id).exists():
            return
        host.remove_host_dir(self.host_dir(instance_id), None)
        log.info("host %s destroyed", instance_id)

    def stop_all(self) -> None:
        """Halt every host cleanly and remove its network, keeping its files (the daemon stops; its
        instances stay as the API state records them and boot again under the next daemon)."""
        with self.lock, ThreadPoolExecutor(max_workers=max(1, len(self.hosts))) as pool:
            for instance_id, future in [(i, pool.submit(self._ensure_down, i)) for i in list(self.hosts)]:
                try:
                    future.result()
                except Exception:
                    log.exception("stopping %s failed", instance_id)

    def _write_status(self, views: list[InstanceView]) -> None:
        status = {
            "instances": {
                v.instance_id: {"state": v.state, "region": v.region, "address": v.address} for v in views
            },
            "hosts": {
                i: {
                    "address": h.address,
                    "netns": h.netns,
                    "state": h.state,
                    "pid": h.process.pid if h.process else None,
                    "kind": self.kind.kind,
                }
                for i, h in self.hosts.items()
            },
        }
        text = json.dumps(status, indent=1, sort_keys=True)
        if text != self._last_status:
            tmp = self.status_file.with_suffix(".tmp")
            with os.fdopen(os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600), "w") as f:
                f.write(text)
            os.replace(tmp, self.status_file)
            self._last_status = text
