"""A network link of a given bandwidth in front of a registry: a TCP proxy on 127.0.0.1 whose
connections all share one token bucket for what they send back to their clients, as the
connections of one machine share its link. Requests go upstream unshaped (they are small).

Used by ``benches.suite`` (the link rows: pull over 50 and 200 MB/s) and by the tests that
need a slow download (to kill a pull in the middle of a layer). It records each request's
first line and ``Range`` header, so a test can see that a pull resumed.

    python -m benches.link --upstream 127.0.0.1:5000 --rate 50    # MB/s; prints the address

The shaping is by virtual time: every chunk sent reserves its slot on the link (``n / rate``
seconds after the previous reservation, or now if the link was idle), and the sender sleeps
until its slot; up to ``burst`` seconds of idle link can be caught up at once. So the sum over
all connections is ``rate``, and connections share it first come, first served.
"""

from __future__ import annotations

import argparse
import contextlib
import re
import socket
import sys
import threading
import time
from dataclasses import dataclass, field

CHUNK = 64 * 1024
MB = 1_000_000

_RANGE = re.compile(rb"^range:\s*(.+?)\s*$", re.IGNORECASE | re.MULTILINE)


class TokenBucket:
    """One link's capacity, shared by every connection (see the module docs)."""

    def __init__(self, rate: float, burst: float = 0.02) -> None:
        if rate <= 0:
            raise ValueError("rate must be positive")
        self.rate = rate
        self.burst = burst
        self._t = time.monotonic()
        self._lock = threading.Lock()

    def take(self, n: int) -> None:
        """Wait until ``n`` bytes may go out."""
        with self._lock:
            now = time.monotonic()
            self._t = max(self._t, now - self.burst) + n / self.rate
            wait = self._t - now
        if wait > 0:
            time.sleep(wait)


@dataclass
class Request:
    line: str
    range: str | None


@dataclass
class Stats:
    requests: list[Request] = field(default_factory=list)
    bytes_down: int = 0
    connections: int = 0


class LinkProxy:
    """The link: ``LinkProxy(("127.0.0.1", 5000), rate=50e6).start()``; ``host`` is its
    ``127.0.0.1:<port>``. ``rate`` in bytes per second; ``set_rate`` changes it. ``sndbuf``
    caps the send buffer toward each client (the bytes in flight that a client which stops
    reading still gets; by default the kernel's autotuning, which lets megabytes through)."""

    def __init__(
        self, upstream: tuple[str, int], rate: float, *, port: int = 0, sndbuf: int | None = None
    ) -> None:
        self.upstream = upstream
        self.sndbuf = sndbuf
        self.bucket = TokenBucket(rate)
        self.stats = Stats()
        self._lock = threading.Lock()
        self._sock = socket.create_server(("127.0.0.1", port))
        self.host = f"127.0.0.1:{self._sock.getsockname()[1]}"
        self._stop = threading.Event()
        self._conns: set[socket.socket] = set()
        self._thread = threading.Thread(target=self._serve, name="link-accept", daemon=True)

    def start(self) -> LinkProxy:
        self._thread.start()
        return self

    def set_rate(self, rate: float) -> None:
        self.bucket = TokenBucket(rate)

    def close(self) -> None:
        """Stop accepting and cut every connection."""
        self._stop.set()
        with contextlib.suppress(OSError):
            self._sock.shutdown(socket.SHUT_RDWR)  # wakes the accept() under way
        with contextlib.suppress(OSError):
            self._sock.close()
        with self._lock:
            conns = list(self._conns)
        for c in conns:
            with contextlib.suppress(OSError):
                c.shutdown(socket.SHUT_RDWR)
            with contextlib.suppress(OSError):
                c.close()
        self._thread.join(5)

    def __enter__(self) -> LinkProxy:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.close()

    def _serve(self) -> None:
        while not self._stop.is_set():
            try:
                client, _ = self._sock.accept()
            except OSError:
                return
            try:
                server = socket.create_connection(self.upstream, timeout=10)
            except OSError:
                client.close()
                continue
            server.settimeout(None)
            for s in (client, server):
                s.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            if self.sndbuf is not None:
                client.setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, self.sndbuf)
            with self._lock:
                self.stats.connections += 1
                self._conns.update((client, server))
            threading.Thread(target=self._up, args=(client, server), daemon=True).start()
            threading.Thread(target=self._down, args=(server, client), daemon=True).start()

    def _up(self, src: socket.socket, dst: socket.socket) -> None:
        """Client to registry: unshaped; the request heads are recorded."""
        head = b""
        try:
            while data := src.recv(CHUNK):
                head += data
                while b"\r\n\r\n" in head:
                    req, _, head = head.partition(b"\r\n\r\n")
                    m = _RANGE.search(req)
                    line = req.split(b"\r\n", 1)[0].decode(errors="replace")
                    with self._lock:
                        self.stats.requests.append(Request(line, m.group(1).decode() if m else None))
                head = head[-4096:]
                dst.sendall(data)
        except OSError:
            pass
        finally:
            self._hang_up(src, dst)

    def _down(self, src: socket.socket, dst: socket.socket) -> None:
        """Registry to client: through the shared bucket."""
        buf = bytearray(CHUNK)
        view = memoryview(buf)
        try:
            while n := src.recv_into(buf):
                self.bucket.take(n)
                dst.sendall(view[:n])
                with self._lock:
                    self.stats.bytes_down += n
        except OSError:
            pass
        finally:
            self._hang_up(src, dst)

    def _hang_up(self, a: socket.socket, b: socket.socket) -> None:
        for s in (a, b):
            with contextlib.suppress(OSError):
                s.shutdown(socket.SHUT_RDWR)
            with contextlib.suppress(OSError):
                s.close()
        with self._lock:
            self._conns.discard(a)
            self._conns.discard(b)


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m benches.link", description=__doc__.split("\n\n")[0])
    p.add_argument("--upstream", required=True, help="HOST:PORT of the registry")
    p.add_argument("--rate", type=float, required=True, help="the link's bandwidth, MB/s (10^6 bytes)")
    p.add_argument("--port", type=int, default=0, help="port to listen on (default: any free one)")
    args = p.parse_args(argv)
    host, _, port = args.upstream.rpartition(":")
    proxy = LinkProxy((host, int(port)), args.rate * MB, port=args.port).start()
    print(proxy.host, flush=True)
    try:
        while True:
            time.sleep(3600)
    except KeyboardInterrupt:
        pass
    finally:
        proxy.close()
    return 0


if __name__ == "__main__":
    sys.exit(main())
