"""A local stand-in for the Debian mirror behind the sandbox's apt proxy, and a fetch through the proxy."""

from __future__ import annotations

import http.client
import ssl
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

from sandbox.aptproxy import AptProxy


class FakeMirror:
    """An HTTP (or, with `tls`, HTTPS) server on 127.0.0.1 answering every GET with `content of PATH`;
    records the paths it was asked for. The first `cut_short` responses stop after half of their body."""

    def __init__(self, cut_short: int = 0, tls: ssl.SSLContext | None = None):
        self.requests: list[str] = []
        self.cut_short = cut_short
        mirror = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args):
                pass

            def do_GET(self):
                mirror.requests.append(self.path)
                body = f"content of {self.path}".encode()
                self.send_response(200)
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                if len(mirror.requests) <= mirror.cut_short:
                    self.wfile.write(body[: len(body) // 2])
                    self.close_connection = True
                    return
                self.wfile.write(body)

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        if tls is not None:
            self.server.socket = tls.wrap_socket(self.server.socket, server_side=True)
        threading.Thread(target=self.server.serve_forever, daemon=True).start()
        self.address = f"127.0.0.1:{self.server.server_address[1]}"
        self.url = f"http://{self.address}/debian"

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()


def fetch_via(apt_proxy: AptProxy, url: str) -> tuple[int, bytes]:
    """GET `url` through the proxy, as apt does: (status, body)."""
    conn = http.client.HTTPConnection("127.0.0.1", apt_proxy.port, timeout=10)
    try:
        conn.request("GET", url)
        response = conn.getresponse()
        return response.status, response.read()
    finally:
        conn.close()
