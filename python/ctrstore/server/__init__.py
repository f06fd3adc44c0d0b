"""``ctrstore serve``: the store as an OCI distribution registry.

Rooms:

- ``registry.py``: the distribution API over one namespace (``Registry``), taking the roles it
  uses — the namespace's content store (blobs are read with ``info``/``open``, uploads written
  with ``writer``), its image store (``get``/``list``/``create``/``update``) and, for pushes,
  its lease manager — never the whole ``Client``. How image names become repositories (and
  ``?ns=``) is documented there.
- ``httpd.py``: HTTP/1.1 on threads, routes, ranges, sendfile, TLS, the access log.
- ``auth.py``: htpasswd (bcrypt through the system's libcrypt) and bearer token files.
- ``errors.py``: the spec's error shape and the errdefs → HTTP mapping.

``serve`` below puts them together and runs until SIGINT or SIGTERM.
"""

from __future__ import annotations

import errno
import ipaddress
import signal
import ssl
import threading
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from types import FrameType
from typing import TextIO

from ctrstore.errdefs import InvalidArgument, PermissionDenied, Unavailable, from_oserror
from ctrstore.server.auth import Authenticator, load_htpasswd, load_tokens
from ctrstore.server.httpd import AccessLog, RegistryHTTPServer
from ctrstore.server.registry import Registry, check_host

__all__ = ["Registry", "RegistryHTTPServer", "ServeOptions", "make_server", "parse_addr", "serve"]


@dataclass
class ServeOptions:
    addr: str = "127.0.0.1:5000"
    htpasswd: str | None = None
    token_file: str | None = None
    tls_cert: str | None = None
    tls_key: str | None = None
    max_connections: int = 128


def parse_addr(addr: str) -> tuple[str, int]:
    """``HOST:PORT`` or ``[IPv6]:PORT`` (port 0: any free port)."""
    host, sep, port = addr.rpartition(":")
    if not sep or not host or not port.isdigit() or int(port) > 65535:
        raise InvalidArgument(f"--addr {addr!r}: expected HOST:PORT, e.g. 127.0.0.1:5000")
    if host.startswith("[") and host.endswith("]"):
        host = host[1:-1]
    return host, int(port)


def is_loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def _tls_context(cert: str, key: str) -> ssl.SSLContext:
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    ctx.minimum_version = ssl.TLSVersion.TLSv1_2
    for what, path in (("--tls-cert", cert), ("--tls-key", key)):
        if not Path(path).is_file():
            raise InvalidArgument(f"{what} {path}: no such file")
    try:
        ctx.load_cert_chain(cert, key)
    except PermissionError as e:
        raise PermissionDenied(f"--tls-cert/--tls-key: {e.filename or cert}: {e.strerror}") from None
    except (ssl.SSLError, OSError) as e:
        raise InvalidArgument(
            f"--tls-cert {cert} / --tls-key {key}: not a certificate and its key: {e}"
        ) from None
    return ctx


def make_server(
    registry: Registry,
    opts: ServeOptions,
    *,
    access_log: TextIO | None = None,
    error_stream: TextIO | None = None,
) -> RegistryHTTPServer:
    """Check the options, load the credentials and the certificate, and bind."""
    host, port = parse_addr(opts.addr)
    if (opts.tls_cert is None) != (opts.tls_key is None):
        raise InvalidArgument("--tls-cert and --tls-key go together")
    tls = _tls_context(opts.tls_cert, opts.tls_key) if opts.tls_cert and opts.tls_key else None
    auth: Authenticator | None = None
    if opts.htpasswd or opts.token_file:
        auth = Authenticator(
            load_htpasswd(opts.htpasswd) if opts.htpasswd else None,
            load_tokens(opts.token_file) if opts.token_file else None,
        )
    if not is_loopback(host):
        if auth is not None and tls is None:
            raise InvalidArgument(
                f"--addr {opts.addr} is reachable from other machines: credentials would cross the "
                "network in clear text; give --tls-cert and --tls-key too"
            )
        if registry.push and auth is None:
            raise InvalidArgument(
                f"--push on {opts.addr} would let anyone who reaches it write images: give "
                "--htpasswd or --token-file (or bind to 127.0.0.1)"
            )
    check_host(registry.upstream, "--upstream")
    try:
        return RegistryHTTPServer(
            (host, port),
            registry,
            auth=auth,
            tls=tls,
            access_log=AccessLog(access_log),
            error_stream=error_stream,
            max_connections=opts.max_connections,
        )
    except OSError as e:
        if e.errno == errno.EADDRINUSE:
            raise Unavailable(f"cannot listen on {opts.addr}: another program uses that port") from e
        if e.errno == errno.EADDRNOTAVAIL:
            raise InvalidArgument(f"cannot listen on {opts.addr}: not an address of this machine") from e
        raise from_oserror(e, f"listening on {opts.addr}") from e


def serve(
    server: RegistryHTTPServer,
    *,
    stop: threading.Event | None = None,
    on_stop: Callable[[str, int], None] | None = None,
) -> None:
    """Serve until ``stop`` is set or — in the main thread — SIGINT or SIGTERM arrives; then
    finish what is in flight (up to 10 s) and close. ``on_stop(why, cut)`` is told why and how
    many requests were cut short."""
    stop = stop or threading.Event()
    why = ["stopped"]
    old: dict[int, Callable[[int, FrameType | None], object] | int | None] = {}
    if threading.current_thread() is threading.main_thread():

        def handler(signum: int, frame: FrameType | None) -> None:
            why[0] = signal.Signals(signum).name
            stop.set()

        for sig in (signal.SIGINT, signal.SIGTERM):
            old[sig] = signal.signal(sig, handler)
    loop = threading.Thread(
        target=server.serve_forever, kwargs={"poll_interval": 0.2}, name="ctrstore-serve-accept"
    )
    loop.start()
    try:
        while not stop.wait(0.5):
            if not loop.is_alive():
                break
    finally:
        cut = server.stop()
        loop.join(10)
        for signum, h in old.items():
            signal.signal(signum, h)
        if on_stop is not None:
            on_stop(why[0], cut)
