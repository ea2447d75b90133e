"""The instance metadata service of the sandbox: what 169.254.169.254 answers inside each host.

The daemon serves it on the bridge address (198.51.100.1, a random port); each host's namespace DNATs
169.254.169.254:80 there (`netns_commands`), so a request arrives with the instance's own address as its
source and `lookup(source_ip)` says which instance asks. This machine itself never has 169.254.169.254: its
own requests to that address are routed as before and never reach the daemon.

Protocol as EC2's IMDS: `PUT /latest/api/token` with `X-aws-ec2-metadata-token-ttl-seconds` (1-21600) gives
a session token bound to the instance (400 without a valid TTL, 403 with `X-Forwarded-For`); a request with
`X-aws-ec2-metadata-token` needs a valid, unexpired token of that instance (401); a request without one is
IMDSv1, refused (401) when the instance's HttpTokens is `required`; HttpEndpoint `disabled` gives 403.
`/` lists the versions; `latest/` and the dated versions serve the same tree: `meta-data/`, `user-data`
(404 when there is none) and `dynamic/instance-identity/document`. A directory listing marks subtrees with a
trailing `/`; `public-keys/` lists `0=<key name>`. Anything else, and any source that is not a running
instance of this daemon, gets 404.
"""

from __future__ import annotations

import base64
import datetime
import json
import logging
import secrets
import threading
import time
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Callable, Union

from labcore.net import SANDBOX_GATEWAY

log = logging.getLogger("sandbox.imds")

IMDS_ADDRESS = "169.254.169.254"
TOKEN_PATH = "/latest/api/token"
TTL_HEADER = "X-aws-ec2-metadata-token-ttl-seconds"
TOKEN_HEADER = "X-aws-ec2-metadata-token"
MAX_TOKEN_TTL = 21600
# The versions EC2 lists at `/`; cloud-init asks 2021-03-23 first and falls back down to 2009-04-04.
VERSIONS = (
    "1.0",
    "2007-01-19",
    "2007-03-01",
    "2007-08-29",
    "2007-10-10",
    "2007-12-15",
    "2008-02-01",
    "2008-09-01",
    "2009-04-04",
    "2011-01-01",
    "2011-05-01",
    "2012-01-12",
    "2014-02-25",
    "2014-11-05",
    "2015-10-20",
    "2016-04-19",
    "2016-06-30",
    "2016-09-02",
    "2018-03-28",
    "2018-08-17",
    "2018-09-24",
    "2019-10-01",
    "2020-10-27",
    "2021-01-03",
    "2021-03-23",
    "2021-07-15",
    "2022-09-24",
    "2024-04-11",
    "latest",
)


@dataclass(frozen=True)
class InstanceMetadata:
    """What the metadata service tells one instance about itself (built from moto's instance)."""

    instance_id: str
    ami_id: str
    instance_type: str
    hostname: str  # ip-198-51-100-10.ap-northeast-2.compute.internal (also local-hostname)
    local_ipv4: str
    public_ipv4: str
    public_hostname: str
    availability_zone: str
    region: str
    mac: str
    interface_id: str
    vpc_id: str
    subnet_id: str
    account_id: str
    launch_time: datetime.datetime
    public_keys: tuple[tuple[str, str], ...] = ()  # (key name, OpenSSH public key)
    user_data: bytes | None = None
    http_tokens: str = "optional"  # "optional" | "required"
    http_endpoint: str = "enabled"  # "enabled" | "disabled"
    reservation_id: str = ""
    ami_launch_index: int = 0
    architecture: str = "x86_64"
    root_device_name: str = "/dev/sda1"
    subnet_cidr: str = ""
    vpc_cidr: str = ""
    security_groups: tuple[tuple[str, str], ...] = ()  # (group id, group name)


@dataclass
class Directory:
    """A directory of the metadata tree; `listing` overrides the generated one (public-keys/ does)."""

    entries: dict[str, Node]
    listing: str | None = None

    def render(self) -> str:
        if self.listing is not None:
            return self.listing
        return "\n".join(
            name + ("/" if isinstance(node, Directory) else "") for name, node in self.entries.items()
        )


Node = Union[str, bytes, Directory]


def identity_document(md: InstanceMetadata) -> str:
    """dynamic/instance-identity/document, with EC2's fields."""
    document = {
        "accountId": md.account_id,
        "architecture": md.architecture,
        "availabilityZone": md.availability_zone,
        "billingProducts": None,
        "devpayProductCodes": None,
        "marketplaceProductCodes": None,
        "imageId": md.ami_id,
        "instanceId": md.instance_id,
        "instanceType": md.instance_type,
        "kernelId": None,
        "pendingTime": _iso(md.launch_time),
        "privateIp": md.local_ipv4,
        "ramdiskId": None,
        "region": md.region,
        "version": "2017-09-30",
    }
    return json.dumps(document, indent=2)


def _iso(moment: datetime.datetime) -> str:
    if moment.tzinfo is not None:
        moment = moment.astimezone(datetime.timezone.utc)
    return moment.strftime("%Y-%m-%dT%H:%M:%SZ")


def _public_keys(md: InstanceMetadata) -> Directory:
    entries: dict[str, Node] = {
        str(index): Directory({"openssh-key": key}) for index, (_, key) in enumerate(md.public_keys)
    }
    listing = "\n".join(f"{index}={name}" for index, (name, _) in enumerate(md.public_keys))
    return Directory(entries, listing)


def _interface(md: InstanceMetadata) -> Directory:
    entries: dict[str, Node] = {
        "device-number": "0",
        "interface-id": md.interface_id,
        "local-hostname": md.hostname,
        "local-ipv4s": md.local_ipv4,
        "mac": md.mac,
        "network-card": "0",
        "owner-id": md.account_id,
        "public-hostname": md.public_hostname,
        "public-ipv4s": md.public_ipv4,
        "security-group-ids": "\n".join(group_id for group_id, _ in md.security_groups),
        "security-groups": "\n".join(name for _, name in md.security_groups),
        "subnet-id": md.subnet_id,
        "subnet-ipv4-cidr-block": md.subnet_cidr,
        "vpc-id": md.vpc_id,
        "vpc-ipv4-cidr-block": md.vpc_cidr,
        "vpc-ipv4-cidr-blocks": md.vpc_cidr,
    }
    return Directory({name: value for name, value in entries.items() if value})


def metadata_tree(md: InstanceMetadata) -> Directory:
    """The `meta-data/` tree of one instance."""
    entries: dict[str, Node] = {
        "ami-id": md.ami_id,
        "ami-launch-index": str(md.ami_launch_index),
        "ami-manifest-path": "(unknown)",
        "block-device-mapping": Directory({"ami": md.root_device_name, "root": md.root_device_name}),
        "hostname": md.hostname,
        "instance-action": "none",
        "instance-id": md.instance_id,
        "instance-life-cycle": "on-demand",
        "instance-type": md.instance_type,
        "local-hostname": md.hostname,
        "local-ipv4": md.local_ipv4,
        "mac": md.mac,
        "network": Directory({"interfaces": Directory({"macs": Directory({md.mac: _interface(md)})})}),
        "placement": Directory({"availability-zone": md.availability_zone, "region": md.region}),
        "profile": "default-hvm",
        "public-hostname": md.public_hostname,
        "public-ipv4": md.public_ipv4,
        "reservation-id": md.reservation_id,
        "security-groups": "\n".join(name for _, name in md.security_groups),
        "services": Directory({"domain": "amazonaws.com", "partition": "aws"}),
    }
    if md.public_keys:
        entries["public-keys"] = _public_keys(md)
    return Directory(dict(sorted((k, v) for k, v in entries.items() if v != "")))


def version_tree(md: InstanceMetadata) -> Directory:
    """Everything under `latest/` (and each dated version). EC2 lists these three without a slash."""
    entries: dict[str, Node] = {
        "dynamic": Directory({"instance-identity": Directory({"document": identity_document(md)})}),
        "meta-data": metadata_tree(md),
    }
    if md.user_data is not None:
        entries["user-data"] = md.user_data
    return Directory(entries, "\n".join(entries))


def resolve(tree: Directory, parts: list[str], trailing_slash: bool) -> Node | None:
    """The node at `parts` (a directory also without its trailing slash; a leaf never with one)."""
    node: Node = tree
    for part in parts:
        if not isinstance(node, Directory) or part not in node.entries:
            return None
        node = node.entries[part]
    if trailing_slash and not isinstance(node, Directory):
        return None
    return node


def netns_commands(port: int) -> list[list[str]]:
    """Commands to run in a host's namespace (`ip netns exec NS ...`) so that its 169.254.169.254:80 is this
    service on the gateway. Each may run again in the same namespace without adding anything."""
    target = f"{SANDBOX_GATEWAY}:{int(port)}"
    rule = f"-d {IMDS_ADDRESS}/32 -p tcp -m tcp --dport 80 -j DNAT --to-destination {target}"
    return [
        ["ip", "route", "replace", f"{IMDS_ADDRESS}/32", "via", SANDBOX_GATEWAY],
        [
            "sh",
            "-c",
            f"iptables -w -t nat -C OUTPUT {rule} 2>/dev/null || iptables -w -t nat -A OUTPUT {rule}",
        ],
    ]


@dataclass
class _Token:
    instance_id: str
    expires: float


@dataclass
class TokenStore:
    """Session tokens handed out by PUT /latest/api/token, each bound to one instance."""

    clock: Callable[[], float] = time.monotonic
    tokens: dict[str, _Token] = field(default_factory=dict)
    lock: threading.Lock = field(default_factory=threading.Lock)

    def issue(self, instance_id: str, ttl: int) -> str:
        token = base64.urlsafe_b64encode(secrets.token_bytes(42)).decode()
        with self.lock:
            now = self.clock()
            self.tokens = {k: v for k, v in self.tokens.items() if v.expires > now}
            self.tokens[token] = _Token(instance_id, now + ttl)
        return token

    def remaining(self, token: str, instance_id: str) -> int | None:
        """Seconds left on `token` when it is valid for `instance_id`, else None."""
        with self.lock:
            entry = self.tokens.get(token)
            left = entry.expires - self.clock() if entry is not None else 0.0
        if entry is None or entry.instance_id != instance_id or left <= 0:
            return None
        return max(1, int(left))


def _error_body(status: int, reason: str) -> bytes:
    return (
        '<?xml version="1.0" encoding="iso-8859-1"?>\n'
        '<!DOCTYPE html PUBLIC "-//W3C//DTD XHTML 1.0 Transitional//EN"\n'
        '\t"http://www.w3.org/TR/xhtml1/DTD/xhtml1-transitional.dtd">\n'
        '<html xmlns="http://www.w3.org/1999/xhtml" xml:lang="en" lang="en">\n'
        f" <head>\n  <title>{status} - {reason}</title>\n </head>\n"
        f" <body>\n  <h1>{status} - {reason}</h1>\n </body>\n</html>\n"
    ).encode()


class MetadataService:
    """The HTTP server. `lookup(source_ip)` names the instance asking (None: not one of ours → 404)."""

    def __init__(
        self,
        lookup: Callable[[str], InstanceMetadata | None],
        listen: str = SANDBOX_GATEWAY,
        port: int = 0,
        clock: Callable[[], float] = time.monotonic,
    ):
        self.lookup = lookup
        self.tokens = TokenStore(clock)
        self.server = ThreadingHTTPServer((listen, port), self._handler_class())
        self.server.daemon_threads = True
        self.thread = threading.Thread(
            target=self.server.serve_forever, kwargs={"poll_interval": 0.1}, name="imds", daemon=True
        )

    @property
    def port(self) -> int:
        return self.server.server_address[1]

    def start(self) -> MetadataService:
        self.thread.start()
        return self

    def stop(self) -> None:
        self.server.shutdown()
        self.server.server_close()

    def _handler_class(self) -> type[BaseHTTPRequestHandler]:
        service = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"
            server_version = "EC2ws"
            sys_version = ""

            def log_message(self, format, *args):  # quiet: the daemon log only wants errors
                pass

            def _send(self, status: int, body: bytes = b"", headers: dict[str, str] | None = None) -> None:
                self.send_response(status)
                content_type = "text/html" if status >= 400 else "text/plain"
                for name, value in {"Content-Type": content_type, **(headers or {})}.items():
                    self.send_header(name, value)
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                if self.command != "HEAD":
                    self.wfile.write(body)

            def _fail(self, status: int) -> None:
                self._send(status, _error_body(status, self.responses[status][0]))

            def _instance(self) -> tuple[InstanceMetadata | None, bool]:
                """(the instance asking or None if it is not one of ours, False if the lookup failed)."""
                try:
                    return service.lookup(self.client_address[0]), True
                except Exception:
                    log.exception("metadata lookup for %s failed", self.client_address[0])
                    return None, False

            def do_PUT(self) -> None:
                self._discard_body()
                md, looked_up = self._instance()
                if not looked_up:
                    return self._fail(500)
                if md is None or self.path.split("?", 1)[0] != TOKEN_PATH:
                    return self._fail(404)
                if md.http_endpoint == "disabled" or self.headers.get("X-Forwarded-For") is not None:
                    return self._fail(403)
                ttl = _parse_ttl(self.headers.get(TTL_HEADER))
                if ttl is None:
                    return self._fail(400)
                token = service.tokens.issue(md.instance_id, ttl)
                self._send(200, token.encode(), {TTL_HEADER: str(ttl)})

            def do_GET(self) -> None:
                md, looked_up = self._instance()
                if not looked_up:
                    return self._fail(500)
                if md is None:
                    return self._fail(404)
                if md.http_endpoint == "disabled":
                    return self._fail(403)
                path = self.path.split("?", 1)[0]
                if path == TOKEN_PATH:
                    return self._fail(405)
                headers = {}
                token = self.headers.get(TOKEN_HEADER)
                if token is not None:
                    left = service.tokens.remaining(token, md.instance_id)
                    if left is None:
                        return self._fail(401)
                    headers[TTL_HEADER] = str(left)
                elif md.http_tokens == "required":
                    return self._fail(401)
                body = _answer(md, path)
                if body is None:
                    return self._fail(404)
                content_type = "application/octet-stream" if path.rstrip("/").endswith("/user-data") else None
                self._send(
                    200, body, dict(headers, **({"Content-Type": content_type} if content_type else {}))
                )

            do_HEAD = do_GET

            def do_POST(self) -> None:
                self._discard_body()
                self._fail(405)

            do_DELETE = do_PATCH = do_POST

            def _discard_body(self) -> None:
                length = int(self.headers.get("Content-Length") or 0)
                if length > 0:
                    self.rfile.read(min(length, 1 << 16))

        return Handler


def _parse_ttl(value: str | None) -> int | None:
    if value is None or not value.strip().isdigit():
        return None
    ttl = int(value)
    return ttl if 1 <= ttl <= MAX_TOKEN_TTL else None


def _answer(md: InstanceMetadata, path: str) -> bytes | None:
    """The body for GET `path`, None for 404."""
    if path == "/":
        return "\n".join(VERSIONS).encode()
    trailing_slash = path.endswith("/") and path != "/"
    parts = [part for part in path.split("/") if part]
    if not parts or parts[0] not in VERSIONS or any(part in (".", "..") for part in parts):
        return None
    node = resolve(version_tree(md), parts[1:], trailing_slash)
    if node is None:
        return None
    if isinstance(node, Directory):
        return node.render().encode()
    return node if isinstance(node, bytes) else node.encode()
