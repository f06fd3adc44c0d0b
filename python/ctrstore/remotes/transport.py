"""HTTP for the registry client: ``http.client`` connections kept alive in a pool (one per
request in flight, so concurrent downloads each get their own), redirects, retries with
backoff, and response bodies that notice when the server stops early."""

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
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from email.message import Message
from typing import IO, Any, TypeAlias
from urllib.parse import SplitResult, urljoin, urlsplit

from ctrstore.errdefs import CtrstoreError, InvalidArgument, Unauthenticated, Unavailable

__all__ = [
    "MAX_SIZE",
    "USER_AGENT",
    "Body",
    "Response",
    "RetryPolicy",
    "TLSError",
    "Transport",
    "check_header",
    "check_url",
    "clean",
    "loads_json",
    "parse_size",
    "same_origin",
]

try:
    from ctrstore import __version__ as _version
except ImportError:  # pragma: no cover - the extension is always built with the package
    _version = "0"

USER_AGENT = f"ctrstore/{_version}"
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


class Response:
    """A reply whose body has not been read yet. Read it (``read``, ``stream``) or ``close``
    it; a fully read body gives its connection back to the pool."""

    def __init__(
        self,
        raw: http.client.HTTPResponse,
        conn: http.client.HTTPConnection,
        url: str,
        method: str,
        release: Callable[[http.client.HTTPConnection, bool], None],
    ) -> None:
        self._raw = raw
        self._conn: http.client.HTTPConnection | None = conn
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
        if self._conn is None:
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
        if self._conn is None:
            return
        if self._raw.length is not None and self._raw.length > limit:
            self.close()
            return
        try:
            self.read(limit)
        except CtrstoreError:
            self.close()

    def close(self) -> None:
        if self._conn is None:
            return
        raw = self._raw
        if not raw.isclosed() and raw.length == 0 and not raw.chunked:
            raw.read()  # nothing left: this marks the reply complete
        self._finish(reuse=raw.isclosed())

    def _finish(self, reuse: bool) -> None:
        conn, self._conn = self._conn, None
        if conn is None:
            return
        if not reuse:
            self._raw.close()
        self._release(conn, reuse)

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


@dataclass
class Transport:
    """Sends requests. Safe to share between threads: each request in flight has its own
    connection, taken from (and given back to) a pool of idle keep-alive connections."""

    retry: RetryPolicy = field(default_factory=RetryPolicy)
    timeout: float = 60.0
    user_agent: str = USER_AGENT
    _idle: dict[_PoolKey, list[http.client.HTTPConnection]] = field(default_factory=dict, repr=False)
    _lock: threading.Lock = field(default_factory=threading.Lock, repr=False)
    _closed: bool = False

    def close(self) -> None:
        with self._lock:
            idle, self._idle = self._idle, {}
            self._closed = True
        for conns in idle.values():
            for c in conns:
                c.close()

    def __enter__(self) -> Transport:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # -- connections -----------------------------------------------------------------------
    def _get(
        self, scheme: str, netloc: str, ctx: ssl.SSLContext | None, connect_timeout: float
    ) -> tuple[http.client.HTTPConnection, Callable[[http.client.HTTPConnection, bool], None]]:
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

        def release(c: http.client.HTTPConnection, reuse: bool) -> None:
            if reuse and c.sock is not None:
                with self._lock:
                    if not self._closed:
                        self._idle.setdefault(key, []).append(c)
                        return
            c.close()

        return conn, release

    def _send_once(
        self,
        method: str,
        url: str,
        headers: Mapping[str, str],
        body: Body,
        ctx: ssl.SSLContext | None,
        connect_timeout: float,
    ) -> Response:
        u = urlsplit(url)
        target = u.path or "/"
        if u.query:
            target += "?" + u.query
        conn, release = self._get(u.scheme, u.netloc, ctx, connect_timeout)
        hdrs = {"User-Agent": self.user_agent, **headers}
        payload: bytes | IO[bytes] | None = body
        if body is not None and not isinstance(body, bytes):
            hdrs.setdefault("Content-Length", str(_remaining(body)))
        elif body is None and method in ("POST", "PUT", "PATCH"):
            hdrs.setdefault("Content-Length", "0")
        try:
            if conn.sock is None:
                conn.timeout = connect_timeout
                conn.connect()
            if conn.sock is not None:
                conn.sock.settimeout(self.timeout)
            conn.request(method, target, body=payload, headers=hdrs)
            raw = conn.getresponse()
        except BaseException:
            conn.close()
            raise
        return Response(raw, conn, url, method, release)

    # -- requests --------------------------------------------------------------------------
    def request(
        self,
        method: str,
        url: str,
        *,
        headers: Mapping[str, str] | None = None,
        body: Body = None,
        ssl_context: ssl.SSLContext | None = None,
        connect_timeout: float | None = None,
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
        first: InvalidArgument for one that could not be sent as it is."""
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
            send_headers = headers if trusted_now else {}
            ctx = ssl_context if trusted_now else None
            try:
                resp = self._send_once(cur_method, cur_url, send_headers, cur_body, ctx, ct)
            except ssl.SSLCertVerificationError as e:
                raise Unavailable(
                    f"{cur_method} {_netloc(cur_url)}: TLS certificate not trusted: "
                    f"{e.verify_message or e}; set 'ca' or 'skip_verify' in hosts.toml"
                ) from None
            except ssl.SSLError as e:
                raise TLSError(f"{cur_method} {_netloc(cur_url)}: TLS handshake failed: {e}") from None
            except socket.gaierror as e:
                raise Unavailable(
                    f"{cur_method} {_netloc(cur_url)}: cannot resolve host: {_describe(e)}"
                ) from None
            except (OSError, http.client.HTTPException) as e:
                last_err = e
                attempt += 1
                if attempt < attempts:
                    time.sleep(self.retry.delay(attempt - 1))
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
                try:
                    nxt = urljoin(cur_url, loc)
                except ValueError:
                    nxt = loc
                check_url(nxt, f"{where}: redirect")
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
                time.sleep(self.retry.delay(attempt - 1, retry_after))
                continue
            return resp
        u = urlsplit(cur_url)
        raise Unavailable(
            f"{method} {u.scheme}://{u.netloc}{u.path}: {attempts} attempts failed: {_describe(last_err)}"
        )


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
