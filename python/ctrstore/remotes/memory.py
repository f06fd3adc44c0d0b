"""An in-memory :class:`~ctrstore.remotes.transport.RoundTripper`: it answers from a table and
records every request, without a socket. Unit tests use it under a real
:class:`~ctrstore.remotes.transport.Transport` to check retries, redirects, authentication and
HTTP fallback; the answers go through ``http.client``'s own parser, so a :class:`Response` from
here behaves as one from the network (a body shorter than its ``Content-Length`` is noticed).

::

    mem = MemoryTransport()
    mem.on("GET", "https://reg.test/v2/", Reply(401, headers={"WWW-Authenticate": "Basic"}))
    with Resolver(transport=Transport(round_tripper=mem)) as r: ...
    assert mem.seen("/v2/")[0].headers["Authorization"] == ...
"""

from __future__ import annotations

import http.client
import io
import threading
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field, replace
from typing import Any, TypeAlias
from urllib.parse import urlsplit

from ctrstore.remotes.transport import Request, Response, TLSError

__all__ = ["Answer", "MemoryTransport", "Reply"]


@dataclass(frozen=True)
class Reply:
    """One answer. ``Content-Length`` is the body's unless ``headers`` says otherwise (say
    more to have the "server" stop early). ``raw``: the answer byte for byte instead (status
    line and headers without the blank line that ends them; ``body`` follows)."""

    status: int = 200
    body: bytes = b""
    headers: Mapping[str, str] = field(default_factory=dict)
    raw: bytes | None = None

    def wire(self, method: str) -> bytes:
        body = b"" if method == "HEAD" else self.body
        if self.raw is not None:
            return self.raw.rstrip(b"\r\n") + b"\r\n\r\n" + body
        reason = http.client.responses.get(self.status, "X")
        hdrs = {"Content-Length": str(len(self.body)), **self.headers}
        head = f"HTTP/1.1 {self.status} {reason}\r\n" + "".join(f"{k}: {v}\r\n" for k, v in hdrs.items())
        return head.encode("latin-1") + b"\r\n" + body


#: What a route answers: a reply, an exception to raise (``ConnectionResetError()`` for a
#: connection that breaks, ``TLSError`` for a failed handshake), or a function of the request
#: that returns one of those.
Answer: TypeAlias = Reply | BaseException | Callable[[Request], "Reply | BaseException"]


class _Wire:
    """What ``http.client.HTTPResponse`` reads an answer from, in place of a socket."""

    def __init__(self, data: bytes) -> None:
        self._data = data

    def makefile(self, mode: str, *args: Any) -> io.BufferedReader:
        return io.BufferedReader(io.BytesIO(self._data))


class MemoryTransport:
    """Answers each ``(method, url)`` from a queue of answers (the last one repeats; method
    ``*`` matches any); a URL is ``scheme://host[:port]/path``, without the query. Anything
    else is 404. Hosts named in ``plain_http_only`` fail every https request with
    :class:`TLSError`, as a server speaking plain HTTP does. ``requests`` has every request
    received, its body read into bytes."""

    def __init__(self, *, plain_http_only: tuple[str, ...] = ()) -> None:
        self.routes: dict[tuple[str, str], list[Answer]] = {}
        self.requests: list[Request] = []
        self.plain_http_only = set(plain_http_only)
        self._lock = threading.Lock()

    def on(self, method: str, url: str, *answers: Answer) -> None:
        self.routes[(method, url)] = list(answers)

    def seen(self, path: str | None = None, method: str | None = None) -> list[Request]:
        """The requests received for ``path`` (any host, any query) and ``method``."""
        with self._lock:
            return [
                r
                for r in self.requests
                if (path is None or urlsplit(r.url).path == path) and (method is None or r.method == method)
            ]

    def round_trip(self, req: Request) -> Response:
        body = req.body if req.body is None or isinstance(req.body, bytes) else req.body.read()
        u = urlsplit(req.url)
        key = f"{u.scheme}://{u.netloc}{u.path}"
        with self._lock:
            self.requests.append(replace(req, body=body))
            queue = self.routes.get((req.method, key)) or self.routes.get(("*", key))
            answer: Answer = (queue.pop(0) if len(queue) > 1 else queue[0]) if queue else Reply(404)
        if u.scheme == "https" and u.netloc in self.plain_http_only:
            raise TLSError(f"{req.method} {u.netloc}: TLS handshake failed: the server speaks plain HTTP")
        if callable(answer):
            answer = answer(req)
        if isinstance(answer, BaseException):
            raise answer
        raw = http.client.HTTPResponse(_Wire(answer.wire(req.method)), method=req.method)  # type: ignore[arg-type]
        raw.begin()
        return Response(raw, req.url, req.method)
