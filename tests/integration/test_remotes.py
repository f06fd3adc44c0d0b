"""The registry client: resolve/fetch/push and authentication against a real registry
(docker-registry, see conftest.py) and against a small fault-injecting HTTP server for what a
real registry never does. (References, hosts.toml and auth parsing: tests/unit/remotes/.)"""

from __future__ import annotations

import base64
import gzip
import hashlib
import io
import json
import os
import stat
import tarfile
import threading
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urlsplit

import pytest

from ctrstore.content import Descriptor
from ctrstore.errdefs import (
    FailedPrecondition,
    InvalidArgument,
    NotFound,
    PermissionDenied,
    Unauthenticated,
    Unavailable,
)
from ctrstore.images import mediatypes as mt
from ctrstore.remotes import Credentials, DockerConfig, Resolver, RetryPolicy, login, logout
from ctrstore.remotes.reference import parse
from tests.support.registry import RegistryServer

FAST = RetryPolicy(attempts=5, backoff=0.001, max_backoff=0.01)


def sha(b: bytes) -> str:
    return "sha256:" + hashlib.sha256(b).hexdigest()


D = "sha256:" + "ab" * 32


# -- a tiny image ----------------------------------------------------------------------------
@dataclass
class TinyImage:
    blobs: dict[str, bytes] = field(default_factory=dict)
    layer: Descriptor = field(init=False)
    config: Descriptor = field(init=False)
    manifest: Descriptor = field(init=False)
    index: Descriptor = field(init=False)

    def add(self, media_type: str, data: bytes) -> Descriptor:
        self.blobs[sha(data)] = data
        return Descriptor(media_type, sha(data), len(data))

    def data(self, d: Descriptor) -> bytes:
        return self.blobs[d.digest]


def tiny_image(seed: str = "hello") -> TinyImage:
    img = TinyImage()
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w", format=tarfile.PAX_FORMAT) as tf:
        content = (seed * 2000).encode()
        ti = tarfile.TarInfo("etc/greeting")
        ti.size = len(content)
        ti.mtime = 0
        tf.addfile(ti, io.BytesIO(content))
    tar = buf.getvalue()
    img.layer = img.add(mt.OCI_LAYER_GZIP, gzip.compress(tar, mtime=0))
    config = {
        "architecture": "amd64",
        "os": "linux",
        "config": {"Cmd": ["/bin/true"]},
        "rootfs": {"type": "layers", "diff_ids": [sha(tar)]},
    }
    img.config = img.add(mt.OCI_CONFIG, json.dumps(config).encode())
    manifest = {
        "schemaVersion": 2,
        "mediaType": mt.OCI_MANIFEST,
        "config": img.config.to_json(),
        "layers": [img.layer.to_json()],
    }
    img.manifest = img.add(mt.OCI_MANIFEST, json.dumps(manifest).encode())
    mdesc = img.manifest.to_json() | {"platform": {"os": "linux", "architecture": "amd64"}}
    index = {"schemaVersion": 2, "mediaType": mt.OCI_INDEX, "manifests": [mdesc]}
    img.index = img.add(mt.OCI_INDEX, json.dumps(index).encode())
    return img


def push_image(r: Resolver, ref: str, img: TinyImage) -> list[str]:
    p = r.pusher(ref)
    tag = parse(ref).tag
    got = [p.push(d, img.data(d)) for d in (img.layer, img.config, img.manifest)]
    got.append(p.push(img.index, img.data(img.index), tag=tag))
    return got


@pytest.fixture(scope="module")
def pushed(registry: RegistryServer) -> Iterator[tuple[str, TinyImage]]:
    img = tiny_image()
    ref = registry.ref("ctrstore/tiny:1")
    with Resolver(retry=FAST) as r:
        assert push_image(r, ref, img) == ["uploaded"] * 4
        # Pushing again finds everything; the tag is put again.
        assert push_image(r, ref, img) == ["exists", "exists", "exists", "uploaded"]
    yield ref, img


# -- the real registry -----------------------------------------------------------------------
def test_resolve_by_tag_and_digest(registry: RegistryServer, pushed: tuple[str, TinyImage]) -> None:
    ref, img = pushed
    with Resolver(retry=FAST) as r:
        name, desc = r.resolve(ref)
        assert name == ref
        assert desc == Descriptor(mt.OCI_INDEX, img.index.digest, img.index.size)
        by_digest = registry.ref(f"ctrstore/tiny@{img.manifest.digest}")
        name, desc = r.resolve(by_digest)
        assert name == by_digest and desc == img.manifest
        # Digest references also find plain blobs (containerd falls back to blobs/).
        _, desc = r.resolve(registry.ref(f"ctrstore/tiny@{img.config.digest}"))
        assert (desc.digest, desc.size) == (img.config.digest, img.config.size)
    with Resolver(plain_http=True) as r:
        assert r.resolve(ref)[1].digest == img.index.digest


def test_fetch_each_blob_and_resume(registry: RegistryServer, pushed: tuple[str, TinyImage]) -> None:
    ref, img = pushed
    with Resolver() as r:
        f = r.fetcher(ref)
        for d in (img.index, img.manifest, img.config, img.layer):
            stream, start = f.fetch(d)
            with stream:
                assert start == 0 and stream.read() == img.data(d)
        data = img.data(img.layer)
        stream, start = f.fetch(img.layer, 100)
        with stream:
            assert start == 100 and stream.read() == data[100:]
        # Closing a stream half read is fine, and the next fetch works.
        stream, _ = f.fetch(img.layer)
        assert stream.read(10) == data[:10]
        stream.close()
        with ThreadPoolExecutor(3) as pool:
            outs = list(pool.map(lambda d: f.fetch(d)[0].read(), [img.layer, img.config, img.manifest] * 3))
        assert outs == [img.data(d) for d in [img.layer, img.config, img.manifest] * 3]


def test_not_found(registry: RegistryServer, pushed: tuple[str, TinyImage]) -> None:
    ref, _ = pushed
    with Resolver() as r:
        missing = registry.ref("ctrstore/tiny:nope")
        with pytest.raises(NotFound, match=r"ctrstore/tiny:nope: not found"):
            r.resolve(missing)
        with pytest.raises(NotFound, match="ctrstore/nothing-here"):
            r.resolve(registry.ref("ctrstore/nothing-here"))
        gone = Descriptor(mt.OCI_LAYER_GZIP, sha(b"nothing"), 7)
        with pytest.raises(NotFound, match=gone.digest):
            r.fetcher(ref).fetch(gone)


def test_push_chunked_and_mount(registry: RegistryServer) -> None:
    img = tiny_image("chunky")
    with Resolver() as r:
        p = r.pusher(registry.ref("ctrstore/chunked:1"))
        p.chunked_threshold, p.chunk_size = 1000, 777
        big = os.urandom(5000)
        bd = Descriptor(mt.OCI_LAYER, sha(big), len(big))
        assert p.push(bd, io.BytesIO(big)) == "uploaded"
        assert p.exists(bd)
        stream, _ = r.fetcher(registry.ref("ctrstore/chunked:1")).fetch(bd)
        with stream:
            assert stream.read() == big
        assert push_image(r, registry.ref("ctrstore/chunked:1"), img) == ["uploaded"] * 4
        other = r.pusher(registry.ref("ctrstore/mounted:1"))
        assert other.push(bd, big, mount_from=["ctrstore/chunked"]) == "mounted"
        with pytest.raises(InvalidArgument, match="descriptor says"):
            other.push(Descriptor(mt.OCI_LAYER, sha(b"abc"), 4), b"abc")


# -- authentication (TLS + htpasswd registry) ------------------------------------------------
@pytest.fixture
def home(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    monkeypatch.setenv("HOME", str(tmp_path))
    monkeypatch.delenv("DOCKER_CONFIG", raising=False)
    return tmp_path


def write_docker_config(home: Path, host: str, user: str, password: str) -> None:
    (home / ".docker").mkdir(exist_ok=True)
    auth = base64.b64encode(f"{user}:{password}".encode()).decode()
    (home / ".docker" / "config.json").write_text(json.dumps({"auths": {host: {"auth": auth}}}))


def test_auth_required(auth_registry: RegistryServer, home: Path) -> None:
    reg = auth_registry
    with Resolver(hosts_dir=reg.hosts_dir) as r, pytest.raises(Unauthenticated, match="requires a login"):
        r.resolve(reg.ref("private/app:1"))
    write_docker_config(home, reg.host, "alice", "wrong")
    with Resolver(hosts_dir=reg.hosts_dir) as r, pytest.raises(Unauthenticated) as ei:
        r.resolve(reg.ref("private/app:1"))
    msg = str(ei.value)
    assert "refused the credentials of user 'alice'" in msg and "config.json" in msg


def test_auth_with_docker_config(auth_registry: RegistryServer, home: Path) -> None:
    reg = auth_registry
    assert reg.username and reg.password
    write_docker_config(home, reg.host, reg.username, reg.password)
    img = tiny_image("secret")
    ref = reg.ref("private/app:1")
    with Resolver(hosts_dir=reg.hosts_dir) as r:
        push_image(r, ref, img)
        assert r.resolve(ref)[1].digest == img.index.digest
        stream, _ = r.fetcher(ref).fetch(img.layer)
        with stream:
            assert stream.read() == img.data(img.layer)
    # Without the CA the certificate is not trusted.
    plain_dir = home / "certs.d" / reg.host
    plain_dir.mkdir(parents=True)
    (plain_dir / "hosts.toml").write_text(f'server = "https://{reg.host}"\n')
    with Resolver(hosts_dir=home / "certs.d") as r, pytest.raises(Unavailable, match="not trusted"):
        r.resolve(ref)
    (plain_dir / "hosts.toml").write_text(f'server = "https://{reg.host}"\nskip_verify = true\n')
    with Resolver(hosts_dir=home / "certs.d") as r:
        assert r.resolve(ref)[1].digest == img.index.digest


def test_login_logout(auth_registry: RegistryServer, home: Path) -> None:
    reg = auth_registry
    assert reg.username and reg.password
    cfg_path = home / ".docker" / "config.json"
    with pytest.raises(Unauthenticated, match="refused"):
        login(reg.host, reg.username, "wrong", hosts_dir=reg.hosts_dir)
    assert not cfg_path.exists()
    assert login(reg.host, reg.username, reg.password, hosts_dir=reg.hosts_dir) == reg.host
    assert stat.S_IMODE(cfg_path.stat().st_mode) == 0o600
    entry = json.loads(cfg_path.read_text())["auths"][reg.host]
    assert base64.b64decode(entry["auth"]).decode() == f"{reg.username}:{reg.password}"
    creds = DockerConfig().credentials(reg.host)
    assert creds is not None and creds.username == reg.username
    with Resolver(hosts_dir=reg.hosts_dir) as r, pytest.raises(NotFound):
        r.resolve(reg.ref("private/none:1"))
    logout(reg.host)
    assert reg.host not in json.loads(cfg_path.read_text())["auths"]
    with pytest.raises(NotFound, match="not logged in"):
        logout(reg.host)


# -- a fault-injecting server ----------------------------------------------------------------
Action = Callable[["_Handler"], None]


def reply(status: int, body: bytes = b"", headers: dict[str, str] | None = None) -> Action:
    def act(h: _Handler) -> None:
        h.send_response(status)
        hdrs = {"Content-Length": str(len(body)), **(headers or {})}
        for k, v in hdrs.items():
            h.send_header(k, v)
        h.end_headers()
        if h.command != "HEAD":
            h.wfile.write(body)

    return act


def truncated(body: bytes, declared: int) -> Action:
    def act(h: _Handler) -> None:
        h.send_response(200)
        h.send_header("Content-Length", str(declared))
        h.end_headers()
        h.wfile.write(body)
        h.close_connection = True

    return act


def hang_up() -> Action:
    def act(h: _Handler) -> None:
        h.close_connection = True

    return act


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    server: _Server

    def log_message(self, format: str, *args: Any) -> None:
        pass

    def _handle(self) -> None:
        n = int(self.headers.get("Content-Length") or 0)
        body = self.rfile.read(n) if n else b""
        u = urlsplit(self.path)
        fake = self.server.fake
        with fake.lock:
            fake.log.append(
                Request(self.command, u.path, parse_qs(u.query), dict(self.headers.items()), body)
            )
            queue = fake.routes.get((self.command, u.path))
            if not queue:
                queue = fake.routes.get(("*", u.path))
            act = (queue.pop(0) if len(queue) > 1 else queue[0]) if queue else reply(404)
        act(self)

    do_GET = do_HEAD = do_POST = do_PUT = do_PATCH = _handle


@dataclass
class Request:
    method: str
    path: str
    query: dict[str, list[str]]
    headers: dict[str, str]
    body: bytes


class _Server(ThreadingHTTPServer):
    daemon_threads = True
    fake: Fake


class Fake:
    """An HTTP server answering each (method, path) from a queue of actions (the last one
    repeats); everything else is 404. ``log`` has every request."""

    def __init__(self) -> None:
        self.routes: dict[tuple[str, str], list[Action]] = {}
        self.log: list[Request] = []
        self.lock = threading.Lock()
        self.srv = _Server(("127.0.0.1", 0), _Handler)
        self.srv.fake = self
        self.host = f"127.0.0.1:{self.srv.server_address[1]}"
        self.thread = threading.Thread(target=self.srv.serve_forever, args=(0.02,), daemon=True)
        self.thread.start()

    def on(self, method: str, path: str, *actions: Action) -> None:
        self.routes[(method, path)] = list(actions)

    def requests(self, path: str, method: str | None = None) -> list[Request]:
        return [r for r in self.log if r.path == path and (method is None or r.method == method)]

    def close(self) -> None:
        self.srv.shutdown()
        self.srv.server_close()


@pytest.fixture
def fake() -> Iterator[Fake]:
    f = Fake()
    yield f
    f.close()


MANIFEST = json.dumps({"schemaVersion": 2, "mediaType": mt.OCI_MANIFEST, "config": {}, "layers": []}).encode()
MD = sha(MANIFEST)


def resolver(**kw: Any) -> Resolver:
    kw.setdefault("credentials", lambda host: None)
    return Resolver(plain_http=True, retry=FAST, **kw)


def test_retry_on_server_errors(fake: Fake) -> None:
    head = {"Docker-Content-Digest": MD, "Content-Type": mt.OCI_MANIFEST}
    fake.on("HEAD", "/v2/app/manifests/1", reply(500), reply(503), reply(429, headers={"Retry-After": "0"}),
            hang_up(), reply(200, MANIFEST, head))  # fmt: skip
    with resolver() as r:
        assert r.resolve(f"{fake.host}/app:1")[1] == Descriptor(mt.OCI_MANIFEST, MD, len(MANIFEST))
    assert len(fake.requests("/v2/app/manifests/1")) == 5
    fake.on("HEAD", "/v2/app/manifests/2", reply(502))
    with resolver() as r, pytest.raises(Unavailable, match="502"):
        r.resolve(f"{fake.host}/app:2")
    assert len(fake.requests("/v2/app/manifests/2")) == 5


def test_head_fallbacks_and_content_type(fake: Fake) -> None:
    # HEAD not allowed -> GET and hash the body.
    fake.on("HEAD", "/v2/app/manifests/a", reply(405))
    fake.on(
        "GET", "/v2/app/manifests/a", reply(200, MANIFEST, {"Content-Type": mt.OCI_MANIFEST + "; charset=x"})
    )
    # No digest header -> GET and hash.
    fake.on("*", "/v2/app/manifests/b", reply(200, MANIFEST, {"Content-Type": mt.DOCKER_MANIFEST}))
    # A wrong content type: the manifest says what it is.
    fake.on(
        "*",
        "/v2/app/manifests/c",
        reply(200, MANIFEST, {"Content-Type": "text/plain", "Docker-Content-Digest": MD}),
    )
    # Not a manifest at all.
    fake.on("*", "/v2/app/manifests/d", reply(200, b"<html>hi</html>", {"Content-Type": "text/html"}))
    # A digest that does not match what was asked for.
    fake.on("*", f"/v2/app/manifests/{D}", reply(200, MANIFEST, {"Content-Type": mt.OCI_MANIFEST}))
    with resolver() as r:
        assert r.resolve(f"{fake.host}/app:a")[1] == Descriptor(mt.OCI_MANIFEST, MD, len(MANIFEST))
        assert r.resolve(f"{fake.host}/app:b")[1] == Descriptor(mt.DOCKER_MANIFEST, MD, len(MANIFEST))
        assert r.resolve(f"{fake.host}/app:c")[1] == Descriptor(mt.OCI_MANIFEST, MD, len(MANIFEST))
        with pytest.raises(FailedPrecondition, match="'text/html', which is not a manifest"):
            r.resolve(f"{fake.host}/app:d")
        with pytest.raises(FailedPrecondition, match=f"not {D}"):
            r.resolve(f"{fake.host}/app@{D}")
    accept = fake.requests("/v2/app/manifests/a", "HEAD")[0].headers["Accept"]
    assert accept.split(", ") == [
        mt.DOCKER_MANIFEST,
        mt.DOCKER_MANIFEST_LIST,
        mt.OCI_MANIFEST,
        mt.OCI_INDEX,
        "*/*",
    ]


def test_fetch_faults(fake: Fake) -> None:
    blob = bytes(range(256)) * 4
    bd = Descriptor(mt.OCI_LAYER, sha(blob), len(blob))
    path = f"/v2/app/blobs/{bd.digest}"
    with resolver() as r:
        f = r.fetcher(f"{fake.host}/app:1")
        # The body stops early: reading says so.
        fake.on("GET", path, truncated(blob[:300], len(blob)))
        stream, _ = f.fetch(bd)
        with stream, pytest.raises(Unavailable, match="after 300 of 1024 bytes"):
            stream.read()
        # Range ignored: the whole blob from 0, and the caller is told.
        fake.on("GET", path, reply(200, blob))
        stream, start = f.fetch(bd, 500)
        with stream:
            assert start == 0 and stream.read() == blob
        assert fake.log[-1].headers["Range"] == "bytes=500-"
        # A range other than the one asked for: start over.
        fake.on(
            "GET",
            path,
            reply(206, blob[400:], {"Content-Range": f"bytes 400-1023/{len(blob)}"}),
            reply(200, blob),
        )
        stream, start = f.fetch(bd, 500)
        with stream:
            assert start == 0 and stream.read() == blob
        assert "Range" not in fake.log[-1].headers
        # Proper resume.
        fake.on("GET", path, reply(206, blob[500:], {"Content-Range": f"bytes 500-1023/{len(blob)}"}))
        stream, start = f.fetch(bd, 500)
        with stream:
            assert start == 500 and stream.read() == blob[500:]
        # 500 then success.
        fake.on("GET", path, reply(500), reply(200, blob))
        stream, _ = f.fetch(bd)
        with stream:
            assert stream.read() == blob
        fake.on("GET", path, reply(403, b'{"errors":[{"code":"DENIED","message":"nope"}]}'))
        with pytest.raises(PermissionDenied, match="DENIED: nope"):
            f.fetch(bd)


def test_bearer_auth_and_redirect(fake: Fake) -> None:
    storage = Fake()
    try:
        blob = b"layer bytes" * 100
        bd = Descriptor(mt.OCI_LAYER, sha(blob), len(blob))
        challenge = {
            "WWW-Authenticate": f'Bearer realm="http://{fake.host}/token",service="fake",scope="repository:app:pull"'
        }
        token = json.dumps({"token": "T1", "expires_in": 300}).encode()
        fake.on("POST", "/token", reply(404))  # no OAuth endpoint: fall back to GET
        fake.on("GET", "/token", reply(200, token))
        path = f"/v2/app/blobs/{bd.digest}"
        fake.on("GET", path, reply(401, b"{}", challenge),
                reply(307, headers={"Location": f"http://{storage.host}/signed?x=1"}))  # fmt: skip
        storage.on("GET", "/signed", reply(200, blob))
        creds = Credentials("bob", "pw", "test")
        with resolver(credentials=lambda host: creds if host == fake.host else None) as r:
            f = r.fetcher(f"{fake.host}/app:1")
            for _ in range(3):
                stream, _ = f.fetch(bd)
                with stream:
                    assert stream.read() == blob
        posts, gets = fake.requests("/token", "POST"), fake.requests("/token", "GET")
        assert len(posts) == 1 and len(gets) == 1  # one token, cached
        form = parse_qs(posts[0].body.decode())
        assert form["grant_type"] == ["password"] and form["username"] == ["bob"]
        assert form["scope"] == ["repository:app:pull"] and form["service"] == ["fake"]
        assert gets[0].query == {"service": ["fake"], "scope": ["repository:app:pull"]}
        assert gets[0].headers["Authorization"] == "Basic " + base64.b64encode(b"bob:pw").decode()
        assert [q.headers.get("Authorization") for q in fake.requests(path)] == [
            None,
            "Bearer T1",
            "Bearer T1",
            "Bearer T1",
        ]
        # The storage host never sees the registry's credentials.
        assert [q.headers.get("Authorization") for q in storage.requests("/signed")] == [None] * 3
    finally:
        storage.close()


def test_bearer_refused(fake: Fake) -> None:
    challenge = {"WWW-Authenticate": f'Bearer realm="http://{fake.host}/token",service="fake"'}
    fake.on("HEAD", "/v2/app/manifests/1", reply(401, b"{}", challenge))
    fake.on("GET", "/token", reply(200, b'{"access_token": "anon"}'))
    with resolver() as r, pytest.raises(Unauthenticated, match=r"repository:app:pull requires a login"):
        r.resolve(f"{fake.host}/app:1")
    fake.on("POST", "/token", reply(401))
    fake.on("GET", "/token", reply(401, b'{"errors":[{"code":"UNAUTHORIZED","message":"bad password"}]}'))
    creds = Credentials("bob", "pw", "test")
    with (
        resolver(credentials=lambda host: creds) as r,
        pytest.raises(Unauthenticated, match="refused the credentials of 'bob'"),
    ):
        r.resolve(f"{fake.host}/app:1")
    fake.on("GET", "/token", reply(200, b'{"token": "weak"}'))
    with (
        resolver(credentials=lambda host: creds) as r,
        pytest.raises(PermissionDenied, match="'bob' is not allowed"),
    ):
        r.resolve(f"{fake.host}/app:1")


def test_push_scopes_and_mirror(fake: Fake, tmp_path: Path) -> None:
    challenge = {"WWW-Authenticate": f'Bearer realm="http://{fake.host}/token",service="fake"'}
    fake.on("GET", "/token", reply(200, b'{"token": "P"}'))
    fake.on("HEAD", "/v2/app/manifests/" + MD, reply(401, b"{}", challenge), reply(404))
    fake.on("PUT", "/v2/app/manifests/v1", reply(201, headers={"Docker-Content-Digest": MD}))
    fake.on("PUT", "/v2/app/manifests/" + MD, reply(201, headers={"Docker-Content-Digest": MD}))
    with resolver() as r:
        p = r.pusher(f"{fake.host}/app:v1")
        assert p.push(Descriptor(mt.OCI_MANIFEST, MD, len(MANIFEST)), MANIFEST) == "uploaded"
        assert p.push(Descriptor(mt.OCI_MANIFEST, MD, len(MANIFEST)), MANIFEST, tag="v1") == "uploaded"
    assert fake.requests("/token")[0].query["scope"] == ["repository:app:pull,push"]
    put = fake.requests("/v2/app/manifests/v1", "PUT")[0]
    assert put.headers["Content-Type"] == mt.OCI_MANIFEST and put.body == MANIFEST
    # A mirror from hosts.toml is asked first, with ?ns=<registry>, and its headers.
    d = tmp_path / "registry.test"
    d.mkdir()
    (d / "hosts.toml").write_text(
        f'server = "https://registry.test"\n[host."http://{fake.host}"]\ncapabilities = ["pull", "resolve"]\n'
        f'[host."http://{fake.host}".header]\nx-mirror = "yes"\n'
    )
    fake.on("HEAD", "/v2/team/app/manifests/1", reply(200, headers={"Docker-Content-Digest": MD,
            "Content-Type": mt.OCI_MANIFEST, "Content-Length": str(len(MANIFEST))}))  # fmt: skip
    with resolver(hosts_dir=tmp_path) as r:
        assert r.resolve("registry.test/team/app:1")[1].digest == MD
    req = fake.requests("/v2/team/app/manifests/1")[0]
    assert req.query == {"ns": ["registry.test"]} and req.headers["x-mirror"] == "yes"


def test_login_bearer(fake: Fake, tmp_path: Path) -> None:
    fake.on(
        "GET",
        "/v2/",
        reply(401, b"{}", {"WWW-Authenticate": f'Bearer realm="http://{fake.host}/token",service="s"'}),
    )
    fake.on("POST", "/token", reply(401), reply(200, b'{"access_token": "A", "refresh_token": "R"}'))
    fake.on("GET", "/token", reply(401))  # the fallback after a refused POST
    cfg = DockerConfig(tmp_path / "docker" / "config.json")
    with pytest.raises(Unauthenticated, match="refused the credentials of 'bob'"):
        login(fake.host, "bob", "bad", config=cfg, plain_http=True)
    assert not cfg.path.exists()
    assert login(fake.host, "bob", "good", config=cfg, plain_http=True) == fake.host
    form = parse_qs(fake.requests("/token", "POST")[-1].body.decode())
    assert form == {"client_id": ["ctrstore"], "service": ["s"], "grant_type": ["password"],
                    "username": ["bob"], "password": ["good"]}  # fmt: skip
    creds = cfg.credentials(fake.host)
    assert creds is not None and (creds.username, creds.secret) == ("bob", "good")


def test_unreachable() -> None:
    from tests.support.registry import free_port

    with resolver() as r, pytest.raises(Unavailable, match="5 attempts failed"):
        r.resolve(f"127.0.0.1:{free_port()}/app:1")
