"""HTTP for the registry client: ``http.client`` connections kept alive in a pool (one per
request in flight, so concurrent downloads each get their own), redirects, retries with
backoff, and response bodies that notice when the server stops early."""

from __future__ import annotations

import http.client
import io
import json
import random
import socket
import ssl
import threading
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from email.message import Message
from typing import IO, Any, TypeAlias
from urllib.parse import urljoin, urlsplit

from ctrstore.errdefs import CtrstoreError, InvalidArgument, Unavailable

__all__ = ["USER_AGENT", "Body", "Response", "RetryPolicy", "TLSError", "Transport"]

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
        if retry_after:
            try:
                return min(float(retry_after), self.max_backoff)
            except ValueError:
                pass
        d = min(self.backoff * (2**attempt), self.max_backoff)
        return float(d * (0.75 + random.random() / 2))


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
        v = self.header("Content-Length")
        try:
            return int(v) if v is not None else None
        except ValueError:
            return None

    @property
    def media_type(self) -> str:
        """Content-Type without parameters, lower case."""
        return (self.header("Content-Type") or "").split(";", 1)[0].strip().lower()

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
        """A short description of an error reply: status and the registry's error codes."""
        detail = f"{self.status} {self.reason}".strip()
        try:
            body = self.read(1 << 16)
        except Exception:
            return detail
        try:
            doc = json.loads(body)
            errs = doc.get("errors") if isinstance(doc, dict) else None
            if isinstance(errs, list) and errs:
                msgs = []
                for e in errs[:3]:
                    if isinstance(e, dict):
                        code, msg = e.get("code"), e.get("message")
                        msgs.append(": ".join(str(x) for x in (code, msg) if x))
                if msgs:
                    return f"{detail} ({'; '.join(msgs)})"
        except ValueError:
            pass
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
    ) -> Response:
        """Send a request, following redirects and retrying connection errors and
        408/429/5xx replies. Headers in ``headers`` are only sent to URLs that ``trusted``
        accepts (default: the same host as ``url``); other hosts get none of them.
        A reply with a retryable status that keeps failing is returned as is."""
        headers = dict(headers or {})
        origin = urlsplit(url).netloc
        is_trusted = trusted or (lambda u: urlsplit(u).netloc == origin)
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
                    f"{cur_method} {urlsplit(cur_url).netloc}: TLS certificate not trusted: "
                    f"{e.verify_message or e}; set 'ca' or 'skip_verify' in hosts.toml"
                ) from None
            except ssl.SSLError as e:
                raise TLSError(
                    f"{cur_method} {urlsplit(cur_url).netloc}: TLS handshake failed: {e}"
                ) from None
            except socket.gaierror as e:
                raise Unavailable(
                    f"{cur_method} {urlsplit(cur_url).netloc}: cannot resolve host: {_describe(e)}"
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
                if not loc:
                    raise Unavailable(f"{cur_method} {cur_url}: redirect without a Location")
                redirects += 1
                if redirects > MAX_REDIRECTS:
                    raise Unavailable(f"{method} {url}: more than {MAX_REDIRECTS} redirects")
                cur_url = urljoin(cur_url, loc)
                if resp.status == 303 or (resp.status in (301, 302) and cur_method == "POST"):
                    cur_method, cur_body = ("HEAD" if cur_method == "HEAD" else "GET"), None
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
