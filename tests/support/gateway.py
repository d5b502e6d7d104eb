"""A tiny HTTP gateway in front of a checkout server, on loopback, for tests of how the load
test reaches a server: it serves the server under a path prefix (`/shop/v1/orders` goes to
`/v1/orders`; anything outside the prefix is a 404), optionally over TLS, and also works as a
forward proxy (a request line with an absolute URL, as a client sends through HTTP_PROXY).
Every request line it saw is kept in `seen`, so a test can prove where requests went."""

from __future__ import annotations

import http.client
import ssl
import subprocess
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from urllib.parse import urlsplit

HOP_BY_HOP = {"connection", "keep-alive", "proxy-connection", "transfer-encoding", "upgrade",
              "proxy-authorization", "te", "trailer"}


def self_signed_cert(folder: Path) -> tuple[Path, Path]:
    """A certificate and key for 127.0.0.1 (openssl), for a TLS gateway in tests."""
    cert, key = folder / "cert.pem", folder / "key.pem"
    subprocess.run(["openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "1",
                    "-subj", "/CN=127.0.0.1", "-addext", "subjectAltName=IP:127.0.0.1",
                    "-keyout", str(key), "-out", str(cert)], check=True, capture_output=True)
    return cert, key


class Gateway:
    """Forwards `PREFIX/…` (or absolute URLs, as a forward proxy) to `upstream`."""

    def __init__(self, upstream: str, prefix: str = "", tls: tuple[Path, Path] | None = None
                 ) -> None:
        self.upstream, self.prefix = urlsplit(upstream), prefix.rstrip("/")
        self.seen: list[str] = []
        gateway = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, *args: object) -> None:
                pass

            def _forward(self) -> None:
                gateway.seen.append(f"{self.command} {self.path}")
                target = urlsplit(self.path)
                path = target.path + (f"?{target.query}" if target.query else "")
                if not target.scheme:  # origin form: only the prefix is ours
                    if not path.startswith(gateway.prefix + "/"):
                        self._answer(404, b'{"detail": "not behind this gateway"}')
                        return
                    path = path[len(gateway.prefix):]
                length = int(self.headers.get("Content-Length") or 0)
                body = self.rfile.read(length) if length else None
                headers = {k: v for k, v in self.headers.items()
                           if k.lower() not in HOP_BY_HOP and k.lower() != "host"}
                up = http.client.HTTPConnection(gateway.upstream.hostname,
                                                gateway.upstream.port, timeout=30)
                try:
                    up.request(self.command, path, body=body, headers=headers)
                    resp = up.getresponse()
                    self._answer(resp.status, resp.read(),
                                 resp.getheader("Content-Type", "application/json"))
                finally:
                    up.close()

            def _answer(self, status: int, data: bytes,
                        kind: str = "application/json") -> None:
                self.send_response(status)
                self.send_header("Content-Type", kind)
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

            do_GET = do_POST = do_PUT = do_DELETE = _forward

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.server.daemon_threads = True
        scheme = "http"
        if tls is not None:
            ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
            ctx.load_cert_chain(str(tls[0]), str(tls[1]))
            self.server.socket = ctx.wrap_socket(self.server.socket, server_side=True)
            scheme = "https"
        self.url = f"{scheme}://127.0.0.1:{self.server.server_address[1]}{self.prefix}"
        self._thread = threading.Thread(target=self.server.serve_forever, daemon=True)

    def __enter__(self) -> Gateway:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.server.shutdown()
        self.server.server_close()
