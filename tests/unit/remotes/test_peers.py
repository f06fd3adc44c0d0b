"""Peers as mirrors, without sockets: hosts.toml ``[host]`` entries (other nodes' ``ctrstore
serve``) are tried in order before the registry, each once and with short timeouts; a peer
that has not got a blob, fails, or breaks off mid-blob is passed over (the next host continues
with ``Range``); bytes that fail verification after coming from a peer are fetched again from
the registry alone; and the registry's credentials never go to a peer.

The registry is ``reg.test`` (https), the peers ``http://peer1.test:5000`` and
``http://peer2.test:5000``, all answered by a MemoryTransport."""

from __future__ import annotations

import hashlib
from collections.abc import Iterator
from pathlib import Path

import pytest

from ctrstore import Client
from ctrstore.content import Descriptor
from ctrstore.errdefs import FailedPrecondition, NotFound, Unavailable
from ctrstore.images import mediatypes as mt
from ctrstore.images.pull import Download, Status
from ctrstore.remotes import Credentials, Resolver, Transport
from ctrstore.remotes.hosts import (
    DEFAULT_DIAL_TIMEOUT,
    MIRROR_DIAL_TIMEOUT,
    MIRROR_READ_TIMEOUT,
    configure_hosts,
)
from ctrstore.remotes.memory import MemoryTransport, Reply
from tests.unit.remotes.conftest import FAST

REG = "https://reg.test/v2/app"
P1 = "http://peer1.test:5000/v2/app"
P2 = "http://peer2.test:5000/v2/app"
BLOB = bytes(range(256)) * 64  # 16 KiB
DESC = Descriptor(mt.OCI_LAYER, "sha256:" + hashlib.sha256(BLOB).hexdigest(), len(BLOB))
PATH = f"/v2/app/blobs/{DESC.digest}"
MANIFEST = b'{"schemaVersion": 2, "mediaType": "' + mt.OCI_MANIFEST.encode() + b'", "layers": []}'
MD = "sha256:" + hashlib.sha256(MANIFEST).hexdigest()
HEAD_OK = Reply(
    200,
    b"",
    {"Docker-Content-Digest": MD, "Content-Type": mt.OCI_MANIFEST, "Content-Length": str(len(MANIFEST))},
)
BOB = Credentials("bob", "pw", "test")


def partial(data: bytes, total: int, start: int = 0) -> Reply:
    """``data`` where the reply promised ``total`` bytes: the connection breaks after it."""
    headers = {"Content-Length": str(total - start)}
    if start:
        headers["Content-Range"] = f"bytes {start}-{total - 1}/{total}"
    return Reply(206 if start else 200, data, headers)


def rest(start: int) -> Reply:
    return Reply(206, BLOB[start:], {"Content-Range": f"bytes {start}-{len(BLOB) - 1}/{len(BLOB)}"})


@pytest.fixture
def mem() -> MemoryTransport:
    return MemoryTransport()


@pytest.fixture
def hosts_dir(tmp_path: Path) -> Path:
    """reg.test mirrored by peer1 then peer2 (pull and resolve, containerd's default)."""
    d = tmp_path / "certs.d"
    (d / "reg.test").mkdir(parents=True)
    (d / "reg.test" / "hosts.toml").write_text(
        'server = "https://reg.test"\n'
        '[host."http://peer1.test:5000"]\n  capabilities = ["pull", "resolve"]\n'
        '[host."http://peer2.test:5000"]\n  capabilities = ["pull", "resolve"]\n'
    )
    return d


@pytest.fixture
def sleeps() -> list[float]:
    return []


@pytest.fixture
def resolver(mem: MemoryTransport, hosts_dir: Path, sleeps: list[float]) -> Iterator[Resolver]:
    t = Transport(retry=FAST, round_tripper=mem, sleep=sleeps.append)
    creds = {"reg.test": BOB}
    with Resolver(transport=t, credentials=creds.get, hosts_dir=hosts_dir) as r:
        yield r


def urls(mem: MemoryTransport) -> list[str]:
    """``METHOD origin [Range]`` of each request."""
    out = []
    for q in mem.requests:
        rng = q.headers.get("Range")
        out.append(f"{q.method} {q.url.split('/v2/')[0]}" + (f" {rng}" if rng else ""))
    return out


def fetch_all(resolver: Resolver, offset: int = 0) -> tuple[bytes, int, str]:
    stream, start = resolver.fetcher("reg.test/app:1").fetch(DESC, offset)
    with stream:
        data = stream.read()
        return data, start, str(getattr(stream, "source", ""))


# -- hosts.toml ------------------------------------------------------------------------------
def test_peer_timeouts_default_short_and_configurable(tmp_path: Path) -> None:
    d = tmp_path / "reg.test"
    d.mkdir()
    (d / "hosts.toml").write_text(
        'server = "https://reg.test"\n'
        '[host."http://peer1.test:5000"]\n'
        '[host."http://peer2.test:5000"]\n  dial_timeout = "500ms"\n  read_timeout = "1m"\n'
    )
    p1, p2, reg = configure_hosts("reg.test", hosts_dir=tmp_path)
    assert (p1.dial_timeout, p1.read_timeout) == (MIRROR_DIAL_TIMEOUT, MIRROR_READ_TIMEOUT)
    assert (p2.dial_timeout, p2.read_timeout) == (0.5, 60.0)
    assert (reg.dial_timeout, reg.read_timeout) == (DEFAULT_DIAL_TIMEOUT, None)
    (d / "hosts.toml").write_text('[host."http://peer1.test:5000"]\n  read_timeout = "soon"\n')
    with pytest.raises(Exception, match=r"invalid read_timeout 'soon'"):
        configure_hosts("reg.test", hosts_dir=tmp_path)


def test_requests_to_a_peer_carry_its_timeouts(mem: MemoryTransport, resolver: Resolver) -> None:
    mem.on("GET", P1 + PATH[7:], Reply(200, BLOB))
    assert fetch_all(resolver)[0] == BLOB
    (req,) = mem.requests
    assert (req.connect_timeout, req.read_timeout) == (MIRROR_DIAL_TIMEOUT, MIRROR_READ_TIMEOUT)


# -- where a blob comes from -----------------------------------------------------------------
def test_blob_from_the_first_peer_that_has_it(mem: MemoryTransport, resolver: Resolver) -> None:
    mem.on("GET", P2 + PATH[7:], Reply(200, BLOB))
    data, start, source = fetch_all(resolver)
    assert (data, start, source) == (BLOB, 0, "peer2.test:5000")
    assert urls(mem) == ["GET http://peer1.test:5000", "GET http://peer2.test:5000"]
    assert all(q.url.endswith("?ns=reg.test") for q in mem.requests)


def test_dead_peers_are_asked_once_and_the_registry_with_retries(
    mem: MemoryTransport, resolver: Resolver, sleeps: list[float]
) -> None:
    """A peer that refuses connections or answers 500 is passed over at once (no retries, no
    waits); the registry itself, the last host, keeps its retries."""
    mem.on("GET", P1 + PATH[7:], ConnectionRefusedError(111, "Connection refused"))
    mem.on("GET", P2 + PATH[7:], Reply(503))
    mem.on("GET", REG + PATH[7:], ConnectionResetError(), Reply(200, BLOB))
    data, _, source = fetch_all(resolver)
    assert (data, source) == (BLOB, "reg.test")
    assert urls(mem) == [
        "GET http://peer1.test:5000",
        "GET http://peer2.test:5000",
        "GET https://reg.test",
        "GET https://reg.test",
    ]
    assert len(sleeps) == 1  # the registry's one retry, nothing for the peers


def test_all_hosts_fail_names_the_registry_error_and_the_peers(
    mem: MemoryTransport, resolver: Resolver
) -> None:
    mem.on("GET", P1 + PATH[7:], Reply(500))
    mem.on("GET", REG + PATH[7:], Reply(404))
    with pytest.raises(
        NotFound, match=r"peer1.test:5000: 500 .*peer2.test:5000: not found.*reg.test: not found"
    ):
        fetch_all(resolver)
    mem.on("GET", P2 + PATH[7:], Reply(502))
    mem.on("GET", REG + PATH[7:], Reply(403))
    with pytest.raises(
        Exception, match=r"reg.test: access denied.*passed over first: .*peer2.test:5000: 502"
    ):
        fetch_all(resolver)


def test_a_failed_peer_is_not_asked_again_by_the_same_pull(
    mem: MemoryTransport, resolver: Resolver, sleeps: list[float]
) -> None:
    """peer1 refuses connections, peer2 has not got the first blob: for the next blob (and
    tag) of the same resolver — one pull — peer1 is passed over without a request, peer2 (a
    404 is no failure) asked again. A new resolver tries peer1 again."""
    other = Descriptor(mt.OCI_LAYER, "sha256:" + hashlib.sha256(b"o").hexdigest(), 1)
    mem.on("GET", P1 + PATH[7:], ConnectionRefusedError(111, "Connection refused"))
    mem.on("GET", REG + PATH[7:], Reply(200, BLOB))
    mem.on("GET", f"{P2}/blobs/{other.digest}", Reply(200, b"o"))
    assert fetch_all(resolver)[2] == "reg.test"
    stream, _ = resolver.fetcher("reg.test/app:1").fetch(other)
    with stream:
        assert stream.read() == b"o" and getattr(stream, "source", "") == "peer2.test:5000"
    mem.on("HEAD", REG[:-7] + "/v2/app/manifests/1", HEAD_OK)
    assert resolver.resolve("reg.test/app:1")[1].digest == MD
    assert urls(mem) == [
        "GET http://peer1.test:5000",
        "GET http://peer2.test:5000",
        "GET https://reg.test",
        "GET http://peer2.test:5000",
        "HEAD http://peer2.test:5000",
        "HEAD https://reg.test",
    ]
    t = Transport(retry=FAST, round_tripper=mem, sleep=sleeps.append)
    with Resolver(transport=t, hosts_dir=resolver.hosts_dir) as fresh:
        mem.requests.clear()
        fetch_all(fresh)
        assert urls(mem)[0] == "GET http://peer1.test:5000"


def test_peer_dying_mid_blob_is_continued_by_the_next_host_with_range(
    mem: MemoryTransport, resolver: Resolver
) -> None:
    """peer1 breaks off after 5000 bytes, peer2 after 9000 (having been asked from 5000): the
    registry is asked for the rest from 9000. The reader sees one whole blob."""
    mem.on("GET", P1 + PATH[7:], partial(BLOB[:5000], len(BLOB)))
    mem.on("GET", P2 + PATH[7:], partial(BLOB[5000:9000], len(BLOB), 5000))
    mem.on("GET", REG + PATH[7:], rest(9000))
    data, start, source = fetch_all(resolver)
    assert data == BLOB and start == 0
    assert source == "peer1.test:5000, peer2.test:5000 from byte 5000, reg.test from byte 9000"
    assert urls(mem) == [
        "GET http://peer1.test:5000",
        "GET http://peer2.test:5000 bytes=5000-",
        "GET https://reg.test bytes=9000-",
    ]


def test_next_host_ignoring_range_has_its_first_bytes_skipped(
    mem: MemoryTransport, resolver: Resolver
) -> None:
    mem.on("GET", P1 + PATH[7:], partial(BLOB[:7000], len(BLOB)))
    mem.on("GET", P2 + PATH[7:], Reply(200, BLOB))  # the whole blob, Range or not
    data, _, source = fetch_all(resolver)
    assert data == BLOB and source == "peer1.test:5000, peer2.test:5000 from byte 7000"


def test_a_host_that_sent_nothing_is_no_source(mem: MemoryTransport, resolver: Resolver) -> None:
    mem.on("GET", P1 + PATH[7:], partial(b"", len(BLOB)))  # answers, then dies at once
    mem.on("GET", P2 + PATH[7:], Reply(200, BLOB))
    data, _, source = fetch_all(resolver)
    assert data == BLOB and source == "peer2.test:5000"


def test_the_registry_breaking_off_is_an_error_as_before(mem: MemoryTransport, resolver: Resolver) -> None:
    mem.on("GET", P1 + PATH[7:], partial(BLOB[:3000], len(BLOB)))
    mem.on("GET", REG + PATH[7:], partial(BLOB[3000:6000], len(BLOB), 3000))
    with pytest.raises(Unavailable, match="after 3000 of 13384 bytes"):
        fetch_all(resolver)


def test_resume_from_an_offset_goes_through_the_peers_too(mem: MemoryTransport, resolver: Resolver) -> None:
    mem.on("GET", P1 + PATH[7:], rest(4096))
    data, start, source = fetch_all(resolver, 4096)
    assert (data, start, source) == (BLOB[4096:], 4096, "peer1.test:5000")
    assert urls(mem) == ["GET http://peer1.test:5000 bytes=4096-"]


# -- trust -----------------------------------------------------------------------------------
def test_registry_credentials_never_go_to_a_peer(mem: MemoryTransport, resolver: Resolver) -> None:
    """The registry wants Basic credentials (configured for reg.test). peer1 challenges too:
    it has none configured, so it is passed over without any; peer2 has not got the blob.
    Only reg.test ever sees an Authorization header."""
    basic = {"WWW-Authenticate": 'Basic realm="r"'}
    mem.on("GET", P1 + PATH[7:], Reply(401, b"{}", basic))
    mem.on("GET", REG + PATH[7:], Reply(401, b"{}", basic), Reply(200, BLOB))
    assert fetch_all(resolver)[0] == BLOB
    sent = [(q.url.split("/v2/")[0], q.headers.get("Authorization")) for q in mem.requests]
    assert sent == [
        ("http://peer1.test:5000", None),
        ("http://peer2.test:5000", None),
        ("https://reg.test", None),
        ("https://reg.test", BOB.basic()),
    ]
    # Fetched again: peer1 (which failed) is not asked, peer2 still gets nothing, the registry
    # its credentials at once.
    mem.requests.clear()
    assert fetch_all(resolver)[0] == BLOB
    sent = [(q.url.split("/v2/")[0], q.headers.get("Authorization")) for q in mem.requests]
    assert sent == [("http://peer2.test:5000", None), ("https://reg.test", BOB.basic())]


def test_distrust_sends_a_blob_back_to_the_registry_alone(mem: MemoryTransport, resolver: Resolver) -> None:
    f = resolver.fetcher("reg.test/app:1")
    mem.on("GET", P1 + PATH[7:], Reply(200, b"X" * len(BLOB)))
    mem.on("GET", REG + PATH[7:], Reply(200, BLOB))
    stream, _ = f.fetch(DESC)
    stream.read()
    stream.close()
    assert f.distrust(DESC)  # from a peer: try the registry
    stream, _ = f.fetch(DESC)
    with stream:
        assert stream.read() == BLOB and getattr(stream, "source", "") == "reg.test"
    assert not f.distrust(DESC)  # the registry's own bytes: nobody else to ask
    assert urls(mem) == ["GET http://peer1.test:5000", "GET https://reg.test"]


# -- resolve by tag --------------------------------------------------------------------------
@pytest.mark.parametrize(
    "failure",
    [
        ConnectionRefusedError(111, "Connection refused"),
        Reply(401, b"{}", {"WWW-Authenticate": 'Basic realm="peer"'}),
        Reply(403),
        Reply(500),
    ],
    ids=["refused", "401", "403", "500"],
)
def test_tag_missing_on_peers_resolves_at_the_registry(
    mem: MemoryTransport, resolver: Resolver, failure: Reply | OSError
) -> None:
    """peer1 has not got the tag, peer2 fails (once, however): the registry resolves it. When
    the registry has not got it either, the error says what each host answered."""
    path = "/v2/app/manifests/1"
    mem.on("HEAD", P1[:-7] + path, Reply(404))
    mem.on("HEAD", P2[:-7] + path, failure)
    mem.on("HEAD", REG[:-7] + path, HEAD_OK)
    assert resolver.resolve("reg.test/app:1")[1].digest == MD
    assert urls(mem) == [
        "HEAD http://peer1.test:5000",
        "HEAD http://peer2.test:5000",
        "HEAD https://reg.test",
    ]
    assert all("Authorization" not in q.headers for q in mem.requests)
    mem.on("HEAD", REG[:-7] + path, Reply(404))
    mem.on("HEAD", P1[:-7] + path, failure)
    mem.on("HEAD", P2[:-7] + path, Reply(404))
    t = Transport(retry=FAST, round_tripper=mem, sleep=lambda s: None)
    with (
        Resolver(transport=t, hosts_dir=resolver.hosts_dir) as fresh,
        pytest.raises(
            NotFound, match=r"asked peer1.test:5000, peer2.test:5000, reg.test\) \(passed over first: "
        ),
    ):
        fresh.resolve("reg.test/app:1")


def test_tag_from_a_peer_with_resolve_wins(mem: MemoryTransport, resolver: Resolver) -> None:
    """containerd's rule: a host with the resolve capability is trusted with tags, the first
    that has the tag answers (a stale peer too: give peers only "pull" to keep tags to the
    registry)."""
    mem.on("HEAD", P1[:-7] + "/v2/app/manifests/1", HEAD_OK)
    assert resolver.resolve("reg.test/app:1")[1].digest == MD
    assert urls(mem) == ["HEAD http://peer1.test:5000"]


def test_pull_only_peers_never_resolve_tags(mem: MemoryTransport, hosts_dir: Path) -> None:
    (hosts_dir / "reg.test" / "hosts.toml").write_text(
        'server = "https://reg.test"\n[host."http://peer1.test:5000"]\n  capabilities = ["pull"]\n'
    )
    mem.on("HEAD", REG[:-7] + "/v2/app/manifests/1", HEAD_OK)
    mem.on("GET", P1 + PATH[7:], Reply(200, BLOB))
    t = Transport(retry=FAST, round_tripper=mem, sleep=lambda s: None)
    with Resolver(transport=t, hosts_dir=hosts_dir) as r:
        assert r.resolve("reg.test/app:1")[1].digest == MD
        assert fetch_all(r)[2] == "peer1.test:5000"
    assert urls(mem) == ["HEAD https://reg.test", "GET http://peer1.test:5000"]


# -- pull ------------------------------------------------------------------------------------
def pull_blob(client: Client, resolver: Resolver) -> tuple[Download, list[Status]]:
    seen: list[Status] = []
    with client.lease():
        puller = Download(client.content, resolver.fetcher("reg.test/app:1"), progress=seen.append)
        puller.fetch_blob(DESC)
    return puller, seen


def test_pull_records_and_reports_where_each_blob_came_from(
    client: Client, mem: MemoryTransport, resolver: Resolver
) -> None:
    mem.on("GET", P1 + PATH[7:], partial(BLOB[:6000], len(BLOB)))
    mem.on("GET", P2 + PATH[7:], Reply(404))
    mem.on("GET", REG + PATH[7:], rest(6000))
    puller, seen = pull_blob(client, resolver)
    want = "peer1.test:5000, reg.test from byte 6000"
    assert puller.sources == {DESC.digest: want}
    assert seen[-1] == Status(f"layer-{DESC.digest}", "done", len(BLOB), len(BLOB), want)
    assert {s.source for s in seen if s.state == "downloading"} >= {"peer1.test:5000", want}
    with client.content.open(DESC.digest) as f:
        assert f.read() == BLOB


@pytest.mark.parametrize("mixed", [False, True])
def test_bad_bytes_from_a_peer_are_fetched_again_from_the_registry(
    client: Client, mem: MemoryTransport, resolver: Resolver, mixed: bool
) -> None:
    """A peer's bytes (all of them, or the first part before it died) do not verify: the blob
    is dropped and fetched from 0 from the registry, which is then the only host asked."""
    bad = b"Y" * 4000
    if mixed:
        mem.on("GET", P1 + PATH[7:], partial(bad, len(BLOB)))
        mem.on("GET", P2 + PATH[7:], Reply(404))
        mem.on("GET", REG + PATH[7:], rest(4000), Reply(200, BLOB))
    else:
        mem.on("GET", P1 + PATH[7:], Reply(200, bad + BLOB[4000:]))
        mem.on("GET", REG + PATH[7:], Reply(200, BLOB))
    puller, seen = pull_blob(client, resolver)
    assert puller.sources == {DESC.digest: "reg.test"}
    assert [s.state for s in seen if s.state in ("retrying", "done")] == ["retrying", "done"]
    tail = ["GET https://reg.test bytes=4000-"] if mixed else []
    peers = ["GET http://peer1.test:5000"] + (["GET http://peer2.test:5000 bytes=4000-"] if mixed else [])
    assert urls(mem) == peers + tail + ["GET https://reg.test"]
    with client.content.open(DESC.digest) as f:
        assert f.read() == BLOB


def test_bad_bytes_from_the_registry_itself_fail_once(
    client: Client, mem: MemoryTransport, resolver: Resolver
) -> None:
    mem.on("GET", P1 + PATH[7:], Reply(200, b"Z" * len(BLOB)))
    mem.on("GET", REG + PATH[7:], Reply(200, b"Z" * len(BLOB)))
    with pytest.raises(FailedPrecondition, match="the registry sent bad content"):
        pull_blob(client, resolver)
    assert urls(mem) == ["GET http://peer1.test:5000", "GET https://reg.test"]
    assert client.content.list_statuses() == []
