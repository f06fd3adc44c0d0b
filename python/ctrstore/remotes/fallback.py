"""HTTP fallback, containerd's ``NewHTTPFallback`` (``core/remotes/docker/resolver.go``): a
round tripper that sends a request for one host over https first and, when the TLS handshake
fails (the server speaks plain HTTP), sends it again over http — and from then on every
request for that host goes straight to http.

It is used only for a registry host ``hosts.py`` marks ``http_fallback``: a loopback registry
with a port other than 443 and no TLS settings in hosts.toml. Unlike containerd's it falls
back for its own ``host[:port]`` only, never for a host a redirect leads to.
"""

from __future__ import annotations

import threading
from dataclasses import replace
from urllib.parse import urlsplit, urlunsplit

from ctrstore.remotes.transport import Request, Response, RoundTripper, TLSError

__all__ = ["HTTPFallback"]


class HTTPFallback:
    """Wraps ``inner`` for requests to ``host`` (``host[:port]`` as in URLs). Thread-safe."""

    def __init__(self, inner: RoundTripper, host: str) -> None:
        self.inner = inner
        self.host = host
        self._lock = threading.Lock()
        self._active = False

    @property
    def active(self) -> bool:
        """Whether ``host`` is spoken to over plain http now (a handshake has failed)."""
        with self._lock:
            return self._active

    def round_trip(self, req: Request) -> Response:
        u = urlsplit(req.url)
        if u.scheme != "https" or u.netloc != self.host:
            return self.inner.round_trip(req)
        if not self.active:
            start = req.body.tell() if req.body is not None and not isinstance(req.body, bytes) else 0
            try:
                return self.inner.round_trip(req)
            except TLSError:
                with self._lock:
                    self._active = True
            if req.body is not None and not isinstance(req.body, bytes):
                req.body.seek(start)
        plain = urlunsplit(("http", u.netloc, u.path, u.query, u.fragment))
        return self.inner.round_trip(replace(req, url=plain, ssl_context=None))
