"""Resolve, fetch, push and login over a MemoryTransport: the authentication loop, HTTP
fallback of a loopback registry, mirrors, and where credentials go — without a registry."""

from __future__ import annotations

import hashlib
import io
import json
from collections.abc import Iterator
from pathlib import Path

import pytest

from ctrstore.content import Descriptor
from ctrstore.errdefs import NotFound, Unauthenticated
from ctrstore.images import mediatypes as mt
from ctrstore.remotes import Credentials, DockerConfig, Resolver, Transport, login
from ctrstore.remotes.memory import MemoryTransport, Reply
from tests.unit.remotes.conftest import FAST

MANIFEST = json.dumps({"schemaVersion": 2, "mediaType": mt.OCI_MANIFEST, "config": {}, "layers": []}).encode()
MD = "sha256:" + hashlib.sha256(MANIFEST).hexdigest()
HEAD_OK = Reply(
    200,
    b"",
    {"Docker-Content-Digest": MD, "Content-Type": mt.OCI_MANIFEST, "Content-Length": str(len(MANIFEST))},
)
BOB = Credentials("bob", "pw", "test")
BASIC = {"WWW-Authenticate": 'Basic realm="r"'}


@pytest.fixture
def mem() -> MemoryTransport:
    return MemoryTransport(plain_http_only=("localhost:5000",))


@pytest.fixture
def hosts_dir(tmp_path: Path) -> Path:
    """An empty certs.d: the defaults, whatever /etc holds."""
    d = tmp_path / "certs.d"
    d.mkdir()
    return d


def resolver(
    mem: MemoryTransport, hosts_dir: Path, creds: Credentials | None = None, **kw: object
) -> Resolver:
    t = Transport(retry=FAST, round_tripper=mem, sleep=lambda s: None)
    return Resolver(transport=t, credentials=lambda host: creds, hosts_dir=hosts_dir, **kw)  # type: ignore[arg-type]


def auth_of(mem: MemoryTransport, path: str) -> list[str | None]:
    return [r.headers.get("Authorization") for r in mem.seen(path)]


def test_bearer_token_fetched_once_and_sent(mem: MemoryTransport, hosts_dir: Path) -> None:
    challenge = {"WWW-Authenticate": 'Bearer realm="https://auth.test/token",service="reg"'}
    path = "/v2/team/app/manifests/1"
    mem.on("HEAD", "https://reg.test" + path, Reply(401, b"{}", challenge), HEAD_OK)
    mem.on("POST", "https://auth.test/token", Reply(200, b'{"access_token": "T", "expires_in": 300}'))
    with resolver(mem, hosts_dir, BOB) as r:
        for _ in range(3):
            assert r.resolve("reg.test/team/app:1") == (
                "reg.test/team/app:1",
                Descriptor(mt.OCI_MANIFEST, MD, len(MANIFEST)),
            )
    assert auth_of(mem, path) == [None, "Bearer T", "Bearer T", "Bearer T"]
    assert len(mem.seen("/token")) == 1


def test_fallback_registry_gets_credentials_over_http_after_switching(
    mem: MemoryTransport, hosts_dir: Path
) -> None:
    """A loopback registry with a port and no hosts.toml: https first, then plain http for
    every request to it, the Basic credentials included; URLs it sends back (upload
    locations over http) are its own."""
    base = "http://localhost:5000/v2/app"
    blob = b"layer"
    desc = Descriptor(mt.OCI_LAYER, "sha256:" + hashlib.sha256(blob).hexdigest(), len(blob))
    mem.on("HEAD", f"{base}/blobs/{desc.digest}", Reply(401, b"{}", BASIC), Reply(404))
    mem.on("POST", f"{base}/blobs/uploads/", Reply(202, headers={"Location": f"{base}/blobs/uploads/u1?s=1"}))
    mem.on("PUT", f"{base}/blobs/uploads/u1", Reply(201))
    with resolver(mem, hosts_dir, BOB) as r:
        assert r.pusher("localhost:5000/app:1").push(desc, blob) == "uploaded"
    assert [(q.method, q.url.split("?")[0]) for q in mem.requests] == [
        ("HEAD", f"https://localhost:5000/v2/app/blobs/{desc.digest}"),
        ("HEAD", f"{base}/blobs/{desc.digest}"),
        ("HEAD", f"{base}/blobs/{desc.digest}"),
        ("POST", f"{base}/blobs/uploads/"),
        ("PUT", f"{base}/blobs/uploads/u1"),
    ]
    assert [q.headers.get("Authorization") for q in mem.requests[2:]] == [BOB.basic()] * 3
    assert mem.requests[-1].url == f"{base}/blobs/uploads/u1?s=1&digest={desc.digest.replace(':', '%3A')}"


def test_https_registry_redirected_down_to_http_gets_no_credentials(
    mem: MemoryTransport, hosts_dir: Path
) -> None:
    path = "/v2/app/manifests/1"
    mem.on(
        "HEAD",
        "https://reg.test" + path,
        Reply(401, b"{}", BASIC),
        Reply(307, headers={"Location": "http://reg.test" + path}),
    )
    mem.on("HEAD", "http://reg.test" + path, Reply(401, b"{}", BASIC))
    with (
        resolver(mem, hosts_dir, BOB) as r,
        pytest.raises(Unauthenticated, match=r"redirected to http://reg.test"),
    ):
        r.resolve("reg.test/app:1")
    assert [(q.url.split(":")[0], q.headers.get("Authorization")) for q in mem.requests] == [
        ("https", None),
        ("https", BOB.basic()),
        ("http", None),
    ]


def test_storage_redirect_that_challenges_gets_nothing(mem: MemoryTransport, hosts_dir: Path) -> None:
    blob = b"layer"
    desc = Descriptor(mt.OCI_LAYER, "sha256:" + hashlib.sha256(blob).hexdigest(), len(blob))
    mem.on("GET", f"https://reg.test/v2/app/blobs/{desc.digest}", Reply(401, b"{}", BASIC),
           Reply(307, headers={"Location": "https://storage.test/b"}))  # fmt: skip
    mem.on(
        "GET",
        "https://storage.test/b",
        Reply(401, b"{}", {"WWW-Authenticate": 'Bearer realm="https://storage.test/t"'}),
    )
    with resolver(mem, hosts_dir, BOB) as r, pytest.raises(Unauthenticated, match="only to it"):
        r.fetcher("reg.test/app:1").fetch(desc)
    assert auth_of(mem, "/b") == [None] and mem.seen("/t") == []


def test_file_body_is_sent_whole_after_a_challenge(mem: MemoryTransport, hosts_dir: Path) -> None:
    """A PUT whose first try is answered 401 goes again with credentials and the whole body
    (before, the file stayed at its end and the second try sent nothing)."""
    mem.on("PUT", "https://reg.test/v2/app/manifests/v1", Reply(401, b"{}", BASIC), Reply(201))
    data = io.BytesIO(MANIFEST)
    with resolver(mem, hosts_dir, BOB) as r:
        p = r.pusher("reg.test/app:v1")
        assert p.push(Descriptor(mt.OCI_MANIFEST, MD, len(MANIFEST)), data, tag="v1") == "uploaded"
    puts = mem.seen("/v2/app/manifests/v1", "PUT")
    assert [q.body for q in puts] == [MANIFEST, MANIFEST]
    assert [q.headers.get("Authorization") for q in puts] == [None, BOB.basic()]
    blob = b"B" * 100
    bd = Descriptor(mt.OCI_LAYER, "sha256:" + hashlib.sha256(blob).hexdigest(), len(blob))
    mem.on("POST", "https://reg.test/v2/app/blobs/uploads/", Reply(202, headers={"Location": "/up/1"}))
    mem.on(
        "PUT",
        "https://reg.test/up/1",
        Reply(401, b"{}", {"WWW-Authenticate": 'Basic realm="again"'}),
        Reply(201),
    )
    with resolver(mem, hosts_dir, BOB) as r:
        assert r.pusher("reg.test/app:v1").push(bd, io.BytesIO(blob)) == "uploaded"
    assert [q.body for q in mem.seen("/up/1", "PUT")] == [blob, blob]


def test_mirror_first_with_namespace_then_registry(mem: MemoryTransport, hosts_dir: Path) -> None:
    d = hosts_dir / "reg.test"
    d.mkdir()
    (d / "hosts.toml").write_text('[host."https://mirror.test"]\ncapabilities = ["pull", "resolve"]\n')
    mem.on("HEAD", "https://reg.test/v2/app/manifests/1", HEAD_OK)
    with resolver(mem, hosts_dir) as r:
        assert r.resolve("reg.test/app:1")[1].digest == MD
        with pytest.raises(NotFound, match=r"asked mirror.test, reg.test"):
            r.resolve("reg.test/app:2")
    assert [q.url for q in mem.requests[:2]] == [
        "https://mirror.test/v2/app/manifests/1?ns=reg.test",
        "https://reg.test/v2/app/manifests/1",
    ]


# -- login -----------------------------------------------------------------------------------
@pytest.fixture
def config(tmp_path: Path) -> Iterator[DockerConfig]:
    yield DockerConfig(tmp_path / "docker" / "config.json")


def do_login(mem: MemoryTransport, hosts_dir: Path, config: DockerConfig, host: str = "reg.test") -> str:
    t = Transport(retry=FAST, round_tripper=mem, sleep=lambda s: None)
    return login(host, "bob", "pw", config=config, hosts_dir=hosts_dir, transport=t)


def test_login_basic_and_bearer(mem: MemoryTransport, hosts_dir: Path, config: DockerConfig) -> None:
    mem.on("GET", "https://reg.test/v2/", Reply(401, b"{}", BASIC), Reply(200))
    assert do_login(mem, hosts_dir, config) == "reg.test"
    assert auth_of(mem, "/v2/") == [None, BOB.basic()]
    stored = config.credentials("reg.test")
    assert stored is not None and (stored.username, stored.secret) == ("bob", "pw")
    mem.on(
        "GET",
        "http://localhost:5000/v2/",
        Reply(401, b"{}", {"WWW-Authenticate": 'Bearer realm="http://localhost:5000/token"'}),
    )
    mem.on("POST", "http://localhost:5000/token", Reply(200, b'{"token": "t"}'))
    assert do_login(mem, hosts_dir, config, "localhost:5000") == "localhost:5000"
    assert mem.requests[-1].url == "http://localhost:5000/token" and mem.requests[-1].method == "POST"


def test_login_redirected_down_to_http_sends_no_password(
    mem: MemoryTransport, hosts_dir: Path, config: DockerConfig
) -> None:
    """https://reg.test/v2/ sends login to http://reg.test/v2/, which names a token realm on
    the same host over http: the password must not go there (the registry was asked over
    https, so clear text is not the user's choice)."""
    mem.on("GET", "https://reg.test/v2/", Reply(307, headers={"Location": "http://reg.test/v2/"}))
    mem.on(
        "GET",
        "http://reg.test/v2/",
        Reply(401, b"{}", {"WWW-Authenticate": 'Bearer realm="http://reg.test/token"'}),
    )
    mem.on("*", "http://reg.test/token", Reply(200, b'{"token": "t"}'))
    with pytest.raises(Unauthenticated, match=r"redirected to reg.test over http"):
        do_login(mem, hosts_dir, config)
    assert mem.seen("/token") == [] and not config.path.exists()
