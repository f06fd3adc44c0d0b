"""Hostile registries (issue #14, the registry client's half): credentials reach only the hosts
they were configured for, the client's limits hold, and every crafted answer, hosts.toml or
docker config.json is one clear errdefs error — through the API and through ``ctrstore pull``
(exit status 1, one line, no traceback, nothing committed).

The registries here are ``tests.integration.hostile.HostileServer``s on 127.0.0.1 and
127.0.0.2 that record what they received, so each test can assert that a password never got
where it must not go.
"""

from __future__ import annotations

import base64
import gzip
import hashlib
import io
import json
import os
import shutil
import subprocess
import sys
import tarfile
import tempfile
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from ctrstore.content import Descriptor
from ctrstore.errdefs import (
    CtrstoreError,
    InvalidArgument,
    PermissionDenied,
    Unauthenticated,
    Unavailable,
)
from ctrstore.images import mediatypes as mt
from ctrstore.remotes import Credentials, DockerConfig, Resolver, RetryPolicy, login
from ctrstore.remotes.auth import may_send_secret
from ctrstore.remotes.docker import MAX_MANIFEST_SIZE
from ctrstore.remotes.hosts import configure_hosts
from tests.support.hostile import HostileServer, Seen, make_cert, raw, redirect, reply

FAST = RetryPolicy(attempts=3, backoff=0.001, max_backoff=0.01)
USER, PASSWORD = "bob", "registry-pw-4711"
CLI_TIMEOUT = 120
NOBODY = ["setpriv", "--reuid=65534", "--regid=65534", "--clear-groups"]


def sha(b: bytes) -> str:
    return "sha256:" + hashlib.sha256(b).hexdigest()


# -- a small image a hostile registry serves -------------------------------------------------
@dataclass
class Image:
    manifest: bytes
    config: bytes
    layer: bytes

    @property
    def mdesc(self) -> Descriptor:
        return Descriptor(mt.OCI_MANIFEST, sha(self.manifest), len(self.manifest))

    @property
    def cdesc(self) -> Descriptor:
        return Descriptor(mt.OCI_CONFIG, sha(self.config), len(self.config))

    @property
    def ldesc(self) -> Descriptor:
        return Descriptor(mt.OCI_LAYER_GZIP, sha(self.layer), len(self.layer))


def tiny_image() -> Image:
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w") as t:
        data = b"hello\n"
        info = tarfile.TarInfo("hello")
        info.size = len(data)
        t.addfile(info, io.BytesIO(data))
    tar = buf.getvalue()
    layer = gzip.compress(tar, mtime=0)
    config = json.dumps(
        {
            "architecture": "amd64",
            "os": "linux",
            "config": {},
            "rootfs": {"type": "layers", "diff_ids": [sha(tar)]},
        }
    ).encode()
    manifest = json.dumps(
        {
            "schemaVersion": 2,
            "mediaType": mt.OCI_MANIFEST,
            "config": {"mediaType": mt.OCI_CONFIG, "digest": sha(config), "size": len(config)},
            "layers": [{"mediaType": mt.OCI_LAYER_GZIP, "digest": sha(layer), "size": len(layer)}],
        }
    ).encode()
    return Image(manifest, config, layer)


IMG = tiny_image()


def manifest_headers(img: Image = IMG) -> dict[str, str]:
    return {"Content-Type": mt.OCI_MANIFEST, "Docker-Content-Digest": img.mdesc.digest}


def serve(reg: HostileServer, repo: str = "app", tag: str = "1", img: Image = IMG) -> None:
    """``reg`` serves ``img`` as ``repo:tag`` without authentication."""
    for ref in (tag, img.mdesc.digest):
        reg.on("*", f"/v2/{repo}/manifests/{ref}", reply(200, img.manifest, manifest_headers(img)))
    reg.on("GET", f"/v2/{repo}/blobs/{img.cdesc.digest}", reply(200, img.config))
    reg.on("GET", f"/v2/{repo}/blobs/{img.ldesc.digest}", reply(200, img.layer))


def bearer(realm: str, service: str = "hostile") -> dict[str, str]:
    return {"WWW-Authenticate": f'Bearer realm="{realm}",service="{service}"'}


def basic() -> dict[str, str]:
    return {"WWW-Authenticate": 'Basic realm="hostile"'}


def leaked(server: HostileServer, secret: str = PASSWORD) -> list[Seen]:
    """The requests ``server`` received that carried ``secret`` in any form."""
    return [r for r in server.requests() if r.carries(secret)]


@pytest.fixture
def reg() -> Iterator[HostileServer]:
    with HostileServer("127.0.0.1") as s:
        yield s


@pytest.fixture
def other() -> Iterator[HostileServer]:
    """A second host: 127.0.0.2."""
    with HostileServer("127.0.0.2") as s:
        yield s


@pytest.fixture(scope="module")
def cert(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    if not shutil.which("openssl"):
        pytest.skip("openssl missing (needed for the TLS server)")
    return make_cert(tmp_path_factory.mktemp("hostile-cert"))


def resolver(creds_for: str | None = None, **kw: Any) -> Resolver:
    """A resolver whose only credentials are USER/PASSWORD for host ``creds_for``."""
    creds = Credentials(USER, PASSWORD, "test")
    kw.setdefault("plain_http", True)
    return Resolver(
        credentials=lambda host: creds if host == creds_for else None, retry=FAST, timeout=10, **kw
    )


# -- the CLI ---------------------------------------------------------------------------------
def cli(tmp_path: Path, *args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    e = {k: v for k, v in os.environ.items() if not k.startswith(("CTRSTORE_", "DOCKER_CONFIG"))}
    e |= {
        "CTRSTORE_ROOT": str(tmp_path / "root"),
        "CTRSTORE_STATE": str(tmp_path / "state"),
        "CTRSTORE_HOSTS_DIR": str(tmp_path / "no-certs.d"),
        "DOCKER_CONFIG": str(tmp_path / "docker"),
        **(env or {}),
    }
    return subprocess.run(
        [sys.executable, "-m", "ctrstore", *args],
        capture_output=True,
        text=True,
        env=e,
        timeout=CLI_TIMEOUT,
        stdin=subprocess.DEVNULL,
    )


def docker_login(tmp_path: Path, host: str) -> None:
    """``$DOCKER_CONFIG/config.json`` (as ``cli`` sets it) with USER/PASSWORD for ``host``."""
    d = tmp_path / "docker"
    d.mkdir(exist_ok=True)
    auth = base64.b64encode(f"{USER}:{PASSWORD}".encode()).decode()
    (d / "config.json").write_text(json.dumps({"auths": {host: {"auth": auth}}}))


def one_line_error(r: subprocess.CompletedProcess[str], kind: str) -> str:
    """The error line of a failed command, checked: exit status 1, no traceback, one line
    on stderr, of errdefs ``kind``."""
    assert r.returncode == 1, (r.returncode, r.stdout, r.stderr)
    assert "Traceback" not in r.stderr, r.stderr
    lines = [ln for ln in r.stderr.splitlines() if ln.strip()]
    errors = [ln for ln in lines if ln.startswith("ctrstore: ")]
    assert len(errors) == 1 and lines[-1] == errors[0], r.stderr
    assert errors[0].startswith(f"ctrstore: {kind}: "), errors[0]
    assert "\x1b" not in r.stderr, r.stderr
    return errors[0]


def nothing_committed(tmp_path: Path, *absent: str) -> None:
    """No image was created, and none of the ``absent`` digests is in the content store."""
    r = cli(tmp_path, "images", "ls", "-q")
    assert r.returncode == 0 and r.stdout.strip() == "", r
    r = cli(tmp_path, "content", "ls", "-q")
    assert r.returncode == 0, r
    stored = set(r.stdout.split())
    assert not stored & set(absent), stored


# == credentials =============================================================================
def test_redirect_target_challenge_gets_no_credentials(
    reg: HostileServer, other: HostileServer, tmp_path: Path
) -> None:
    """A blob GET redirected to another host that answers 401 with its own realm: the
    challenge is that host's; the registry's password goes nowhere near it."""
    serve(reg)
    reg.on("GET", f"/v2/app/blobs/{IMG.cdesc.digest}", redirect(f"http://{other.host}/storage/config"))
    other.on("GET", "/storage/config", reply(401, b"{}", bearer(f"http://{other.host}/token")))
    other.on("*", "/token", reply(200, b'{"token": "stolen"}'))
    docker_login(tmp_path, reg.host)

    r = cli(tmp_path, "pull", "--plain-http", f"{reg.host}/app:1")
    assert other.requests("/storage/config")  # the redirect was followed, without credentials
    assert leaked(other) == [] and other.requests("/token") == []
    assert all("Authorization" not in q.headers for q in other.requests())
    line = one_line_error(r, "unauthenticated")
    assert f"redirected to http://{other.host}" in line
    nothing_committed(tmp_path, IMG.cdesc.digest, IMG.ldesc.digest)

    # The same through the API, and the registry itself still gets its credentials.
    reg.on("HEAD", "/v2/app/manifests/2", reply(401, b"{}", basic()), reply(200, b"", manifest_headers()))
    with resolver(reg.host) as res:
        assert res.resolve(f"{reg.host}/app:2")[1].digest == IMG.mdesc.digest
        with pytest.raises(Unauthenticated, match="ctrstore sends the credentials of"):
            res.fetcher(f"{reg.host}/app:1").fetch(IMG.cdesc)
    assert leaked(reg), "the registry itself asked and should have had the password"
    assert leaked(other) == [] and other.requests("/token") == []


def test_login_redirected_to_other_host_sends_no_password(
    reg: HostileServer, other: HostileServer, tmp_path: Path
) -> None:
    reg.on("GET", "/v2/", redirect(f"http://{other.host}/v2/"))
    other.on("GET", "/v2/", reply(401, b"{}", bearer(f"http://{other.host}/token")))
    other.on("*", "/token", reply(200, b'{"token": "t"}'))
    cfg = DockerConfig(tmp_path / "docker" / "config.json")
    err: CtrstoreError | None = None
    try:
        login(reg.host, USER, PASSWORD, config=cfg, plain_http=True)
    except CtrstoreError as e:
        err = e
    assert leaked(other) == [] and other.requests("/token") == []
    assert isinstance(err, Unauthenticated) and "redirected to 127.0.0.2" in str(err)
    assert not cfg.path.exists()


@pytest.mark.parametrize(
    ("realm", "host", "scheme", "ok"),
    [
        ("https://auth.docker.io/token", "registry-1.docker.io", "https", True),  # Docker Hub
        ("https://auth.example.com/token", "10.0.0.5:5000", "http", True),
        ("http://auth.example.com/token", "registry.example.com", "https", False),
        ("http://auth.example.com/token", "registry.example.com", "http", False),
        ("http://registry.example.com:5001/token", "registry.example.com:5000", "http", True),
        ("http://registry.example.com/token", "registry.example.com", "https", False),  # downgrade
        ("http://127.0.0.1:5001/token", "127.0.0.1:5000", "http", True),  # a local test setup
        ("http://localhost:5001/token", "127.0.0.1:5000", "https", True),
        ("http://127.0.0.1:5001/token", "registry.example.com", "http", False),  # remote -> loopback
        ("http://0.0.0.0:5001/token", "127.0.0.1:5000", "http", False),
        ("ftp://registry.example.com/token", "registry.example.com", "http", False),
    ],
)
def test_secret_policy(realm: str, host: str, scheme: str, ok: bool) -> None:
    assert may_send_secret(realm, host, scheme) is ok


def test_http_realm_on_other_host_gets_no_password(reg: HostileServer, tmp_path: Path) -> None:
    """The registry names a plain-HTTP token realm on another host. ``0.0.0.0`` reaches this
    machine (so ``tokens`` can record what a remote token server would get) but is neither a
    loopback address nor the registry's host name: for the policy it is another host."""
    with HostileServer("127.0.0.1") as tokens:
        realm = f"http://0.0.0.0:{tokens.host.split(':')[1]}/token"
        reg.on("HEAD", "/v2/app/manifests/1", reply(401, b"{}", bearer(realm)))
        tokens.on("*", "/token", reply(200, b'{"token": "t"}'))
        docker_login(tmp_path, reg.host)
        r = cli(tmp_path, "pull", "--plain-http", f"{reg.host}/app:1")
        assert leaked(tokens) == [] and tokens.requests() == []
        line = one_line_error(r, "unauthenticated")
        assert "plain HTTP on another host" in line and "must use https" in line
        nothing_committed(tmp_path)
        # Without credentials the (anonymous) token request is made: only secrets are held back.
        with resolver(None) as res, pytest.raises(Unauthenticated, match="requires a login"):
            res.resolve(f"{reg.host}/app:1")
        assert tokens.requests("/token") and leaked(tokens) == []


def test_https_realm_on_other_host_works(
    reg: HostileServer, cert: tuple[Path, Path], monkeypatch: pytest.MonkeyPatch
) -> None:
    """Docker Hub's shape: the registry on one host, its token server on another, over https.
    The password goes there (and only there); the registry gets the token."""
    monkeypatch.setenv("SSL_CERT_FILE", str(cert[0]))
    with HostileServer("127.0.0.2", tls=cert) as tokens:
        tokens.on("POST", "/token", reply(200, b'{"access_token": "good-token", "expires_in": 300}'))

        def manifest(q: Seen) -> Any:
            if q.headers.get("Authorization") == "Bearer good-token":
                return reply(200, b"", {**manifest_headers(), "Content-Length": str(len(IMG.manifest))})
            return reply(401, b"{}", bearer(f"https://{tokens.host}/token"))

        reg.on_call("HEAD", "/v2/app/manifests/1", manifest)
        with resolver(reg.host) as res:
            assert res.resolve(f"{reg.host}/app:1")[1] == IMG.mdesc
        posts = tokens.requests("/token", "POST")
        assert len(posts) == 1 and posts[0].scheme == "https" and posts[0].carries(PASSWORD)
        assert leaked(reg) == []


def test_https_to_http_same_host_drops_credentials(reg: HostileServer, cert: tuple[Path, Path]) -> None:
    """https://H redirects to http://H (same host and port): neither the Authorization header
    nor a token request's password follows it."""
    with HostileServer("127.0.0.1", tls=cert) as dual:

        def head(q: Seen) -> Any:
            if q.scheme == "http":
                return reply(401, b"{}", basic())
            if "Authorization" not in q.headers:
                return reply(401, b"{}", basic())
            return redirect(f"http://{dual.host}{q.path}")

        dual.on_call("HEAD", "/v2/app/manifests/1", head)
        with resolver(dual.host, plain_http=False) as res, pytest.raises(Unauthenticated):
            res.resolve(f"{dual.host}/app:1")
        https = [q for q in dual.requests() if q.scheme == "https"]
        assert any(q.headers.get("Authorization") for q in https)  # the registry itself got it
        plain = [q for q in dual.requests() if q.scheme == "http"]
        assert plain and all(not q.carries(PASSWORD) and "Authorization" not in q.headers for q in plain)


def test_token_request_not_redirected_down_to_http(
    reg: HostileServer, cert: tuple[Path, Path], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("SSL_CERT_FILE", str(cert[0]))
    with HostileServer("127.0.0.1", tls=cert) as dual:
        reg.on("HEAD", "/v2/app/manifests/1", reply(401, b"{}", bearer(f"https://{dual.host}/token")))

        def token(q: Seen) -> Any:
            if q.scheme == "https":
                return redirect(f"http://{dual.host}/token", 307)
            return reply(200, b'{"token": "t"}')

        dual.on_call("*", "/token", token)
        with resolver(reg.host) as res, pytest.raises(CtrstoreError) as e:
            res.resolve(f"{reg.host}/app:1")
        assert [q for q in dual.requests() if q.scheme == "http"] == []
        assert leaked(dual) == dual.requests()  # the https POST, and nothing else
        assert isinstance(e.value, Unauthenticated) and "does not follow it" in str(e.value)


# == limits ==================================================================================
def test_manifest_too_large_announced_by_head(reg: HostileServer, tmp_path: Path) -> None:
    big = json.dumps(
        {
            "schemaVersion": 2,
            "mediaType": mt.OCI_MANIFEST,
            "config": IMG.cdesc.to_json(),
            "layers": [],
            "annotations": {"pad": "x" * (MAX_MANIFEST_SIZE + 10)},
        }
    ).encode()
    hdrs = {"Content-Type": mt.OCI_MANIFEST, "Docker-Content-Digest": sha(big)}
    reg.on("HEAD", "/v2/app/manifests/1", reply(200, big, hdrs))
    reg.on("GET", f"/v2/app/manifests/{sha(big)}", reply(200, big, hdrs))
    with resolver() as res, pytest.raises(InvalidArgument, match=f"accepts at most {MAX_MANIFEST_SIZE}"):
        res.resolve(f"{reg.host}/app:1")
    r = cli(tmp_path, "pull", "--plain-http", f"{reg.host}/app:1")
    assert f"a manifest of {len(big)} bytes" in one_line_error(r, "invalid argument")
    assert reg.requests(f"/v2/app/manifests/{sha(big)}") == []  # never downloaded
    nothing_committed(tmp_path, sha(big))
    # A descriptor naming such a manifest, or an absurd size, or a digest that is not one, is
    # refused before any request.
    with resolver() as res:
        f = res.fetcher(f"{reg.host}/app:1")
        with pytest.raises(InvalidArgument, match="accepts at most"):
            f.fetch(Descriptor(mt.OCI_MANIFEST, sha(big), len(big)))
        with pytest.raises(InvalidArgument, match="invalid size"):
            f.fetch(Descriptor(mt.OCI_LAYER, sha(big), 1 << 64))
        with pytest.raises(InvalidArgument, match="invalid digest"):
            f.fetch(Descriptor(mt.OCI_LAYER, "sha256:../../../v2/other/blobs/x", 10))
    assert len(reg.requests()) == 2  # the HEADs of the two resolves above


@pytest.mark.parametrize(
    "value",
    ["-5", "NaN", "nan", "-inf", "1e400", "99999999999999999999999", "Fri, 31 Dec 9999 23:59:59 GMT", "x"],
)
def test_hostile_retry_after(reg: HostileServer, value: str) -> None:
    """Negative, NaN, huge or nonsense Retry-After values: clamped or ignored, never a crash
    or a long wait (FAST caps waits at 0.01 s)."""
    reg.on("HEAD", "/v2/app/manifests/1", reply(503, headers={"Retry-After": value}),
           reply(200, b"", {**manifest_headers(), "Content-Length": str(len(IMG.manifest))}))  # fmt: skip
    with resolver() as res:
        assert res.resolve(f"{reg.host}/app:1")[1] == IMG.mdesc
    assert len(reg.requests("/v2/app/manifests/1")) == 2


def test_retry_after_is_clamped() -> None:
    p = RetryPolicy(backoff=0.5, max_backoff=8.0)
    assert p.delay(0, "3") == 3.0
    assert p.delay(0, "99999999999999999999") == 8.0
    assert p.delay(0, "Fri, 31 Dec 9999 23:59:59 GMT") == 8.0
    assert p.delay(0, "Thu, 01 Jan 1970 00:00:00 GMT") == 0.0
    for bad in ("-5", "NaN", "1e400", "1.5", "", "soon"):
        assert 0.375 <= p.delay(0, bad) <= 0.625, bad  # the backoff with jitter


@pytest.mark.parametrize(
    ("header", "value", "message"),
    [
        ("Content-Length", str(1 << 64), "invalid size"),
        ("Content-Length", str(1 << 63), "invalid size"),
        ("Content-Length", "-1", "invalid size"),
        ("Content-Length", "1_000", "invalid size"),
        ("Content-Length", "+5", "invalid size"),
        ("Content-Length", "0x10", "invalid size"),
        ("Docker-Content-Digest", "sha256:../../../../v2/other/manifests/x", "invalid digest"),
        ("Docker-Content-Digest", "sha256:" + "A" * 64, "invalid digest"),
        ("Docker-Content-Digest", "md5:d41d8cd98f00b204e9800998ecf8427e", "invalid digest"),
    ],
)
def test_hostile_head_sizes_and_digests(reg: HostileServer, header: str, value: str, message: str) -> None:
    hdrs = {**manifest_headers(), "Content-Length": str(len(IMG.manifest)), header: value}
    reg.on("HEAD", "/v2/app/manifests/1", reply(200, b"", hdrs))
    with resolver() as res, pytest.raises(InvalidArgument, match=message):
        res.resolve(f"{reg.host}/app:1")


@pytest.mark.parametrize(
    ("offset", "status", "headers", "message"),
    [
        (0, 206, {"Content-Range": "bytes 5-10/1024"}, "is not bytes 0-1023/1024"),  # was endless
        (500, 206, {"Content-Range": "bytes 500-1023/99999999999999999999999"}, "invalid Content-Range"),
        (500, 206, {"Content-Range": "bytes 500-600/1024"}, "is not bytes 500-1023/1024"),
        (500, 206, {"Content-Range": "bytes 500-1023/2048"}, "is not bytes 500-1023/1024"),
        (500, 206, {"Content-Range": "bytes \u0665\u0660\u0660-1023/1024"}, "invalid Content-Range"),
        (0, 200, {"Content-Length": str(1 << 64)}, "invalid size"),
        (0, 200, {"Content-Length": "4096"}, "announces 4096 bytes"),
    ],
)
def test_hostile_range_answers(
    reg: HostileServer, offset: int, status: int, headers: dict[str, str], message: str
) -> None:
    blob = bytes(range(256)) * 4
    desc = Descriptor(mt.OCI_LAYER, sha(blob), len(blob))
    # Content-Range values are latin-1 on the wire; raw() writes the non-ASCII digits as UTF-8.
    head = f"HTTP/1.1 {status} X\r\n" + "".join(f"{k}: {v}\r\n" for k, v in headers.items())
    if "Content-Length" not in headers:
        head += f"Content-Length: {len(blob) - offset}\r\n"
    reg.on("GET", f"/v2/app/blobs/{desc.digest}", raw(head.encode(), blob[offset:]))
    with resolver() as res, pytest.raises(InvalidArgument, match=message):
        res.fetcher(f"{reg.host}/app:1").fetch(desc, offset)
    assert len(reg.requests(f"/v2/app/blobs/{desc.digest}")) <= 2


@pytest.mark.parametrize(
    ("head", "message"),
    [
        (b"HTTP/1.1 307 X\r\nLocation: http://127.0.0.1:99999/x\r\nContent-Length: 0", "Port out of range"),
        (b"HTTP/1.1 307 X\r\nLocation: http://127.0.0.2:1/a\r\n b\r\nContent-Length: 0", "control"),
        (b"HTTP/1.1 307 X\r\nLocation: http://127.0.0.2:1/\x7fx\r\nContent-Length: 0", "control"),
        (b"HTTP/1.1 307 X\r\nLocation: file:///etc/passwd\r\nContent-Length: 0", "want http"),
        (b"HTTP/1.1 307 X\r\nLocation: http://user:pw@127.0.0.2:1/\r\nContent-Length: 0", "user:password"),
        (b"HTTP/1.1 307 X\r\nLocation: http://[::1/x\r\nContent-Length: 0", "invalid URL"),
    ],
)
def test_hostile_redirect_locations(
    reg: HostileServer, other: HostileServer, head: bytes, message: str
) -> None:
    reg.on("HEAD", "/v2/app/manifests/1", raw(head))
    with resolver() as res, pytest.raises(InvalidArgument, match=message):
        res.resolve(f"{reg.host}/app:1")
    assert len(reg.requests("/v2/app/manifests/1")) == 1  # refused at once, not retried


def test_hostile_redirect_location_through_cli(reg: HostileServer, tmp_path: Path) -> None:
    reg.on("HEAD", "/v2/app/manifests/1", redirect("http://127.0.0.1:99999/x"))
    r = cli(tmp_path, "pull", "--plain-http", f"{reg.host}/app:1")
    assert "redirect: invalid URL" in one_line_error(r, "invalid argument")
    nothing_committed(tmp_path)


@pytest.mark.parametrize("location", ["http://127.0.0.1:99999/upload", "gopher://x/", "/up load"])
def test_hostile_upload_location(reg: HostileServer, location: str) -> None:
    blob = b"some layer"
    desc = Descriptor(mt.OCI_LAYER, sha(blob), len(blob))
    reg.on("HEAD", f"/v2/app/blobs/{desc.digest}", reply(404))
    reg.on("POST", "/v2/app/blobs/uploads/", reply(202, headers={"Location": location}))
    with resolver() as res, pytest.raises(InvalidArgument, match="upload: Location"):
        res.pusher(f"{reg.host}/app:1").push(desc, blob)
    assert [q.method for q in reg.requests()] == ["HEAD", "POST"]


# == validation of hosts.toml and docker config.json =========================================
HOSTS_CASES: list[tuple[str, bytes, str]] = [
    ("not-utf8", b'server = "http://h"\n# \xff\xfe\n', r"not UTF-8"),
    ("header-string", b'[host."http://h"]\nheader = "x-a: 1"\n', r"header of http://h must be a table"),
    (
        "header-table",
        b'[host."http://h".header]\nx-a = {b = 1}\n',
        r"header 'x-a' of http://h must be a string",
    ),
    (
        "header-crlf",
        b'[host."http://h".header]\nx-a = "1\\r\\nX-Injected: 2"\n',
        r"header 'x-a' has a control",
    ),
    ("header-lf-list", b'[host."http://h".header]\nx-a = ["1", "2\\n3"]\n', r"header 'x-a' has a control"),
    ("header-name", b'[host."http://h".header]\n"x a" = "1"\n', r"invalid header name 'x a'"),
    ("dial-inf", b'[host."http://h"]\ndial_timeout = "1e999s"\n', r"invalid dial_timeout"),
    ("dial-huge", b'[host."http://h"]\ndial_timeout = 1e300\n', r"invalid dial_timeout"),
    ("dial-nan", b'[host."http://h"]\ndial_timeout = nan\n', r"invalid dial_timeout"),
    ("dial-negative", b'[host."http://h"]\ndial_timeout = "-5s"\n', r"invalid dial_timeout"),
    ("dial-bool", b'[host."http://h"]\ndial_timeout = true\n', r"invalid dial_timeout"),
    (
        "override-string",
        b'[host."http://h"]\noverride_path = "no"\n',
        r"override_path of http://h must be true",
    ),
    ("skip-verify-int", b'[host."http://h"]\nskip_verify = 1\n', r"skip_verify of http://h must be true"),
    ("nesting", b"a = " + b"[" * 3000 + b"]" * 3000 + b"\n", r"nested too deeply"),
    ("bad-ipv6", b'server = "https://[::1"\n', r"host: invalid URL"),
    ("bad-port", b'server = "http://127.0.0.1:99999"\n', r"Port out of range"),
    ("userinfo", b'[host."https://u:p@mirror"]\n', r"user:password"),
    ("url-space", b'[host."https://mir ror"]\n', r"spaces, control"),
    ("ca-nul", b'[host."https://h"]\nca = "a\\u0000b"\n', r"ca must be a path"),
    ("client-nul", b'[host."https://h"]\nclient = [["a\\u0000", "k"]]\n', r"bad client entry"),
]


@pytest.mark.parametrize(("name", "text", "message"), HOSTS_CASES, ids=[c[0] for c in HOSTS_CASES])
def test_hosts_toml_is_type_checked(tmp_path: Path, name: str, text: bytes, message: str) -> None:
    d = tmp_path / "certs.d" / "registry.test"
    d.mkdir(parents=True)
    (d / "hosts.toml").write_bytes(text)
    with pytest.raises(InvalidArgument, match=message) as e:
        configure_hosts("registry.test", hosts_dir=tmp_path / "certs.d")
    assert str(d / "hosts.toml") in str(e.value)


def test_hosts_toml_durations(tmp_path: Path) -> None:
    d = tmp_path / "registry.test"
    d.mkdir()
    for given, want in (('"1m30s"', 90.0), ('"500ms"', 0.5), ('"2h"', 7200.0), ("7", 7.0), ('"1.5s"', 1.5)):
        (d / "hosts.toml").write_text(f'server = "https://registry.test"\ndial_timeout = {given}\n')
        assert configure_hosts("registry.test", hosts_dir=tmp_path)[0].dial_timeout == want


def test_hosts_toml_crlf_header_through_cli(reg: HostileServer, tmp_path: Path) -> None:
    d = tmp_path / "certs.d" / reg.host
    d.mkdir(parents=True)
    (d / "hosts.toml").write_text(
        f'server = "http://{reg.host}"\n[header]\nx-a = "1\\r\\nAuthorization: Basic Ym9iOnB3"\n'
    )
    serve(reg)
    r = cli(tmp_path, "pull", "--hosts-dir", str(tmp_path / "certs.d"), f"{reg.host}/app:1")
    line = one_line_error(r, "invalid argument")
    assert str(d / "hosts.toml") in line and "'x-a'" in line
    assert reg.requests() == []
    nothing_committed(tmp_path)


DOCKER_CASES: list[tuple[str, bytes, str]] = [
    ("not-utf8", b'{"auths": {"h": {"auth": "\xff"}}}', r"not UTF-8"),
    ("nesting", b'{"auths": ' + b"[" * 5000 + b"]" * 5000 + b"}", r"nested too deeply"),
    ("auths-list", b'{"auths": []}', r"auths must be an object"),
    ("entry-string", b'{"auths": {"h": "x"}}', r"auths\['h'\] must be an object"),
    ("auth-number", b'{"auths": {"h": {"auth": 5}}}', r"auths\['h'\]\.auth must be a string"),
    (
        "token-list",
        b'{"auths": {"h": {"identitytoken": ["a"]}}}',
        r"auths\['h'\]\.identitytoken must be a string",
    ),
    ("helpers-list", b'{"credHelpers": []}', r"credHelpers must be an object"),
    ("helper-path", b'{"credHelpers": {"h": "../../bin/sh"}}', r"credHelpers\['h'\] must be a helper name"),
    ("store-number", b'{"credsStore": 5}', r"credsStore must be a helper name"),
]


@pytest.mark.parametrize(("name", "text", "message"), DOCKER_CASES, ids=[c[0] for c in DOCKER_CASES])
def test_docker_config_is_type_checked(tmp_path: Path, name: str, text: bytes, message: str) -> None:
    path = tmp_path / "config.json"
    path.write_bytes(text)
    cfg = DockerConfig(path)
    with pytest.raises(InvalidArgument, match=message) as e:
        cfg.credentials("h")
    assert str(path) in str(e.value)
    with pytest.raises(InvalidArgument):  # and it is not overwritten
        cfg.store("h", Credentials("u", "p"))
    assert path.read_bytes() == text


def test_docker_config_null_auths_and_cli(reg: HostileServer, tmp_path: Path) -> None:
    path = tmp_path / "docker" / "config.json"
    path.parent.mkdir()
    path.write_text('{"auths": null, "credsStore": ""}')
    reg.on("GET", "/v2/", reply(401, b"{}", basic()), reply(200, b"{}"))
    assert login(reg.host, USER, PASSWORD, config=DockerConfig(path), plain_http=True) == reg.host
    creds = DockerConfig(path).credentials(reg.host)
    assert creds is not None and creds.secret == PASSWORD
    path.write_bytes(b'{"auths": {"\xff": {}}}')
    r = cli(tmp_path, "logout", reg.host)
    assert f"{path}: not UTF-8" in one_line_error(r, "invalid argument")


def _nobody_can_run_ctrstore() -> str | None:
    """Why the permission tests cannot run here, or None."""
    if os.geteuid() != 0:
        return "needs root (to drop to nobody)"
    if not shutil.which("setpriv"):
        return "setpriv missing"
    probe = subprocess.run(
        [*NOBODY, sys.executable, "-c", "import ctrstore.remotes"], capture_output=True, timeout=60
    )
    return None if probe.returncode == 0 else "user nobody cannot import ctrstore from this tree"


def test_permission_errors_are_one_line() -> None:
    """An unreadable docker config or CA certificate (run as nobody: root reads anything)."""
    why = _nobody_can_run_ctrstore()
    if why:
        pytest.skip(why)
    # pytest's own tmp_path is under a 0700 directory: nobody could not even look in.
    with tempfile.TemporaryDirectory(prefix="ctrstore-perm-") as top:
        base = Path(top)
        base.chmod(0o755)
        docker = base / "docker"
        docker.mkdir(mode=0o755)
        (docker / "config.json").write_text("{}")
        (docker / "config.json").chmod(0o600)
        certs = base / "certs.d" / "registry.test"
        certs.mkdir(parents=True)
        for d in (base / "certs.d", certs):
            d.chmod(0o755)
        (certs / "hosts.toml").write_text('server = "https://registry.test"\nca = "ca.pem"\n')
        (certs / "hosts.toml").chmod(0o644)
        (certs / "ca.pem").write_text("not even a certificate\n")
        (certs / "ca.pem").chmod(0o600)

        def as_nobody(*args: str) -> subprocess.CompletedProcess[str]:
            env = {"PATH": os.environ.get("PATH", "/usr/bin:/bin"), "DOCKER_CONFIG": str(docker), "HOME": top}
            cmd = [*NOBODY, sys.executable, "-m", "ctrstore", *args]
            return subprocess.run(
                cmd,
                capture_output=True,
                text=True,
                env=env,
                timeout=CLI_TIMEOUT,
                stdin=subprocess.DEVNULL,
                cwd=top,
            )

        line = one_line_error(as_nobody("logout", "registry.test"), "permission denied")
        assert f"{docker / 'config.json'}: Permission denied" in line
        r = as_nobody("login", "--hosts-dir", str(base / "certs.d"), "-u", "u", "-p", "p", "registry.test")
        line = one_line_error(r, "permission denied")
        assert f"cannot load CA certificate {certs / 'ca.pem'}: Permission denied" in line


# == registry answers ========================================================================
TOKEN_CASES: list[tuple[str, bytes, str]] = [
    ("nested", b"[" * 5000 + b"]" * 5000, "not JSON"),
    ("list", b'["t"]', "not a JSON object"),
    ("token-list", b'{"token": ["t"]}', "not a string"),
    ("token-number", b'{"token": 5}', "not a string"),
    ("token-crlf", b'{"token": "t\\r\\nX-Injected: 1"}', "visible ASCII"),
    ("token-space", b'{"token": "a b"}', "visible ASCII"),
    ("token-huge", b'{"token": "' + b"t" * 70000 + b'"}', "visible ASCII"),
    ("not-json", b"<html>", "not JSON"),
]


@pytest.mark.parametrize(("name", "body", "message"), TOKEN_CASES, ids=[c[0] for c in TOKEN_CASES])
def test_hostile_token_replies(reg: HostileServer, name: str, body: bytes, message: str) -> None:
    reg.on("HEAD", "/v2/app/manifests/1", reply(401, b"{}", bearer(f"http://{reg.host}/token")))
    reg.on("*", "/token", reply(200, body))
    with resolver() as res, pytest.raises(Unavailable, match=f"token server .*{message}"):
        res.resolve(f"{reg.host}/app:1")
    assert not any("Injected" in k for q in reg.requests() for k in q.headers)


@pytest.mark.parametrize("expires", ["NaN", "1e400", "-5", '"300"', "true", "[1]"])
def test_token_lifetime_is_clamped(reg: HostileServer, expires: str) -> None:
    def head(q: Seen) -> Any:
        if q.headers.get("Authorization") == "Bearer t":
            return reply(200, b"", {**manifest_headers(), "Content-Length": str(len(IMG.manifest))})
        return reply(401, b"{}", bearer(f"http://{reg.host}/token"))

    reg.on_call("HEAD", "/v2/app/manifests/1", head)
    reg.on("*", "/token", reply(200, b'{"token": "t", "expires_in": ' + expires.encode() + b"}"))
    with resolver() as res:
        assert res.resolve(f"{reg.host}/app:1")[1] == IMG.mdesc
        assert res.resolve(f"{reg.host}/app:1")[1] == IMG.mdesc
    assert len(reg.requests("/token")) == 1  # cached: a lifetime of at least a second


@pytest.mark.parametrize(
    ("realm", "message"),
    [
        ("http://[::1/token", "invalid URL"),
        ("http://127.0.0.1:99999/token", "Port out of range"),
        ("http://127.0.0.1:1/to ken", "spaces, control"),
        ("file:///etc/passwd", "want http"),
    ],
)
def test_hostile_realms(reg: HostileServer, realm: str, message: str) -> None:
    reg.on("HEAD", "/v2/app/manifests/1", reply(401, b"{}", bearer(realm)))
    for creds_for in (None, reg.host):
        with resolver(creds_for) as res, pytest.raises(Unauthenticated, match=f"realm: {message}|{message}"):
            res.resolve(f"{reg.host}/app:1")


def test_folded_realm_with_crlf(reg: HostileServer) -> None:
    reg.on("HEAD", "/v2/app/manifests/1", raw(
        b'HTTP/1.1 401 X\r\nWWW-Authenticate: Bearer realm="http://127.0.0.1:1/a\r\n X-Injected: 1"\r\n'
        b"Content-Length: 0"))  # fmt: skip
    with resolver(reg.host) as res, pytest.raises(Unauthenticated, match="spaces, control"):
        res.resolve(f"{reg.host}/app:1")


@pytest.mark.parametrize(
    ("status", "body", "cls"),
    [
        (403, b'{"errors": ' + b"[" * 5000 + b"]" * 5000 + b"}", PermissionDenied),
        (404, b"[" * 5000 + b"]" * 5000, None),
        (400, b'{"errors": [{"code": "X\\u001b[2J", "message": "a\\nb\\r\\nc\\u2028d"}]}', InvalidArgument),
        (403, b'{"errors": [{"code": 1, "message": {"a": 1}}, "x", null]}', PermissionDenied),
    ],
)
def test_hostile_error_bodies(
    reg: HostileServer, status: int, body: bytes, cls: type[CtrstoreError] | None
) -> None:
    blob = b"layer"
    desc = Descriptor(mt.OCI_LAYER, sha(blob), len(blob))
    reg.on("GET", f"/v2/app/blobs/{desc.digest}", reply(status, body))
    with resolver() as res, pytest.raises(CtrstoreError) as e:
        res.fetcher(f"{reg.host}/app:1").fetch(desc)
    if cls is not None:
        assert isinstance(e.value, cls)
    msg = str(e.value)
    assert "\n" not in msg and "\r" not in msg and "\x1b" not in msg and "\u2028" not in msg, msg


def test_hostile_error_body_through_cli(reg: HostileServer, tmp_path: Path) -> None:
    body = b'{"errors": [{"code": "DENIED", "message": "line one\\nline two\\u001b[2J\\u001b[31mred"}]}'
    reg.on("HEAD", "/v2/app/manifests/1", reply(200, b"", {**manifest_headers(), "Content-Length": "100"}))
    reg.on("GET", f"/v2/app/manifests/{IMG.mdesc.digest}", reply(403, body))
    r = cli(tmp_path, "pull", "--plain-http", f"{reg.host}/app:1")
    line = one_line_error(r, "permission denied")
    assert "line one\\nline two" in line
    nothing_committed(tmp_path)


def test_header_with_crlf_from_the_api_is_refused(reg: HostileServer) -> None:
    serve(reg)
    headers = {"X-A": "1\r\nX-Injected: 2"}
    with (
        Resolver(plain_http=True, headers=headers, retry=FAST, credentials=lambda h: None) as res,
        pytest.raises(InvalidArgument, match="header 'X-A' has a control"),
    ):
        res.resolve(f"{reg.host}/app:1")
    assert reg.requests() == []
