"""HTTP for the registry client, in two layers as Go's ``net/http``:

- a :class:`RoundTripper` sends one request and returns its response: no redirects, no
  retries. :class:`ConnectionPool` does it with ``http.client`` connections kept alive in a
  pool (one per request in flight, so concurrent downloads each get their own);
  ``remotes.memory.MemoryTransport`` answers from memory (unit tests, no sockets);
  ``remotes.fallback.HTTPFallback`` wraps another to retry over plain HTTP.
- a :class:`Transport` is the client on top: it checks every URL and header, follows
  redirects (headers only to the same origin), retries connection errors and 408/429/5xx
  replies with backoff, and hands out :class:`Response` bodies that notice when the server
  stops early.
"""

from __future__ import annotations

import email.utils
import http.client
import io
import json
import math
import random
import re
import socket
import ssl
import threading
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from email.message import Message
from typing import IO, Any, Protocol, TypeAlias
from urllib.parse import SplitResult, urlencode, urljoin, urlsplit

from ctrstore._core import __version__
from ctrstore.errdefs import CtrstoreError, InvalidArgument, Unauthenticated, Unavailable

__all__ = [
    "MAX_SIZE",
    "USER_AGENT",
    "Body",
    "ConnectionPool",
    "Request",
    "Response",
    "RetryPolicy",
    "RoundTripper",
    "TLSError",
    "Transport",
    "check_header",
    "check_url",
    "clean",
    "loads_json",
    "parse_size",
    "resolve_url",
    "same_origin",
    "with_query",
]

USER_AGENT = f"ctrstore/{__version__}"
MAX_REDIRECTS = 10
RETRY_STATUSES = frozenset({408, 429, 500, 502, 503, 504})
REDIRECT_STATUSES = frozenset({301, 302, 303, 307, 308})

#: A request body: bytes, or a seekable binary file (rewound for each retry).
Body: TypeAlias = bytes | IO[bytes] | None

#: The largest size a header may state (a signed 64-bit integer, as Go's int64 sizes).
MAX_SIZE = (1 << 63) - 1
#: URLs longer than this (from hosts.toml, a redirect, a token realm) are refused.
MAX_URL_LENGTH = 8192
_SIZE_RE = re.compile(r"[0-9]{1,19}")
_HEADER_NAME_RE = re.compile(r"[!#$%&'*+\-.^_`|~0-9A-Za-z]+")
_MEDIA_TYPE_RE = re.compile(r"[a-z0-9][a-z0-9!#$&^_.+-]{0,126}/[a-z0-9][a-z0-9!#$&^_.+-]{0,126}")
_UNPRINTABLE_RE = re.compile(r"[\x00-\x1f\x7f-\x9f\u2028\u2029]")


def clean(text: object, limit: int = 200) -> str:
    """Text a server sent, fit for a one-line message: control characters (CR, LF, ESC...)
    escaped, at most ``limit`` characters."""
    s = _UNPRINTABLE_RE.sub(lambda m: repr(m.group())[1:-1], str(text))
    return s if len(s) <= limit else s[: limit - 3] + "..."


def parse_size(value: str | None, what: str) -> int | None:
    """A size a server stated (``Content-Length``, a ``Content-Range`` bound): decimal digits
    only, at most ``MAX_SIZE``. None if absent; InvalidArgument naming ``what`` otherwise."""
    if value is None:
        return None
    v = value.strip(" \t")
    if _SIZE_RE.fullmatch(v) and int(v) <= MAX_SIZE:
        return int(v)
    raise InvalidArgument(f"{what}: invalid size {clean(value, 60)!r} (want 0 to {MAX_SIZE})")


def loads_json(data: bytes | str) -> Any:
    """``json.loads``, with too deep nesting a ValueError too (json raises RecursionError)."""
    try:
        return json.loads(data)
    except RecursionError:
        raise ValueError("JSON nested too deeply") from None


def check_url(url: str, what: str) -> SplitResult:
    """``url`` split, if it is one ctrstore may send a request to: http or https, a host, a
    valid port, no user:password part, printable ASCII without spaces, at most
    ``MAX_URL_LENGTH`` characters. InvalidArgument naming ``what`` otherwise."""
    bad = f"{what}: invalid URL {clean(url, 120)!r}"
    if len(url) > MAX_URL_LENGTH:
        raise InvalidArgument(f"{what}: URL longer than {MAX_URL_LENGTH} characters")
    if not url.isascii() or any(c <= " " or c == "\x7f" for c in url):
        raise InvalidArgument(f"{bad} (spaces, control or non-ASCII characters)")
    try:
        u = urlsplit(url)
        port = u.port
    except ValueError as e:
        raise InvalidArgument(f"{bad} ({e})") from None
    if u.scheme not in ("http", "https"):
        raise InvalidArgument(f"{bad} (want http:// or https://)")
    if not u.hostname:
        raise InvalidArgument(f"{bad} (no host)")
    if "@" in u.netloc:
        raise InvalidArgument(f"{bad} (user:password@ in a URL is not supported)")
    if port == 0:
        raise InvalidArgument(f"{bad} (port 0)")
    return u


def check_header(name: str, value: str, what: str) -> None:
    """InvalidArgument unless ``name`` is an HTTP token and ``value`` has no CR, LF or other
    control character (which would end the header and start another). The value is not
    quoted in the message: it may be a secret."""
    if not isinstance(name, str) or not _HEADER_NAME_RE.fullmatch(name):
        raise InvalidArgument(f"{what}: invalid header name {clean(name, 60)!r}")
    if not isinstance(value, str) or any(_bad_header_char(c) for c in value):
        raise InvalidArgument(
            f"{what}: header {name!r} has a control character (CR, LF, NUL...) or a character "
            "beyond Latin-1 in its value"
        )


def _bad_header_char(c: str) -> bool:
    return (c < " " and c != "\t") or c == "\x7f" or c > "\xff"


def same_origin(url: str) -> Callable[[str], bool]:
    """Whether a URL may receive what was meant for ``url`` (its headers, its credentials):
    the same host and port, and no step down from https to http."""
    o = urlsplit(url)

    def trusted(other: str) -> bool:
        u = urlsplit(other)
        return u.netloc == o.netloc and (u.scheme == "https" or o.scheme == "http")

    return trusted


def resolve_url(base: str, ref: str, what: str) -> str:
    """``ref`` (a ``Location`` a server sent) resolved against ``base`` and checked with
    :func:`check_url` (InvalidArgument naming ``what`` for one ctrstore could not send)."""
    try:
        url = urljoin(base, ref)
    except ValueError:
        url = ref
    check_url(url, what)
    return url


def with_query(url: str, params: Mapping[str, str] | Sequence[tuple[str, str]]) -> str:
    """``url`` with ``params`` added to its query (after any it has); ``url`` itself without
    params."""
    if not params:
        return url
    return url + ("&" if urlsplit(url).query else "?") + urlencode(params)


class TLSError(Unavailable):
    """The TLS handshake failed (for example: the server speaks plain HTTP)."""


@dataclass
class RetryPolicy:
    attempts: int = 5
    """Tries in total for connection errors and 408/429/5xx replies."""
    backoff: float = 0.25
    """First wait in seconds; doubles each time, with jitter, capped at ``max_backoff``."""
    max_backoff: float = 8.0

    def delay(self, attempt: int, retry_after: str | None = None) -> float:
        """The wait before try ``attempt + 1``: the server's ``Retry-After`` (seconds or an
        HTTP date) clamped to ``[0, max_backoff]``, else exponential backoff. A value that is
        neither (negative, fractional, NaN, garbage) is ignored."""
        if retry_after:
            wait = _retry_after(retry_after)
            if wait is not None:
                return max(0.0, min(wait, self.max_backoff))
        d = min(self.backoff * (2**attempt), self.max_backoff)
        return float(d * (0.75 + random.random() / 2))


def _retry_after(value: str) -> float | None:
    v = value.strip()
    if v.isascii() and v.isdigit():
        return float(int(v)) if len(v) <= 12 else math.inf
    try:
        when = email.utils.parsedate_to_datetime(v)
        return when.timestamp() - time.time()
    except (TypeError, ValueError, IndexError, OverflowError):
        return None


@dataclass(frozen=True)
class Request:
    """One HTTP exchange for a :class:`RoundTripper`: the headers are final (User-Agent and
    Content-Length included), a file ``body`` is positioned where the body starts."""

    method: str
    url: str
    headers: Mapping[str, str] = field(default_factory=dict)
    body: Body = None
    ssl_context: ssl.SSLContext | None = None
    """TLS settings for an https URL (None: the system's defaults)."""
    connect_timeout: float = 30.0
    read_timeout: float | None = None
    """How long a read may wait for the server (None: the round tripper's own default)."""


class RoundTripper(Protocol):
    """Sends one request and returns its response, as Go's ``http.RoundTripper``: no
    redirects, no retries (:class:`Transport` does those).

    Failures are raised as: ``OSError`` or ``http.client.HTTPException`` for an exchange that
    failed and may be tried again (connection refused or reset, a broken reply);
    :class:`TLSError` when the TLS handshake failed (the server may speak plain HTTP:
    ``HTTPFallback`` acts on it); another ``CtrstoreError`` for a failure not worth retrying
    (a certificate that is not trusted, a host name that does not resolve)."""

    def round_trip(self, req: Request) -> Response: ...


class Response:
    """A reply whose body has not been read yet. Read it (``read``, ``stream``) or ``close``
    it; a fully read body gives its connection back (``release(True)``), anything else closes
    it (``release(False)``)."""

    def __init__(
        self,
        raw: http.client.HTTPResponse,
        url: str,
        method: str,
        release: Callable[[bool], None] | None = None,
    ) -> None:
        self._raw = raw
        self._open = True
        self._release = release
        self.url = url
        self.method = method
        self.status = raw.status
        self.reason = raw.reason
        self.headers: Message = raw.headers
        self.read_bytes = 0
        self._length = raw.length if method != "HEAD" else 0

    def __enter__(self) -> Response:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def header(self, name: str) -> str | None:
        v = self.headers.get(name)
        return None if v is None else str(v)

    @property
    def content_length(self) -> int | None:
        """The stated Content-Length; None without one, InvalidArgument if it is not a size."""
        return parse_size(self.header("Content-Length"), f"{self._where()}: Content-Length")

    @property
    def media_type(self) -> str:
        """Content-Type without parameters, lower case; "" if absent or not a media type."""
        v = (self.header("Content-Type") or "").split(";", 1)[0].strip().lower()
        return v if _MEDIA_TYPE_RE.fullmatch(v) else ""

    def read_chunk(self, n: int) -> bytes:
        """Up to ``n`` bytes; b"" at the end. Unavailable if the server stops early."""
        if not self._open:
            return b""
        raw = self._raw
        try:
            data = raw.read(n)
        except (OSError, http.client.HTTPException) as e:
            self._finish(reuse=False)
            raise Unavailable(
                f"{self._where()}: connection lost after {self.read_bytes} bytes: {e or type(e).__name__}"
            ) from None
        self.read_bytes += len(data)
        if raw.isclosed():
            expected = self._length
            truncated = expected is not None and self.read_bytes < expected
            self._finish(reuse=not truncated)
            if truncated and not data:
                raise Unavailable(
                    f"{self._where()}: the server closed the connection after {self.read_bytes} "
                    f"of {expected} bytes"
                )
        return data

    def read(self, limit: int | None = None) -> bytes:
        """The whole body; with ``limit``, InvalidArgument if it is longer."""
        parts = []
        total = 0
        while True:
            chunk = self.read_chunk(1 << 16)
            if not chunk:
                break
            total += len(chunk)
            if limit is not None and total > limit:
                self.close()
                raise InvalidArgument(f"{self._where()}: reply longer than {limit} bytes")
            parts.append(chunk)
        return b"".join(parts)

    def stream(self) -> IO[bytes]:
        """The body as a binary file object (closing it closes the response)."""
        return io.BufferedReader(_RawStream(self), buffer_size=1 << 16)

    def drain(self, limit: int = 1 << 16) -> None:
        """Read and drop a small body so the connection can be reused; else close it."""
        if not self._open:
            return
        if self._raw.length is not None and self._raw.length > limit:
            self.close()
            return
        try:
            self.read(limit)
        except CtrstoreError:
            self.close()

    def close(self) -> None:
        if not self._open:
            return
        raw = self._raw
        if not raw.isclosed() and raw.length == 0 and not raw.chunked:
            raw.read()  # nothing left: this marks the reply complete
        self._finish(reuse=raw.isclosed())

    def _finish(self, reuse: bool) -> None:
        if not self._open:
            return
        self._open = False
        if not reuse:
            self._raw.close()
        if self._release is not None:
            self._release(reuse)

    def _where(self) -> str:
        u = urlsplit(self.url)
        return f"{self.method} {u.netloc}{u.path}"

    def error_detail(self) -> str:
        """A short description of an error reply: status and the registry's error codes,
        on one line (what the server wrote is escaped and shortened)."""
        detail = clean(f"{self.status} {self.reason}".strip(), 100)
        try:
            body = self.read(1 << 16)
        except CtrstoreError:
            return detail
        try:
            doc = loads_json(body)
        except ValueError:
            return detail
        errs = doc.get("errors") if isinstance(doc, dict) else None
        if isinstance(errs, list) and errs:
            msgs = []
            for e in errs[:3]:
                if isinstance(e, dict):
                    code, msg = e.get("code"), e.get("message")
                    parts = [clean(x, 200) for x in (code, msg) if isinstance(x, str) and x]
                    if parts:
                        msgs.append(": ".join(parts))
            if msgs:
                return f"{detail} ({'; '.join(msgs)})"
        return detail


class _RawStream(io.RawIOBase):
    def __init__(self, resp: Response) -> None:
        self._resp = resp

    def readable(self) -> bool:
        return True

    def readinto(self, b: Any) -> int:
        mv = memoryview(b).cast("B")
        data = self._resp.read_chunk(len(mv))
        n = len(data)
        mv[:n] = data
        return n

    def close(self) -> None:
        self._resp.close()
        super().close()


_PoolKey = tuple[str, str, int]


class ConnectionPool:
    """A :class:`RoundTripper` over ``http.client``: idle keep-alive connections pooled by
    scheme, host and TLS settings. Safe to share between threads: each request in flight has
    its own connection. ``timeout`` is the read timeout of a connection whose request does not
    name one."""

    def __init__(self, timeout: float = 60.0) -> None:
        self.timeout = timeout
        self._idle: dict[_PoolKey, list[http.client.HTTPConnection]] = {}
        self._lock = threading.Lock()
        self._closed = False

    def close(self) -> None:
        with self._lock:
            idle, self._idle = self._idle, {}
            self._closed = True
        for conns in idle.values():
            for c in conns:
                c.close()

    def _get(
        self, scheme: str, netloc: str, ctx: ssl.SSLContext | None, connect_timeout: float
    ) -> tuple[http.client.HTTPConnection, Callable[[bool], None]]:
        key = (scheme, netloc, id(ctx) if ctx is not None else 0)
        with self._lock:
            conns = self._idle.get(key)
            conn = conns.pop() if conns else None
        if conn is None:
            if scheme == "https":
                conn = http.client.HTTPSConnection(
                    netloc, timeout=connect_timeout, context=ctx or ssl.create_default_context()
                )
            elif scheme == "http":
                conn = http.client.HTTPConnection(netloc, timeout=connect_timeout)
            else:
                raise InvalidArgument(f"unsupported URL scheme {scheme!r}")
        c = conn

        def release(reuse: bool) -> None:
            if reuse and c.sock is not None:
                with self._lock:
                    if not self._closed:
                        self._idle.setdefault(key, []).append(c)
                        return
            c.close()

        return conn, release

    def round_trip(self, req: Request) -> Response:
        """Send ``req`` on a pooled connection (a new one if none is idle). TLS and name
        resolution failures become errdefs errors here; other connection errors are raised
        as they are, for :class:`Transport` to retry."""
        try:
            return self._send(req)
        except ssl.SSLCertVerificationError as e:
            raise Unavailable(
                f"{req.method} {_netloc(req.url)}: TLS certificate not trusted: "
                f"{e.verify_message or e}; set 'ca' or 'skip_verify' in hosts.toml"
            ) from None
        except ssl.SSLError as e:
            raise TLSError(f"{req.method} {_netloc(req.url)}: TLS handshake failed: {e}") from None
        except socket.gaierror as e:
            raise Unavailable(
                f"{req.method} {_netloc(req.url)}: cannot resolve host: {_describe(e)}"
            ) from None

    def _send(self, req: Request) -> Response:
        u = urlsplit(req.url)
        target = u.path or "/"
        if u.query:
            target += "?" + u.query
        conn, release = self._get(u.scheme, u.netloc, req.ssl_context, req.connect_timeout)
        try:
            if conn.sock is None:
                conn.timeout = req.connect_timeout
                conn.connect()
            if conn.sock is not None:
                conn.sock.settimeout(req.read_timeout or self.timeout)
            conn.request(req.method, target, body=req.body, headers=dict(req.headers))
            raw = conn.getresponse()
        except BaseException:
            conn.close()
            raise
        return Response(raw, req.url, req.method, release)


class Transport:
    """The HTTP client of the registry code, over a :class:`RoundTripper` (by default a
    :class:`ConnectionPool` of its own, closed by :meth:`close`). Safe to share between
    threads.

    ``sleep`` waits between retries (unit tests pass one that records instead)."""

    def __init__(
        self,
        retry: RetryPolicy | None = None,
        timeout: float = 60.0,
        user_agent: str = USER_AGENT,
        round_tripper: RoundTripper | None = None,
        sleep: Callable[[float], None] = time.sleep,
    ) -> None:
        self.retry = retry or RetryPolicy()
        self.timeout = timeout
        self.user_agent = user_agent
        self._pool: ConnectionPool | None = None
        if round_tripper is None:
            round_tripper = self._pool = ConnectionPool(timeout)
        self.round_tripper = round_tripper
        self.sleep = sleep

    def close(self) -> None:
        """Close the connection pool this transport made (one it was given is its owner's)."""
        if self._pool is not None:
            self._pool.close()

    def __enter__(self) -> Transport:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def with_round_tripper(self, round_tripper: RoundTripper) -> Transport:
        """A transport with the same policies over another round tripper (for example an
        ``HTTPFallback`` around this one's); closing it closes nothing."""
        return Transport(self.retry, self.timeout, self.user_agent, round_tripper, self.sleep)

    def request(
        self,
        method: str,
        url: str,
        *,
        headers: Mapping[str, str] | None = None,
        body: Body = None,
        ssl_context: ssl.SSLContext | None = None,
        connect_timeout: float | None = None,
        read_timeout: float | None = None,
        follow_redirects: bool = True,
        trusted: Callable[[str], bool] | None = None,
        retry: bool = True,
        confidential_body: bool = False,
    ) -> Response:
        """Send a request, following redirects and retrying connection errors and
        408/429/5xx replies. Headers in ``headers`` are only sent to URLs that ``trusted``
        accepts (default: ``same_origin(url)``: the same host and port, never from https down
        to http); other hosts get none of them. With ``confidential_body`` (a token request
        with a password in its form), a redirect that would send the body to a URL
        ``trusted`` refuses is not followed (Unauthenticated). A reply with a retryable status
        that keeps failing is returned as is. Every URL (redirects too) and header is checked
        first: InvalidArgument for one that could not be sent as it is. ``connect_timeout``
        bounds the connection attempt, ``read_timeout`` every wait for the server afterwards
        (None: the round tripper's default; a mirror's is short, see ``hosts.py``)."""
        headers = dict(headers or {})
        for k, v in headers.items():
            check_header(k, v, f"{method} {_netloc(url)}")
        check_url(url, method)
        is_trusted = trusted or same_origin(url)
        start = body.tell() if body is not None and not isinstance(body, bytes) else 0
        attempts = self.retry.attempts if retry else 1
        last_err: BaseException | None = None
        cur_url, cur_method, cur_body = url, method, body
        redirects = 0
        attempt = 0
        ct = connect_timeout if connect_timeout is not None else min(self.timeout, 30.0)
        while attempt < attempts:
            if cur_body is not None and not isinstance(cur_body, bytes):
                cur_body.seek(start)
            trusted_now = is_trusted(cur_url)
            req = Request(
                cur_method,
                cur_url,
                self._headers(cur_method, headers if trusted_now else {}, cur_body),
                cur_body,
                ssl_context if trusted_now else None,
                ct,
                read_timeout,
            )
            try:
                resp = self.round_tripper.round_trip(req)
            except (OSError, http.client.HTTPException) as e:
                last_err = e
                attempt += 1
                if attempt < attempts:
                    self.sleep(self.retry.delay(attempt - 1))
                continue
            if follow_redirects and resp.status in REDIRECT_STATUSES:
                loc = resp.header("Location")
                resp.drain()
                where = f"{cur_method} {_netloc(cur_url)}{urlsplit(cur_url).path}"
                if not loc:
                    raise Unavailable(f"{where}: redirect without a Location")
                redirects += 1
                if redirects > MAX_REDIRECTS:
                    raise Unavailable(f"{method} {_netloc(url)}: more than {MAX_REDIRECTS} redirects")
                nxt = resolve_url(cur_url, loc, f"{where}: redirect")
                if resp.status == 303 or (resp.status in (301, 302) and cur_method == "POST"):
                    cur_method, cur_body = ("HEAD" if cur_method == "HEAD" else "GET"), None
                elif confidential_body and cur_body is not None and not is_trusted(nxt):
                    raise Unauthenticated(
                        f"{where}: redirected to {_netloc(nxt)} over {urlsplit(nxt).scheme}; the "
                        "request carries credentials, so ctrstore does not follow it"
                    )
                cur_url = nxt
                continue
            if resp.status in RETRY_STATUSES and attempt + 1 < attempts:
                retry_after = resp.header("Retry-After")
                resp.drain()
                attempt += 1
                self.sleep(self.retry.delay(attempt - 1, retry_after))
                continue
            return resp
        u = urlsplit(cur_url)
        raise Unavailable(
            f"{method} {u.scheme}://{u.netloc}{u.path}: {attempts} attempts failed: {_describe(last_err)}"
        )

    def _headers(self, method: str, headers: Mapping[str, str], body: Body) -> dict[str, str]:
        """What goes on the wire: the User-Agent, the caller's headers, and the body's
        Content-Length (a file's remaining size; 0 for an empty POST/PUT/PATCH)."""
        hdrs = {"User-Agent": self.user_agent, **headers}
        if isinstance(body, bytes):
            hdrs.setdefault("Content-Length", str(len(body)))
        elif body is not None:
            hdrs.setdefault("Content-Length", str(_remaining(body)))
        elif method in ("POST", "PUT", "PATCH"):
            hdrs.setdefault("Content-Length", "0")
        return hdrs


def _netloc(url: str) -> str:
    try:
        return clean(urlsplit(url).netloc, 100)
    except ValueError:
        return clean(url, 100)


def _remaining(f: IO[bytes]) -> int:
    pos = f.tell()
    end = f.seek(0, io.SEEK_END)
    f.seek(pos)
    return end - pos


def _describe(e: BaseException | None) -> str:
    if e is None:
        return "no reply"
    if isinstance(e, OSError) and e.strerror:
        return e.strerror
    return str(e) or type(e).__name__
