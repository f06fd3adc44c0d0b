"""The HTTP side of ``ctrstore serve``: routes, bodies, ranges, sendfile, TLS, the access log.

One thread per connection, at most ``max_connections`` at a
time (the accept loop waits for a free one; the kernel's listen queue holds the rest), HTTP/1.1
keep-alive. Blob bodies go from the blob file to the socket with ``socket.sendfile`` (the
kernel's ``sendfile(2)`` on plain TCP; read and send under TLS). TLS handshakes happen in the
connection's own thread, so a slow client never holds up the accept loop.

Every request is one access-log line::

    2025-06-17T10:00:00.123Z 127.0.0.1 alice "GET /v2/team/app/blobs/sha256:... HTTP/1.1" 206 1048576 \
        0.012s - "containerd/1.6.20"

(one line in the log; broken here only to fit)
time (UTC), client address, user (``-`` without authentication, ``token:N`` for the N-th
token), request line, status, body bytes sent, duration, the error code of a failed request
(``MANIFEST_UNKNOWN``...) and the client's User-Agent. Text from the client is escaped.
"""

from __future__ import annotations

import json
import re
import socket
import socketserver
import ssl
import sys
import threading
import time
import traceback
from collections.abc import Iterator
from datetime import UTC, datetime
from http.server import BaseHTTPRequestHandler, HTTPServer
from typing import Any, TextIO
from urllib.parse import parse_qs, quote, unquote, urlencode

from ctrstore import __version__
from ctrstore.errdefs import CtrstoreError
from ctrstore.server.auth import Authenticator
from ctrstore.server.errors import ApiError, from_errdefs
from ctrstore.server.registry import (
    MAX_MANIFEST_SIZE,
    NAME_RE,
    Registry,
    check_digest,
    check_host,
    check_repository,
)

__all__ = ["AccessLog", "RegistryHTTPServer", "parse_range"]

API_VERSION = ("Docker-Distribution-API-Version", "registry/2.0")
READ_CHUNK = 1 << 20
MAX_PAGE = 10000
IDLE_TIMEOUT = 60.0

_NAME = rf"(?P<name>{NAME_RE.pattern})"
_DIGEST = r"(?P<digest>[A-Za-z0-9_+.-]+:[A-Za-z0-9=_-]+)"
_ROUTES: list[tuple[str, re.Pattern[str]]] = [
    ("base", re.compile(r"/v2/?")),
    ("catalog", re.compile(r"/v2/_catalog")),
    ("tags", re.compile(rf"/v2/{_NAME}/tags/list")),
    ("manifest", re.compile(rf"/v2/{_NAME}/manifests/(?P<reference>[A-Za-z0-9_][A-Za-z0-9_.:=+-]{{0,199}})")),
    ("uploads", re.compile(rf"/v2/{_NAME}/blobs/uploads/?")),
    ("upload", re.compile(rf"/v2/{_NAME}/blobs/uploads/(?P<upload>[A-Za-z0-9-]{{1,64}})")),
    ("blob", re.compile(rf"/v2/{_NAME}/blobs/{_DIGEST}")),
]
_METHODS = {
    "base": ("GET", "HEAD"),
    "catalog": ("GET",),
    "tags": ("GET",),
    "manifest": ("GET", "HEAD", "PUT"),
    "uploads": ("POST",),
    "upload": ("GET", "PATCH", "PUT", "DELETE"),
    "blob": ("GET", "HEAD"),
}


def _escape(text: str, limit: int = 2000) -> str:
    """Client text fit for a log line: anything but printable ASCII, quotes and backslashes
    escaped (http.server decodes the request line as Latin-1)."""
    out = []
    for c in text[:limit]:
        o = ord(c)
        if c in '"\\':
            out.append("\\" + c)
        elif o < 0x20 or o >= 0x7F:
            out.append(f"\\x{o:02x}")
        else:
            out.append(c)
    return "".join(out) + ("..." if len(text) > limit else "")


class AccessLog:
    """Lines to a text stream, one write per line under a lock."""

    def __init__(self, stream: TextIO | None) -> None:
        self.stream = stream
        self._lock = threading.Lock()

    def request(
        self, client: str, user: str, request: str, status: int, sent: int, took: float, code: str, agent: str
    ) -> None:
        """One request's line (see the module's docstring)."""
        ts = datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%S.%f")[:-3] + "Z"
        self.write(
            f'{ts} {client} {_escape(user, 100)} "{_escape(request)}" {status or "-"} {sent} {took:.3f}s '
            f'{code} "{_escape(agent, 200) or "-"}"'
        )

    def write(self, line: str) -> None:
        if self.stream is None:
            return
        with self._lock:
            try:
                self.stream.write(line + "\n")
                self.stream.flush()
            except (OSError, ValueError):
                pass


def parse_range(header: str | None, size: int) -> tuple[int, int] | None:
    """The ``(first, last)`` byte of a ``Range: bytes=...`` header on a blob of ``size`` bytes;
    None to send the whole blob (no header, another unit, several ranges or a malformed one,
    which RFC 9110 lets a server ignore). ApiError 416 when the range is past the end."""
    if not header:
        return None
    unit, sep, spec = header.strip().partition("=")
    if not sep or unit.strip().lower() != "bytes" or "," in spec:
        return None
    m = re.fullmatch(r"\s*(\d{0,19})\s*-\s*(\d{0,19})\s*", spec)
    if m is None or (not m.group(1) and not m.group(2)):
        return None
    first_s, last_s = m.group(1), m.group(2)
    if first_s:
        first = int(first_s)
        last = min(int(last_s), size - 1) if last_s else size - 1
        if last_s and int(last_s) < first:
            return None
    else:
        suffix = int(last_s)
        first, last = max(size - suffix, 0), size - 1
        if suffix == 0:
            first = size
    if first >= size:
        raise ApiError(
            416,
            "RANGE_INVALID",
            f"range {header[:100]!r} is past the end of the blob ({size} bytes)",
            headers={"Content-Range": f"bytes */{size}"},
        )
    return first, last


class _BadRequest(Exception):
    pass


class _Body:
    """A request's body, read at most once: by Content-Length or chunked transfer coding."""

    def __init__(self, handler: BaseHTTPRequestHandler) -> None:
        self.rfile = handler.rfile
        te = (handler.headers.get("Transfer-Encoding") or "").strip().lower()
        cl = handler.headers.get("Content-Length")
        self.chunked = False
        self.remaining = 0
        if te:
            if te != "chunked":
                raise ApiError(501, "UNSUPPORTED", f"Transfer-Encoding {te[:50]!r} is not supported")
            self.chunked = True
        elif cl is not None:
            if not re.fullmatch(r"\d{1,19}", cl.strip()):
                raise ApiError(400, "SIZE_INVALID", f"malformed Content-Length {cl[:50]!r}")
            self.remaining = int(cl.strip())
        self.done = not self.chunked and self.remaining == 0
        self.read_bytes = 0

    @property
    def length(self) -> int | None:
        return None if self.chunked else self.remaining

    def chunks(self) -> Iterator[bytes]:
        if self.done:
            return
        if self.chunked:
            yield from self._chunked()
            return
        while self.remaining:
            data = self.rfile.read(min(self.remaining, READ_CHUNK))
            if not data:
                raise ConnectionError("the client closed the connection in the middle of the body")
            self.remaining -= len(data)
            self.read_bytes += len(data)
            yield data
        self.done = True

    def _line(self) -> bytes:
        line = self.rfile.readline(4098)
        if not line:
            raise ConnectionError("the client closed the connection in the middle of the body")
        if not line.endswith(b"\n"):
            raise _BadRequest("chunked body: line too long")
        return line

    def _chunked(self) -> Iterator[bytes]:
        while True:
            size_s = self._line().split(b";", 1)[0].strip()
            if not re.fullmatch(rb"[0-9a-fA-F]{1,15}", size_s):
                raise _BadRequest(f"chunked body: bad chunk size {size_s[:20]!r}")
            left = int(size_s, 16)
            if left == 0:
                while self._line().strip():
                    pass  # trailers
                self.done = True
                return
            while left:
                data = self.rfile.read(min(left, READ_CHUNK))
                if not data:
                    raise ConnectionError("the client closed the connection in the middle of the body")
                left -= len(data)
                self.read_bytes += len(data)
                yield data
            if self._line().strip():
                raise _BadRequest("chunked body: no CRLF after a chunk")

    def read_all(self, limit: int) -> bytes:
        if self.length is not None and self.length > limit:
            raise ApiError(413, "SIZE_INVALID", f"body of {self.length} bytes; at most {limit} accepted")
        parts: list[bytes] = []
        total = 0
        for chunk in self.chunks():
            total += len(chunk)
            if total > limit:
                raise ApiError(413, "SIZE_INVALID", f"body longer than {limit} bytes")
            parts.append(chunk)
        return b"".join(parts)


class _Handler(BaseHTTPRequestHandler):
    server: RegistryHTTPServer
    protocol_version = "HTTP/1.1"
    server_version = f"ctrstore-serve/{__version__}"
    sys_version = ""
    timeout = IDLE_TIMEOUT

    # -- plumbing --------------------------------------------------------------------------
    def setup(self) -> None:
        super().setup()
        self._reset()

    def _reset(self) -> None:
        self._status = 0
        self._sent = 0
        self._code = "-"
        self._user = "-"
        self._headers_done = False
        self._body: _Body | None = None
        self._started = time.monotonic()

    def log_request(self, code: int | str = "-", size: int | str = "-") -> None:
        if isinstance(code, int):
            self._status = code

    def log_message(self, format: str, *args: Any) -> None:
        pass  # the access log is written per request (see _log)

    def version_string(self) -> str:
        return self.server_version

    def send_error(self, code: int, message: str | None = None, explain: str | None = None) -> None:
        """Malformed requests BaseHTTPRequestHandler refuses itself (bad request line, header
        too long, unsupported method): answered in the spec's JSON shape and logged."""
        self.close_connection = True
        if (getattr(self, "raw_requestline", b"") or b"").startswith(b"\x16\x03"):
            self.requestline = "(a TLS handshake: this server speaks plain HTTP)"
            self._code = "TLS_ON_PLAIN_HTTP"
            self._log()
            return
        if not self._headers_done:
            if code == 501:
                code, what = 405, "UNSUPPORTED"
            else:
                what = "UNKNOWN"
            try:
                self._send_error(ApiError(code, what, message or "bad request"))
            except OSError:
                pass
        self._log()

    def _send_error(self, e: ApiError) -> None:
        self._code = e.code
        body = b"" if self.command == "HEAD" else e.body()
        self.send_response(e.status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(e.body())))
        for k, v in e.headers.items():
            self.send_header(k, v)
        self._end_headers()
        self._write(body)

    def _end_headers(self) -> None:
        self.send_header(*API_VERSION)
        if self._body is not None and not self._body.done:
            # An unread body would be taken for the next request: close after this answer.
            self.close_connection = True
        if self.close_connection or self.server.stopping:
            self.close_connection = True
            self.send_header("Connection", "close")
        self.end_headers()
        self._headers_done = True

    def _write(self, data: bytes) -> None:
        if data:
            self.wfile.write(data)
            self._sent += len(data)

    def _reply(
        self,
        status: int,
        body: bytes = b"",
        *,
        content_type: str | None = None,
        headers: dict[str, str] | None = None,
    ) -> None:
        self.send_response(status)
        if content_type:
            self.send_header("Content-Type", content_type)
        if status != 204:  # a 204 has no body, and says nothing of its length
            self.send_header("Content-Length", str(len(body)))
        for k, v in (headers or {}).items():
            self.send_header(k, v)
        self._end_headers()
        if self.command != "HEAD":
            self._write(body)

    def _json(self, doc: Any, headers: dict[str, str] | None = None) -> None:
        self._reply(200, json.dumps(doc).encode(), content_type="application/json", headers=headers)

    def _log(self) -> None:
        headers = getattr(self, "headers", None)
        self.server.access_log.request(
            self.client_address[0],
            self._user,
            getattr(self, "requestline", "") or "",
            self._status,
            self._sent,
            time.monotonic() - self._started,
            self._code,
            headers.get("User-Agent", "") if headers is not None else "",
        )

    def handle_one_request(self) -> None:
        self._reset()
        super().handle_one_request()

    def do_GET(self) -> None:
        self._dispatch()

    do_HEAD = do_POST = do_PUT = do_PATCH = do_DELETE = do_GET

    def _dispatch(self) -> None:
        self._started = time.monotonic()  # not while waiting for the request on a kept-alive connection
        self.server.request_started()
        try:
            try:
                try:
                    self._body = _Body(self)
                except ApiError:
                    self.close_connection = True  # the body's end is unknown
                    raise
                self._route()
            except ApiError as e:
                self._fail(e)
            except CtrstoreError as e:
                self._fail(from_errdefs(e))
            except _BadRequest as e:
                self.close_connection = True
                self._fail(ApiError(400, "UNKNOWN", str(e)))
            except (ConnectionError, TimeoutError, ssl.SSLError):
                self.close_connection = True
                self._code = self._code if self._code != "-" else "CONNECTION_LOST"
            except Exception as e:
                self.close_connection = True
                self.server.error(
                    f'internal error answering "{_escape(self.requestline, 300)}": {type(e).__name__}: {e}'
                )
                self.server.error(traceback.format_exc().rstrip())
                self._fail(ApiError(500, "UNKNOWN", f"internal error: {type(e).__name__}"))
        finally:
            self.server.request_finished()
            self._log()

    def _fail(self, e: ApiError) -> None:
        if self._headers_done:
            self.close_connection = True  # too late for an error answer: cut the connection
            self._code = e.code
            return
        try:
            self._send_error(e)
        except OSError:
            self.close_connection = True

    # -- routing ---------------------------------------------------------------------------
    def _own_host(self) -> str:
        host = (self.headers.get("Host") or "").strip()
        try:
            return check_host(host, "Host") if host else self.server.own_name
        except ApiError:
            return self.server.own_name

    def _route(self) -> None:
        target, _, query = self.path.partition("?")
        path = unquote(target)
        q = parse_qs(query, keep_blank_values=True)
        auth = self.server.auth
        if auth is not None:
            user = auth.check(self.headers.get("Authorization"))
            if user is None:
                raise ApiError(
                    401,
                    "UNAUTHORIZED",
                    "authentication required",
                    headers={"WWW-Authenticate": auth.challenge},
                )
            self._user = user
        for name, pattern in _ROUTES:
            m = pattern.fullmatch(path)
            if m is None:
                continue
            if self.command not in _METHODS[name]:
                raise ApiError(
                    405,
                    "UNSUPPORTED",
                    f"{self.command} is not allowed on {path[:200]} (allowed: {', '.join(_METHODS[name])})",
                    headers={"Allow": ", ".join(_METHODS[name])},
                )
            args = m.groupdict()
            if "name" in args:
                check_repository(args["name"])
            ns_values = q.get("ns") or []
            ns = check_host(ns_values[0], "?ns=") if ns_values and ns_values[0] else None
            getattr(self, f"_r_{name}")(args, q, ns)
            return
        raise ApiError(
            404, "NOT_FOUND", f"no API endpoint {path[:200]!r} (this is an OCI distribution API: /v2/...)"
        )

    @property
    def registry(self) -> Registry:
        return self.server.registry

    # -- reading ---------------------------------------------------------------------------
    def _r_base(self, args: dict[str, str], q: dict[str, list[str]], ns: str | None) -> None:
        self._reply(200, b"{}", content_type="application/json")

    @staticmethod
    def _page(q: dict[str, list[str]]) -> tuple[int | None, str]:
        n_s = (q.get("n") or [""])[0]
        n: int | None = None
        if n_s:
            if not re.fullmatch(r"\d{1,9}", n_s):
                raise ApiError(400, "PAGINATION_NUMBER_INVALID", f"invalid page size n={n_s[:20]!r}")
            n = min(int(n_s), MAX_PAGE)
        return n, (q.get("last") or [""])[0]

    def _paged(
        self, items: list[str], q: dict[str, list[str]], base: str, extra: dict[str, str]
    ) -> tuple[list[str], dict[str, str]]:
        n, last = self._page(q)
        if last:
            items = [i for i in items if i > last]
        headers: dict[str, str] = {}
        if n is not None and len(items) > n:
            items = items[:n]
            if items:
                link = f"{base}?{urlencode({**extra, 'last': items[-1], 'n': str(n)})}"
                headers["Link"] = f'<{link}>; rel="next"'
        return items, headers

    def _r_catalog(self, args: dict[str, str], q: dict[str, list[str]], ns: str | None) -> None:
        repos = self.registry.repositories(ns, self._own_host())
        extra = {"ns": ns} if ns else {}
        page, headers = self._paged(repos, q, "/v2/_catalog", extra)
        self._json({"repositories": page}, headers)

    def _r_tags(self, args: dict[str, str], q: dict[str, list[str]], ns: str | None) -> None:
        repo = args["name"]
        tags = self.registry.tags(repo, ns, self._own_host())
        extra = {"ns": ns} if ns else {}
        page, headers = self._paged(tags, q, f"/v2/{repo}/tags/list", extra)
        self._json({"name": repo, "tags": page}, headers)

    def _r_manifest(self, args: dict[str, str], q: dict[str, list[str]], ns: str | None) -> None:
        repo, ref = args["name"], args["reference"]
        if self.command == "PUT":
            self._put_manifest(repo, ref, ns)
            return
        man = self.registry.manifest(repo, ref, ns, self._own_host())
        self._reply(
            200,
            man.data,
            content_type=man.media_type,
            headers={"Docker-Content-Digest": man.digest, "ETag": f'"{man.digest}"'},
        )

    def _r_blob(self, args: dict[str, str], q: dict[str, list[str]], ns: str | None) -> None:
        blob = self.registry.blob(args["digest"])
        with blob.file:
            rng = parse_range(self.headers.get("Range"), blob.size)
            first, last = rng if rng is not None else (0, blob.size - 1)
            length = last - first + 1
            self.send_response(206 if rng is not None else 200)
            self.send_header("Content-Type", "application/octet-stream")
            self.send_header("Content-Length", str(length))
            if rng is not None:
                self.send_header("Content-Range", f"bytes {first}-{last}/{blob.size}")
            self.send_header("Accept-Ranges", "bytes")
            self.send_header("Docker-Content-Digest", blob.digest)
            self.send_header("ETag", f'"{blob.digest}"')
            self.send_header("Cache-Control", "max-age=31536000")
            self._end_headers()
            if self.command == "HEAD" or length <= 0:
                return
            self.wfile.flush()
            try:
                sent = self.connection.sendfile(blob.file, first, length)
            finally:
                self._sent += max(blob.file.tell() - first, 0)  # sendfile leaves the file where it stopped
            if sent != length:
                raise ConnectionError(f"sent {sent} of {length} bytes")

    # -- pushing ---------------------------------------------------------------------------
    def _location(self, repo: str, upload: str, ns: str | None) -> str:
        loc = f"/v2/{repo}/blobs/uploads/{upload}"
        return loc + ("?" + urlencode({"ns": ns}) if ns else "")

    def _upload_accepted(
        self, repo: str, upload: str, offset: int, ns: str | None, status: int = 202
    ) -> None:
        self._reply(
            status,
            headers={
                "Location": self._location(repo, upload, ns),
                "Range": f"0-{max(offset - 1, 0)}",
                "Docker-Upload-UUID": upload,
            },
        )

    def _created(self, repo: str, digest: str) -> None:
        self._reply(
            201,
            headers={"Location": f"/v2/{repo}/blobs/{quote(digest)}", "Docker-Content-Digest": digest},
        )

    def _r_uploads(self, args: dict[str, str], q: dict[str, list[str]], ns: str | None) -> None:
        repo = args["name"]
        mount = (q.get("mount") or [""])[0]
        digest = (q.get("digest") or [""])[0]
        assert self._body is not None
        if mount and self.registry.mount(check_digest(mount)):
            self._created(repo, mount)
            return
        if digest:
            self._created(repo, self.registry.upload(check_digest(digest), self._body.chunks()))
            return
        upload, offset = self.registry.start_upload()
        self._upload_accepted(repo, upload, offset, ns)

    def _r_upload(self, args: dict[str, str], q: dict[str, list[str]], ns: str | None) -> None:
        repo, upload = args["name"], args["upload"]
        assert self._body is not None
        if self.command == "GET":
            offset = self.registry.upload_offset(upload)
            self._upload_accepted(repo, upload, offset, ns, status=204)
        elif self.command == "DELETE":
            self.registry.cancel(upload)
            self._reply(204)
        elif self.command == "PATCH":
            start = self._content_range_start()
            offset = self.registry.append(upload, self._body.chunks(), start)
            self._upload_accepted(repo, upload, offset, ns)
        else:  # PUT
            digest = (q.get("digest") or [""])[0]
            if not digest:
                raise ApiError(400, "DIGEST_INVALID", "finishing an upload needs ?digest=")
            self._created(repo, self.registry.finish(upload, check_digest(digest), self._body.chunks()))

    def _content_range_start(self) -> int | None:
        value = self.headers.get("Content-Range")
        if not value:
            return None
        m = re.fullmatch(r"\s*(?:bytes[ =])?(\d{1,19})-(\d{1,19})(?:/(?:\d{1,19}|\*))?\s*", value)
        if m is None or int(m.group(2)) < int(m.group(1)):
            raise ApiError(416, "BLOB_UPLOAD_INVALID", f"malformed Content-Range {value[:60]!r}")
        assert self._body is not None
        n = int(m.group(2)) - int(m.group(1)) + 1
        if self._body.length is not None and self._body.length != n:
            raise ApiError(
                416,
                "BLOB_UPLOAD_INVALID",
                f"Content-Range {value[:60]!r} covers {n} bytes, the body has {self._body.length}",
            )
        return int(m.group(1))

    def _put_manifest(self, repo: str, ref: str, ns: str | None) -> None:
        assert self._body is not None
        self.registry.require_push()  # before the body is read
        data = self._body.read_all(MAX_MANIFEST_SIZE)
        digest = self.registry.put_manifest(
            repo, ref, self.headers.get("Content-Type") or "", data, ns, self._own_host()
        )
        self._reply(
            201,
            headers={"Location": f"/v2/{repo}/manifests/{quote(digest)}", "Docker-Content-Digest": digest},
        )


class RegistryHTTPServer(HTTPServer):
    """The listening server. ``serve_forever`` in one thread, ``stop`` from another."""

    daemon_threads = True
    allow_reuse_address = True
    request_queue_size = 128

    def __init__(
        self,
        address: tuple[str, int],
        registry: Registry,
        *,
        auth: Authenticator | None = None,
        tls: ssl.SSLContext | None = None,
        access_log: AccessLog | None = None,
        error_stream: TextIO | None = None,
        max_connections: int = 128,
    ) -> None:
        self.address_family = socket.AF_INET6 if ":" in address[0] else socket.AF_INET
        self.registry = registry
        self.auth = auth
        self.tls = tls
        self.access_log = access_log or AccessLog(None)
        self.error_stream = error_stream if error_stream is not None else sys.stderr
        self.stopping = False
        self._slots = threading.BoundedSemaphore(max_connections)
        self._conns: set[socket.socket] = set()
        self._active = 0
        self._lock = threading.Condition()
        super().__init__(address, _Handler)
        host, port = self.server_name, self.server_port
        self.own_name = f"[{host}]:{port}" if self.address_family == socket.AF_INET6 else f"{host}:{port}"

    def server_bind(self) -> None:
        # HTTPServer.server_bind looks the host's name up in DNS (getfqdn): not needed here.
        socketserver.TCPServer.server_bind(self)
        host, port = self.server_address[:2]
        self.server_name = host.decode() if isinstance(host, bytes) else str(host)
        self.server_port = int(port)

    @property
    def url(self) -> str:
        return f"{'https' if self.tls else 'http'}://{self.own_name}"

    def error(self, message: str) -> None:
        try:
            self.error_stream.write(f"ctrstore serve: {message}\n")
            self.error_stream.flush()
        except (OSError, ValueError):
            pass

    # -- connections -----------------------------------------------------------------------
    def process_request(self, request: Any, client_address: Any) -> None:
        while not self._slots.acquire(timeout=0.5):
            if self.stopping:
                self.shutdown_request(request)
                return
        t = threading.Thread(
            target=self._serve_connection, args=(request, client_address), name="ctrstore-serve", daemon=True
        )
        t.start()

    def _serve_connection(self, request: socket.socket, client_address: Any) -> None:
        conn: socket.socket = request
        with self._lock:
            self._conns.add(request)
        try:
            conn.settimeout(IDLE_TIMEOUT)
            # Headers and body go out in separate writes: without NODELAY, Nagle's algorithm and
            # the client's delayed ACK hold the body back for 40 ms.
            conn.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            if self.tls is not None:
                try:
                    conn = self.tls.wrap_socket(request, server_side=True)
                except (ssl.SSLError, OSError) as e:
                    self.access_log.request(
                        client_address[0], "-", f"(TLS handshake failed: {e})", 0, 0, 0.0, "TLS_HANDSHAKE", ""
                    )
                    return
            self.finish_request(conn, client_address)
        except (ConnectionError, TimeoutError, ssl.SSLError):
            pass
        except Exception:
            self.handle_error(request, client_address)
        finally:
            with self._lock:
                self._conns.discard(request)
            self.shutdown_request(conn)
            self._slots.release()

    def handle_error(self, request: Any, client_address: Any) -> None:
        self.error(f"connection from {client_address[0]}: {traceback.format_exc().rstrip()}")

    def request_started(self) -> None:
        with self._lock:
            self._active += 1

    def request_finished(self) -> None:
        with self._lock:
            self._active -= 1
            self._lock.notify_all()

    def stop(self, grace: float = 10.0) -> int:
        """Stop accepting, let requests in flight finish (up to ``grace`` seconds), then close
        every connection. Returns how many requests were cut short."""
        self.stopping = True
        self.shutdown()
        self.server_close()
        deadline = time.monotonic() + grace
        with self._lock:
            while self._active and time.monotonic() < deadline:
                self._lock.wait(0.1)
            cut = self._active
            conns = list(self._conns)
        for c in conns:
            try:
                c.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass
        return cut
