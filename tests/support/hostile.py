"""A hostile registry for tests: an ``http.server`` on a chosen ``127.0.0.x`` address that
answers each request from a table of crafted actions and records everything it received
(scheme, method, path, headers, body), so a test can assert what reached it — in particular
that no credential did.

``HostileServer(tls=cert_and_key)`` speaks TLS *and* plain HTTP on the same port (it peeks at
the first byte of each connection: 0x16 starts a TLS handshake), so an https URL can be
redirected to the same host and port over http, as a hostile registry would.

Actions (``reply``, ``raw``, ``redirect``) write one answer; ``HostileServer.on`` queues them
per (method, path), the last one repeating; a callable route (``on_call``) chooses its answer
from the request (its scheme, its headers). Everything else is 404.
"""

from __future__ import annotations

import json
import socket
import ssl
import subprocess
import threading
from collections.abc import Callable
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urlsplit

Action = Callable[["_Handler"], None]


@dataclass
class Seen:
    """One request the server received."""

    scheme: str
    method: str
    path: str
    query: dict[str, list[str]]
    headers: dict[str, str]
    body: bytes

    def carries(self, secret: str) -> bool:
        """Whether ``secret`` (or its base64 in a Basic header, or its form encoding) is
        anywhere in this request."""
        import base64
        from urllib.parse import quote_plus

        blob = (self.path + "?" + json.dumps(self.query) + json.dumps(self.headers)).encode() + self.body
        forms = {secret.encode(), quote_plus(secret).encode()}
        for h in self.headers.values():
            if h.lower().startswith("basic "):
                try:
                    forms_decoded = base64.b64decode(h[6:]).decode(errors="replace")
                except ValueError:
                    continue
                if secret in forms_decoded:
                    return True
        return any(f in blob for f in forms)


def reply(status: int, body: bytes = b"", headers: dict[str, str] | None = None) -> Action:
    """A plain answer; ``Content-Length`` is the body's unless ``headers`` says otherwise."""

    def act(h: _Handler) -> None:
        h.send_response(status)
        hdrs = {"Content-Length": str(len(body)), **(headers or {})}
        for k, v in hdrs.items():
            h.send_header(k, v)
        h.end_headers()
        if h.command != "HEAD":
            h.wfile.write(body)

    return act


def raw(head: bytes, body: bytes = b"") -> Action:
    """An answer written byte for byte: ``head`` is the status line and headers, without the
    blank line that ends them (for folded headers, bare CRs and other things ``send_header``
    would not write)."""

    def act(h: _Handler) -> None:
        h.wfile.write(head.rstrip(b"\r\n") + b"\r\n\r\n")
        if h.command != "HEAD":
            h.wfile.write(body)
        h.close_connection = True

    return act


def redirect(location: str, status: int = 307) -> Action:
    return reply(status, headers={"Location": location})


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    server: _Server
    scheme = "http"

    def setup(self) -> None:
        tls = self.server.hostile.tls
        sock: socket.socket = self.request
        sock.settimeout(10)
        if tls is not None:
            try:
                first = sock.recv(1, socket.MSG_PEEK)
            except OSError:
                first = b""
            if first == b"\x16":
                self.request = tls.wrap_socket(sock, server_side=True)
                self.scheme = "https"
        super().setup()

    def finish(self) -> None:
        try:
            super().finish()
        finally:
            if self.scheme == "https":
                self.request.close()  # the wrapped socket; socketserver closes the original only

    def log_message(self, format: str, *args: Any) -> None:
        pass

    @property
    def seen(self) -> Seen:
        return self._seen

    def _handle(self) -> None:
        n = int(self.headers.get("Content-Length") or 0)
        body = self.rfile.read(n) if n else b""
        u = urlsplit(self.path)
        hs = self.server.hostile
        self._seen = Seen(
            self.scheme, self.command, u.path, parse_qs(u.query), dict(self.headers.items()), body
        )
        with hs.lock:
            hs.log.append(self._seen)
            call = hs.calls.get((self.command, u.path)) or hs.calls.get(("*", u.path))
            queue = hs.routes.get((self.command, u.path)) or hs.routes.get(("*", u.path))
            if call is not None:
                act = call(self._seen)
            elif queue:
                act = queue.pop(0) if len(queue) > 1 else queue[0]
            else:
                act = reply(404, b'{"errors":[{"code":"NOT_FOUND","message":"no route"}]}')
        act(self)

    do_GET = do_HEAD = do_POST = do_PUT = do_PATCH = _handle


class _Server(ThreadingHTTPServer):
    daemon_threads = True
    hostile: HostileServer

    def handle_error(self, request: Any, client_address: Any) -> None:
        pass  # a client that hangs up mid-handshake is not the test's business


class HostileServer:
    """A crafted registry on ``address`` (default 127.0.0.1), a free port. ``tls``:
    ``(cert, key)`` to speak TLS too, on the same port."""

    def __init__(self, address: str = "127.0.0.1", tls: tuple[Path, Path] | None = None) -> None:
        self.routes: dict[tuple[str, str], list[Action]] = {}
        self.calls: dict[tuple[str, str], Callable[[Seen], Action]] = {}
        self.log: list[Seen] = []
        self.lock = threading.Lock()
        self.tls: ssl.SSLContext | None = None
        if tls is not None:
            self.tls = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
            self.tls.load_cert_chain(str(tls[0]), str(tls[1]))
        self.srv = _Server((address, 0), _Handler)
        self.srv.hostile = self
        self.host = f"{address}:{self.srv.server_address[1]}"
        self.thread = threading.Thread(target=self.srv.serve_forever, args=(0.02,), daemon=True)
        self.thread.start()

    def on(self, method: str, path: str, *actions: Action) -> None:
        """Answer ``method path`` (``*``: any method) with ``actions`` in turn, the last one
        repeating."""
        self.routes[(method, path)] = list(actions)

    def on_call(self, method: str, path: str, choose: Callable[[Seen], Action]) -> None:
        """Answer ``method path`` with what ``choose(request)`` returns."""
        self.calls[(method, path)] = choose

    def requests(self, path: str | None = None, method: str | None = None) -> list[Seen]:
        with self.lock:
            return [
                r
                for r in self.log
                if (path is None or r.path == path) and (method is None or r.method == method)
            ]

    def close(self) -> None:
        self.srv.shutdown()
        self.srv.server_close()

    def __enter__(self) -> HostileServer:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def make_cert(workdir: Path) -> tuple[Path, Path]:
    """A self-signed certificate for 127.0.0.1 and 127.0.0.2: ``(cert, key)``."""
    workdir.mkdir(parents=True, exist_ok=True)
    cert, key = workdir / "hostile-cert.pem", workdir / "hostile-key.pem"
    subprocess.run(
        [
            "openssl", "req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256",
            "-nodes", "-keyout", str(key), "-out", str(cert), "-days", "2", "-subj", "/CN=127.0.0.1",
            "-addext", "subjectAltName=IP:127.0.0.1,IP:127.0.0.2",
        ],
        check=True,
        capture_output=True,
        timeout=60,
    )  # fmt: skip
    return cert, key
