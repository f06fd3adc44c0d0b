"""The HTTP client's own logic over a MemoryTransport: retries and their waits, redirects and
whose headers follow them, bodies that stop early, and HTTP fallback."""

from __future__ import annotations

import http.client
import io

import pytest

from ctrstore.errdefs import InvalidArgument, Unauthenticated, Unavailable
from ctrstore.remotes import RetryPolicy, Transport
from ctrstore.remotes.fallback import HTTPFallback
from ctrstore.remotes.memory import MemoryTransport, Reply
from ctrstore.remotes.transport import USER_AGENT, Request, TLSError, resolve_url, with_query

URL = "https://reg.test/v2/x"


def client(mem: MemoryTransport, waits: list[float] | None = None, attempts: int = 5) -> Transport:
    policy = RetryPolicy(attempts=attempts, backoff=0.25, max_backoff=8.0)
    return Transport(retry=policy, round_tripper=mem, sleep=(waits if waits is not None else []).append)


def test_retries_statuses_and_connection_errors_with_backoff() -> None:
    mem = MemoryTransport()
    mem.on("GET", URL, Reply(503), ConnectionResetError(), Reply(429, headers={"Retry-After": "3"}),
           http.client.RemoteDisconnected("gone"), Reply(200, b"ok"))  # fmt: skip
    waits: list[float] = []
    with client(mem, waits).request("GET", URL) as resp:
        assert resp.status == 200 and resp.read() == b"ok"
    assert len(mem.requests) == 5
    # Exponential backoff with jitter (0.75-1.25x), except where the server said how long.
    assert 0.1875 <= waits[0] <= 0.3125 and 0.375 <= waits[1] <= 0.625
    assert waits[2] == 3.0 and 1.5 <= waits[3] <= 2.5


def test_retryable_status_that_persists_is_returned() -> None:
    mem = MemoryTransport()
    mem.on("GET", URL, Reply(502, b"bad gateway"))
    waits: list[float] = []
    resp = client(mem, waits, attempts=3).request("GET", URL)
    assert resp.status == 502 and resp.read() == b"bad gateway"
    assert len(mem.requests) == 3 and len(waits) == 2


def test_connection_errors_that_persist() -> None:
    mem = MemoryTransport()
    mem.on("GET", URL, ConnectionRefusedError(111, "Connection refused"))
    with pytest.raises(
        Unavailable, match=r"GET https://reg.test/v2/x: 3 attempts failed: Connection refused"
    ):
        client(mem, attempts=3).request("GET", URL)
    assert len(mem.requests) == 3
    # retry=False: one try only (chunked uploads are not replayed).
    with pytest.raises(Unavailable, match="1 attempts failed"):
        client(mem).request("GET", URL, retry=False)
    assert len(mem.requests) == 4


def test_errors_not_worth_retrying_are_raised_at_once() -> None:
    mem = MemoryTransport()
    mem.on("GET", URL, Unavailable("GET reg.test: cannot resolve host: no such host"))
    with pytest.raises(Unavailable, match="cannot resolve host"):
        client(mem).request("GET", URL)
    mem.on("GET", URL, TLSError("GET reg.test: TLS handshake failed"))
    with pytest.raises(TLSError):
        client(mem).request("GET", URL)
    assert len(mem.requests) == 2


def test_headers_user_agent_and_content_length() -> None:
    mem = MemoryTransport()
    mem.on("*", URL, Reply(201))
    t = client(mem)
    t.request("PUT", URL, body=b"abc", headers={"X-A": "1"}).close()
    f = io.BytesIO(b"0123456789")
    f.seek(4)
    t.request("PUT", URL, body=f).close()
    t.request("POST", URL).close()
    put, put_file, post = mem.requests
    assert put.headers == {"User-Agent": USER_AGENT, "X-A": "1", "Content-Length": "3"}
    assert put_file.headers["Content-Length"] == "6" and put_file.body == b"456789"
    assert post.headers["Content-Length"] == "0" and post.body is None
    with pytest.raises(InvalidArgument, match="header 'X-A' has a control"):
        t.request("GET", URL, headers={"X-A": "1\r\nX-B: 2"})
    assert len(mem.requests) == 3


def test_file_body_is_sent_whole_on_each_retry() -> None:
    mem = MemoryTransport()
    mem.on("PUT", URL, ConnectionResetError(), Reply(201))
    f = io.BytesIO(b"xxdata")
    f.seek(2)
    client(mem).request("PUT", URL, body=f).close()
    assert [r.body for r in mem.requests] == [b"data", b"data"]


def test_redirect_headers_follow_only_the_same_origin() -> None:
    mem = MemoryTransport()
    mem.on("GET", URL, Reply(307, headers={"Location": "/v2/y"}))
    mem.on("GET", "https://reg.test/v2/y", Reply(302, headers={"Location": "https://storage.test/b?sig=1"}))
    mem.on("GET", "https://storage.test/b", Reply(200, b"blob"))
    with client(mem).request("GET", URL, headers={"Authorization": "Bearer T"}) as resp:
        assert resp.read() == b"blob" and resp.url == "https://storage.test/b?sig=1"
    assert [r.headers.get("Authorization") for r in mem.requests] == ["Bearer T", "Bearer T", None]
    # Down from https to http on the same host: no headers either.
    mem.on("GET", URL, Reply(307, headers={"Location": "http://reg.test/v2/x"}))
    mem.on("GET", "http://reg.test/v2/x", Reply(200))
    client(mem).request("GET", URL, headers={"Authorization": "Bearer T"}).close()
    assert mem.requests[-1].url == "http://reg.test/v2/x" and "Authorization" not in mem.requests[-1].headers


def test_redirect_limits() -> None:
    mem = MemoryTransport()
    mem.on("GET", URL, Reply(302, headers={"Location": URL}))
    with pytest.raises(Unavailable, match="more than 10 redirects"):
        client(mem).request("GET", URL)
    assert len(mem.requests) == 11
    mem.on("GET", URL, Reply(302))
    with pytest.raises(Unavailable, match="redirect without a Location"):
        client(mem).request("GET", URL)
    mem.on("GET", URL, Reply(302, headers={"Location": "file:///etc/passwd"}))
    with pytest.raises(InvalidArgument, match="redirect: invalid URL 'file:///etc/passwd' \\(want http"):
        client(mem).request("GET", URL)


def test_confidential_body_is_not_redirected_elsewhere() -> None:
    mem = MemoryTransport()
    mem.on("POST", "https://auth.test/token", Reply(307, headers={"Location": "http://auth.test/token"}))
    with pytest.raises(Unauthenticated, match="does not follow it"):
        client(mem).request("POST", "https://auth.test/token", body=b"password=pw", confidential_body=True)
    assert [r.url for r in mem.requests] == ["https://auth.test/token"]
    # A 303 turns the POST into a GET without the body: that may go anywhere.
    mem.on("POST", "https://auth.test/token", Reply(303, headers={"Location": "https://other.test/t"}))
    mem.on("GET", "https://other.test/t", Reply(200))
    client(mem).request(
        "POST", "https://auth.test/token", body=b"password=pw", confidential_body=True
    ).close()
    assert mem.requests[-1].method == "GET" and mem.requests[-1].body is None


def test_body_shorter_than_announced() -> None:
    mem = MemoryTransport()
    mem.on("GET", URL, Reply(200, b"abc", {"Content-Length": "10"}))
    resp = client(mem).request("GET", URL)
    assert resp.content_length == 10
    with pytest.raises(Unavailable, match="closed the connection after 3 of 10 bytes"):
        resp.read()
    mem.on("GET", URL, Reply(raw=b"HTTP/1.1 200 OK\r\nContent-Length: 1_0"))
    with pytest.raises(InvalidArgument, match="Content-Length: invalid size '1_0'"):
        _ = client(mem).request("GET", URL).content_length


def test_error_detail_is_one_clean_line() -> None:
    mem = MemoryTransport()
    body = b'{"errors": [{"code": "DENIED", "message": "no\\nway\\u001b[2J"}, {"code": 5}]}'
    mem.on("GET", URL, Reply(403, body))
    assert client(mem).request("GET", URL).error_detail() == "403 Forbidden (DENIED: no\\nway\\x1b[2J)"


# -- HTTP fallback ---------------------------------------------------------------------------
def test_http_fallback_switches_its_host_once() -> None:
    mem = MemoryTransport(plain_http_only=("localhost:5000", "other.test"))
    mem.on("*", "http://localhost:5000/v2/", Reply(200))
    fb = HTTPFallback(mem, "localhost:5000")
    t = client(mem).with_round_tripper(fb)
    assert not fb.active
    body = io.BytesIO(b"data")
    with t.request("PUT", "https://localhost:5000/v2/", body=body) as resp:
        assert resp.status == 200 and resp.url == "http://localhost:5000/v2/"
    assert fb.active
    assert [(r.url, r.body) for r in mem.requests] == [
        ("https://localhost:5000/v2/", b"data"),
        ("http://localhost:5000/v2/", b"data"),
    ]
    # From now on straight to http, without trying https first.
    t.request("GET", "https://localhost:5000/v2/").close()
    assert mem.requests[-1].url == "http://localhost:5000/v2/" and len(mem.requests) == 3
    # Other hosts (a redirect target, say) never fall back.
    with pytest.raises(TLSError):
        t.request("GET", "https://other.test/v2/")


def test_http_fallback_leaves_other_errors_alone() -> None:
    mem = MemoryTransport()
    mem.on("GET", "https://localhost:5000/v2/", Unavailable("TLS certificate not trusted"))
    fb = HTTPFallback(mem, "localhost:5000")
    with pytest.raises(Unavailable, match="not trusted"):
        fb.round_trip(Request("GET", "https://localhost:5000/v2/"))
    assert not fb.active and len(mem.requests) == 1


# -- URL helpers -----------------------------------------------------------------------------
def test_url_helpers() -> None:
    assert with_query("https://a/t", {}) == "https://a/t"
    assert with_query("https://a/t", {"x": "1 2"}) == "https://a/t?x=1+2"
    assert (
        with_query("https://a/t?s=1", [("scope", "a:b"), ("scope", "c")])
        == "https://a/t?s=1&scope=a%3Ab&scope=c"
    )
    assert resolve_url("https://a/v2/x/blobs/uploads/", "/v2/x/u/1?s=2", "upload") == "https://a/v2/x/u/1?s=2"
    with pytest.raises(InvalidArgument, match="upload: invalid URL"):
        resolve_url("https://a/", "http://[::1/x", "upload")
