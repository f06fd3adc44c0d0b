"""Helpers for tests of nodes that pull from each other (``test_fanout.py``):

- :class:`CountingProxy`: an HTTP proxy on 127.0.0.1 in front of a registry that forwards
  every request and counts the body bytes it sends back per request path, so a test can
  tell how often each blob left the upstream;
- :func:`start_node_serve`: ``ctrstore serve`` of a node's root on its own ``127.0.0.x``
  address (a :class:`tests.integration.test_serve.Serve`);
- :func:`peer_hosts`: a certs.d directory whose ``hosts.toml`` lists peers, in order, before
  the upstream (containerd's format, so ``ctr --hosts-dir`` reads it too);
- :class:`FaultyPeer`: a peer that answers every blob with bytes of the right length that are
  not the blob (``lie``), or with the first half of the blob and then nothing (``stall``):
  what a real registry never does, so a fault-injecting ``http.server``.
"""

from __future__ import annotations

import http.client
import os
import re
import subprocess
import sys
import threading
import time
from collections import Counter
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import pytest

from tests.support.serve import Serve

_HOP_BY_HOP = {"connection", "keep-alive", "transfer-encoding", "te", "trailer", "upgrade", "host"}


@dataclass
class Forwarded:
    method: str
    path: str
    """Without the query."""
    status: int
    sent: int
    """Body bytes sent to the client."""
    headers: dict[str, str] = field(default_factory=dict)


class _ProxyHandler(BaseHTTPRequestHandler):
    server: _ProxyServer
    protocol_version = "HTTP/1.1"

    def log_message(self, format: str, *args: Any) -> None:
        pass

    def _forward(self) -> None:
        length = int(self.headers.get("Content-Length") or 0)
        body = self.rfile.read(length) if length else None
        headers = {k: v for k, v in self.headers.items() if k.lower() not in _HOP_BY_HOP}
        conn = http.client.HTTPConnection(self.server.upstream, timeout=60)
        try:
            conn.request(self.command, self.path, body=body, headers=headers)
            resp = conn.getresponse()
            self.send_response(resp.status, resp.reason)
            for k, v in resp.getheaders():
                if k.lower() not in _HOP_BY_HOP and k.lower() != "content-length":
                    self.send_header(k, v)
            data_len = resp.getheader("Content-Length")
            if self.command == "HEAD":
                if data_len is not None:
                    self.send_header("Content-Length", data_len)
                self.end_headers()
                self._record(resp.status, 0)
                return
            if data_len is None:
                data = resp.read()
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)
                self._record(resp.status, len(data))
                return
            self.send_header("Content-Length", data_len)
            self.end_headers()
            sent = 0
            try:
                while chunk := resp.read(1 << 16):
                    self.wfile.write(chunk)
                    sent += len(chunk)
            finally:
                self._record(resp.status, sent)
        finally:
            conn.close()

    def _record(self, status: int, sent: int) -> None:
        with self.server.lock:
            self.server.log.append(
                Forwarded(self.command, urlsplit(self.path).path, status, sent, dict(self.headers.items()))
            )

    do_GET = do_HEAD = do_POST = do_PUT = do_PATCH = _forward


class _ProxyServer(ThreadingHTTPServer):
    daemon_threads = True
    upstream: str
    lock: threading.Lock
    log: list[Forwarded]


class CountingProxy:
    """``http://127.0.0.1:<port>`` forwarding to ``upstream`` (``host:port``, plain HTTP)."""

    def __init__(self, upstream: str) -> None:
        self.httpd = _ProxyServer(("127.0.0.1", 0), _ProxyHandler)
        self.httpd.upstream = upstream
        self.httpd.lock = threading.Lock()
        self.httpd.log = []
        self.thread = threading.Thread(target=self.httpd.serve_forever, name="counting-proxy", daemon=True)
        self.thread.start()

    @property
    def host(self) -> str:
        host, port = self.httpd.server_address[:2]
        return f"{host!s}:{port}"

    def log(self) -> list[Forwarded]:
        with self.httpd.lock:
            return list(self.httpd.log)

    def sent_by_digest(self, since: int = 0) -> Counter[str]:
        """Body bytes sent per blob or manifest digest (GETs of ``blobs/`` and
        ``manifests/sha256:...``), from request number ``since`` on."""
        out: Counter[str] = Counter()
        for f in self.log()[since:]:
            m = re.search(r"/(?:blobs|manifests)/(sha256:[0-9a-f]{64})$", f.path)
            if f.method == "GET" and m:
                out[m.group(1)] += f.sent
        return out

    def close(self) -> None:
        self.httpd.shutdown()
        self.httpd.server_close()
        self.thread.join(10)


def start_node_serve(root: Path, workdir: Path, ip: str, *args: str) -> Serve:
    """``ctrstore serve --addr <ip>:0`` on ``root``; returns once it listens."""
    workdir.mkdir(parents=True, exist_ok=True)
    err, log = workdir / f"serve-{ip}.err", workdir / f"serve-{ip}.access.log"
    env = {k: v for k, v in os.environ.items() if not k.startswith("CTRSTORE_")}
    with open(err, "wb") as errf:
        proc = subprocess.Popen(
            [
                sys.executable, "-m", "ctrstore", "--root", str(root), "--state", str(root) + "-state",
                "serve", "--addr", f"{ip}:0", "--access-log", str(log), *args,
            ],
            stdin=subprocess.DEVNULL,
            stdout=subprocess.DEVNULL,
            stderr=errf,
            env=env,
        )  # fmt: skip
    deadline = time.monotonic() + 30
    pattern = re.compile(r" on (https?)://(" + re.escape(ip) + r":\d+) ")
    while True:
        m = pattern.search(err.read_text())
        if m:
            return Serve(proc, m.group(2), m.group(1), log, err)
        if proc.poll() is not None:
            pytest.fail(f"ctrstore serve exited {proc.returncode}:\n{err.read_text()}")
        if time.monotonic() > deadline:
            proc.kill()
            proc.wait(10)
            pytest.fail(f"ctrstore serve did not start in 30 s:\n{err.read_text()}")
        time.sleep(0.05)


def peer_hosts(
    workdir: Path,
    registry: str,
    server: str,
    peers: list[str],
    capabilities: tuple[str, ...] = ("pull", "resolve"),
    extra: str = "",
) -> Path:
    """``workdir/certs.d`` where ``registry``'s hosts.toml lists ``peers`` (URLs), in order,
    before ``server`` (the upstream's URL); ``extra`` goes into each peer's table."""
    hd = workdir / "certs.d"
    (hd / registry).mkdir(parents=True, exist_ok=True)
    caps = ", ".join(f'"{c}"' for c in capabilities)
    text = f'server = "{server}"\n' + "".join(
        f'\n[host."{p}"]\n  capabilities = [{caps}]\n{extra}' for p in peers
    )
    (hd / registry / "hosts.toml").write_text(text)
    return hd


class _FaultyHandler(BaseHTTPRequestHandler):
    server: _FaultyServer
    protocol_version = "HTTP/1.1"

    def log_message(self, format: str, *args: Any) -> None:
        pass

    def do_GET(self) -> None:
        path = urlsplit(self.path).path
        with self.server.lock:
            self.server.seen.append(f"{self.command} {path}")
        m = re.search(r"/blobs/(sha256:[0-9a-f]{64})$", path)
        blob = self.server.blobs.get(m.group(1)) if m else None
        if blob is None:
            self.send_response(404)
            self.send_header("Content-Length", "0")
            self.end_headers()
            return
        self.send_response(200)
        self.send_header("Content-Length", str(len(blob)))
        self.send_header("Content-Type", "application/octet-stream")
        self.end_headers()
        if self.command != "GET":
            return
        if self.server.mode == "lie":
            self.wfile.write(b"\0" * len(blob))
            return
        self.wfile.write(blob[: len(blob) // 2])
        self.wfile.flush()
        self.server.closing.wait(60)  # stalls until the test ends (at most 60 s)
        self.close_connection = True

    do_HEAD = do_GET


class _FaultyServer(ThreadingHTTPServer):
    daemon_threads = True
    blobs: dict[str, bytes]
    mode: str
    closing: threading.Event
    lock: threading.Lock
    seen: list[str]


class FaultyPeer:
    """A peer on ``ip`` that has the ``blobs`` (digest -> bytes) and nothing else (404): with
    ``mode="lie"`` it sends each as zeros of its length; with ``"stall"`` it sends the first
    half and then waits, the connection open, until :meth:`close` (at most 60 s)."""

    def __init__(self, ip: str, blobs: dict[str, bytes], mode: str = "lie") -> None:
        self.httpd = _FaultyServer((ip, 0), _FaultyHandler)
        self.httpd.blobs = dict(blobs)
        self.httpd.mode = mode
        self.httpd.closing = threading.Event()
        self.httpd.lock = threading.Lock()
        self.httpd.seen = []
        self.thread = threading.Thread(target=self.httpd.serve_forever, name="faulty-peer", daemon=True)
        self.thread.start()

    @property
    def url(self) -> str:
        host, port = self.httpd.server_address[:2]
        return f"http://{host!s}:{port}"

    def seen(self) -> list[str]:
        with self.httpd.lock:
            return list(self.httpd.seen)

    def close(self) -> None:
        self.httpd.closing.set()
        self.httpd.shutdown()
        self.httpd.server_close()
        self.thread.join(10)
