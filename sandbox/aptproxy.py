"""The gateway's apt proxy: a small caching HTTP forward proxy on 198.51.100.1 only.

Requests for the EC2 regional archive, mirror.kakao.com or this machine's own Debian mirror are fetched from
this machine's configured Debian mirror; anything else gets 403. The guests name the archive's `/debian/...`
paths; they are fetched below the mirror's own path (`https://HOST/some/prefix/debian` serves
`/debian/dists/...` from `/some/prefix/debian/dists/...`), over http or https as the mirror URL says; any
other kind of URL is refused in one line when the daemon starts. Package files (`.deb`) and `by-hash` files
never change under their name, so they are cached on disk, only when complete (a download cut short is
fetched again, up to UPSTREAM_ATTEMPTS times); index files are always fetched.
"""

from __future__ import annotations

import contextlib
import http.client
import os
import shutil
import ssl
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from urllib.parse import urlsplit

from sandbox.cloudimage import MIRROR_NAMES
from sandbox.errors import SandboxError

DEFAULT_CACHE = Path("/var/cache/labctl/apt")
UPSTREAM_ATTEMPTS = 3  # a package download the mirror drops is fetched again before apt sees an error
PASSED_REQUEST_HEADERS = ("If-Modified-Since", "If-None-Match", "Range", "If-Range", "Cache-Control")
PASSED_RESPONSE_HEADERS = (
    "Content-Type",
    "Content-Length",
    "Last-Modified",
    "ETag",
    "Content-Range",
    "Accept-Ranges",
)


GUEST_PREFIX = "/debian"  # the path the guests' sources name (sandbox.rootfs GUEST_SOURCES_LIST)


def is_immutable(path: str) -> bool:
    """Files whose content never changes under their path."""
    return path.endswith(".deb") or "/by-hash/" in path


def check_upstream(url: str) -> None:
    """Refuse, in one line, a mirror URL the proxy cannot fetch from (it supports http and https)."""
    upstream = urlsplit(url)
    if upstream.scheme not in ("http", "https") or not upstream.hostname:
        raise SandboxError(
            f"the sandbox apt proxy fetches from http:// or https:// mirrors, not {url!r}: "
            "name such a Debian mirror in /etc/apt/sources.list(.d)"
        )
    if upstream.username or upstream.password or upstream.query:
        raise SandboxError(
            f"the sandbox apt proxy cannot use the mirror URL {url!r} (credentials or a query): "
            "name a plain http(s)://HOST/PATH Debian mirror in /etc/apt/sources.list(.d)"
        )
    try:
        _ = upstream.port  # urllib checks the port only when asked
    except ValueError:
        raise SandboxError(f"the Debian mirror URL {url!r} has an invalid port") from None


class AptProxy:
    """The proxy server: `start()` serves in a thread, `stop()` closes it."""

    def __init__(
        self,
        listen: str,
        upstream_url: str,
        cache_dir: Path = DEFAULT_CACHE,
        port: int = 0,
        ssl_context: ssl.SSLContext | None = None,
    ):
        upstream = urlsplit(upstream_url)
        check_upstream(upstream_url)
        self.upstream_https = upstream.scheme == "https"
        self.upstream_host = upstream.hostname
        self.upstream_port = upstream.port
        self.upstream_prefix = upstream.path.rstrip("/")
        self.ssl_context = ssl_context
        self.allowed_hosts = {name.lower() for name in (*MIRROR_NAMES, upstream.hostname or "")}
        self.cache_dir = cache_dir
        self.server = ThreadingHTTPServer((listen, port), self._handler_class())
        self.server.daemon_threads = True
        self.thread = threading.Thread(
            target=self.server.serve_forever, kwargs={"poll_interval": 0.1}, name="apt-proxy", daemon=True
        )  # stop() waits for the next poll

    @property
    def port(self) -> int:
        return self.server.server_address[1]

    def start(self) -> AptProxy:
        self.thread.start()
        return self

    def stop(self) -> None:
        self.server.shutdown()
        self.server.server_close()

    def upstream_path(self, path: str) -> str:
        """The mirror's path for a guest's `/debian/...` path (other paths are passed as they are)."""
        if path == GUEST_PREFIX or path.startswith(GUEST_PREFIX + "/"):
            return self.upstream_prefix + path[len(GUEST_PREFIX) :]
        return path

    def upstream_connection(self) -> http.client.HTTPConnection:
        if self.upstream_https:
            return http.client.HTTPSConnection(
                self.upstream_host, self.upstream_port, timeout=60, context=self.ssl_context
            )
        return http.client.HTTPConnection(self.upstream_host, self.upstream_port, timeout=60)

    def cache_path(self, path: str) -> Path | None:
        if not is_immutable(path) or ".." in path.split("/"):
            return None
        return self.cache_dir / path.lstrip("/")

    def _handler_class(self):
        proxy = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, format, *args):  # quiet: the daemon log only wants errors
                pass

            def do_CONNECT(self):
                self._refuse("CONNECT is not allowed")

            def do_GET(self):
                self._serve(head=False)

            def do_HEAD(self):
                self._serve(head=True)

            def _refuse(self, why: str) -> None:
                body = f"labctl sandbox apt proxy: {why}\n".encode()
                self.send_response(403)
                self.send_header("Content-Type", "text/plain")
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def _serve(self, head: bool) -> None:
                url = urlsplit(self.path)
                host = (url.hostname or self.headers.get("Host", "").split(":")[0]).lower()
                if url.scheme not in ("http", "") or host not in proxy.allowed_hosts:
                    self._refuse(f"only the Debian mirror is reachable, not {host or self.path}")
                    return
                path = url.path + (f"?{url.query}" if url.query else "")
                cached = proxy.cache_path(url.path)
                if cached is not None and cached.is_file():
                    self._send_file(cached, head)
                    return
                self._forward(path, head, cached)

            def _send_file(self, path: Path, head: bool) -> None:
                self.send_response(200)
                self.send_header("Content-Length", str(path.stat().st_size))
                self.send_header("Content-Type", "application/octet-stream")
                self.end_headers()
                if not head:
                    with open(path, "rb") as f:
                        shutil.copyfileobj(f, self.wfile)

            def _forward(self, path: str, head: bool, cache_to: Path | None) -> None:
                headers = {k: self.headers[k] for k in PASSED_REQUEST_HEADERS if k in self.headers}
                if cache_to is not None:
                    headers.pop("Range", None)
                    headers.pop("If-Range", None)
                attempts = UPSTREAM_ATTEMPTS if cache_to is not None and not head else 1
                for attempt in range(1, attempts + 1):
                    try:
                        self._fetch(path, head, headers, cache_to)
                        return
                    except OSError as error:
                        if attempt == attempts:
                            with contextlib.suppress(OSError):
                                self.send_error(502, f"upstream mirror: {error}")
                            self.close_connection = True

            def _fetch(self, path: str, head: bool, headers: dict, cache_to: Path | None) -> None:
                """One upstream request; a package download is stored whole (or raises OSError) first."""
                conn = proxy.upstream_connection()
                try:
                    conn.request("HEAD" if head else "GET", proxy.upstream_path(path), headers=headers)
                    response = conn.getresponse()
                    if cache_to is not None and response.status == 200 and not head:
                        self._store(response, cache_to)
                        self._send_file(cache_to, head)
                    else:
                        self._pass_through(response, head)
                finally:
                    conn.close()

            def _pass_through(self, response, head: bool) -> None:
                self.send_response(response.status)
                for name in PASSED_RESPONSE_HEADERS:
                    if response.getheader(name) is not None:
                        self.send_header(name, response.getheader(name))
                if response.getheader("Content-Length") is None:
                    self.send_header("Connection", "close")
                    self.close_connection = True
                self.end_headers()
                if not head:
                    shutil.copyfileobj(response, self.wfile)

            def _store(self, response, cache_to: Path) -> None:
                """Download into the cache (a temporary name first, so readers never see half a file)."""
                cache_to.parent.mkdir(parents=True, exist_ok=True)
                tmp = cache_to.with_name(f".{cache_to.name}.{os.getpid()}.{threading.get_ident()}")
                try:
                    with open(tmp, "wb") as sink:
                        shutil.copyfileobj(response, sink)
                    expected = response.getheader("Content-Length")
                    if expected is not None and tmp.stat().st_size != int(expected):
                        raise OSError(f"download cut short ({tmp.stat().st_size} of {expected} bytes)")
                    os.replace(tmp, cache_to)
                finally:
                    with contextlib.suppress(FileNotFoundError):
                        os.unlink(tmp)

        return Handler
