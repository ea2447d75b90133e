"""Security-group ingress rules → an iptables ruleset for a host's namespace, loaded atomically."""

from __future__ import annotations

import ipaddress
import subprocess
from collections.abc import Iterable, Mapping, Sequence

from sandbox.errors import SandboxError

_PROTOCOLS = {
    "tcp": "tcp",
    "6": "tcp",
    "udp": "udp",
    "17": "udp",
    "icmp": "icmp",
    "1": "icmp",
    "-1": "all",
    "all": "all",
}


def _port_match(protocol: str, from_port: int | None, to_port: int | None) -> list[str]:
    if protocol in ("tcp", "udp"):
        if from_port is None or int(from_port) == -1:
            return []
        low, high = int(from_port), int(to_port if to_port is not None else from_port)
        return ["--dport", str(low) if low == high else f"{low}:{high}"]
    if protocol == "icmp" and from_port is not None and int(from_port) != -1:
        code = "" if to_port is None or int(to_port) == -1 else f"/{int(to_port)}"
        return ["--icmp-type", f"{int(from_port)}{code}"]
    return []


def accept_lines(rule: dict) -> list[str]:
    """One `-A INPUT ... -j ACCEPT` line per IPv4 source CIDR of one ingress rule (IpPermissions shape)."""
    protocol = _PROTOCOLS.get(str(rule.get("IpProtocol", "")).lower())
    if protocol is None:
        return []  # a protocol number we do not model: nothing is opened for it
    proto = [] if protocol == "all" else ["-p", protocol]
    ports = _port_match(protocol, rule.get("FromPort"), rule.get("ToPort"))
    lines = []
    for cidr in sorted({r["CidrIp"] for r in rule.get("IpRanges", []) if r.get("CidrIp")}):
        network = ipaddress.ip_network(cidr, strict=False)
        source = [] if network.prefixlen == 0 else ["-s", str(network)]
        lines.append(" ".join(["-A INPUT", *proto, *source, *ports, "-j ACCEPT"]))
    return lines


def render_ruleset(rules: Iterable[dict]) -> str:
    """The filter table: INPUT drops by default; loopback and replies are let in, then one ACCEPT per rule."""
    lines = [
        "*filter",
        ":INPUT DROP [0:0]",
        ":FORWARD DROP [0:0]",
        ":OUTPUT ACCEPT [0:0]",
        "-A INPUT -i lo -j ACCEPT",
        "-A INPUT -m conntrack --ctstate ESTABLISHED,RELATED -j ACCEPT",
    ]
    for rule in rules:
        for line in accept_lines(rule):
            if line not in lines:
                lines.append(line)
    lines.append("COMMIT")
    return "\n".join(lines) + "\n"


def apply_ruleset(netns: str, ruleset: str) -> None:
    """Load `ruleset` into the namespace in one step (iptables-restore replaces the table atomically)."""
    result = subprocess.run(
        ["ip", "netns", "exec", netns, "iptables-restore"], input=ruleset, capture_output=True, text=True
    )
    if result.returncode != 0:
        raise SandboxError(f"loading the firewall of {netns} failed: {result.stderr.strip()}")


def moto_rules(security_groups: Iterable, members: Mapping[str, Sequence[str]] | None = None) -> list[dict]:
    """Ingress rules of moto SecurityGroup objects (one rule per CIDR there) in IpPermissions shape.

    A rule naming a source group admits the addresses of that group's instances (`members`: group id or
    name → addresses), as EC2 does within a VPC.
    """
    members = members or {}
    rules = []
    for group in security_groups:
        for rule in list(getattr(group, "ingress_rules", [])):
            ranges = [dict(rule.ip_range)] if rule.ip_range else []
            if rule.source_group:
                key = rule.source_group.get("GroupId") or rule.source_group.get("GroupName", "")
                ranges += [{"CidrIp": f"{address}/32"} for address in members.get(key, ())]
            rules.append(
                {
                    "IpProtocol": str(rule.ip_protocol),
                    "FromPort": rule.from_port,
                    "ToPort": rule.to_port,
                    "IpRanges": ranges,
                }
            )
    return rules
