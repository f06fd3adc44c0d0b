"""Authentication without a registry: WWW-Authenticate parsing, scopes, credentials lookup
and storage, the token realm policy, token fetch and its cache, and the Authorizer, with
token servers and registries answered by a MemoryTransport. (The first three tests moved here
from tests/integration/test_remotes.py.)"""

from __future__ import annotations

import base64
import json
import os
from pathlib import Path
from urllib.parse import parse_qs

import pytest

from ctrstore.errdefs import NotFound, PermissionDenied, Unauthenticated, Unavailable
from ctrstore.remotes import Credentials, DockerConfig, Transport
from ctrstore.remotes.auth import Authorizer, merge_scopes, parse_www_authenticate
from ctrstore.remotes.auth.challenge import Challenge, preferred_challenge, repository_scope
from ctrstore.remotes.auth.tokens import MAX_TOKEN_TTL, TokenCache, fetch_token, may_send_secret
from ctrstore.remotes.memory import MemoryTransport, Reply
from tests.unit.remotes.conftest import FAST


def test_www_authenticate() -> None:
    chs = parse_www_authenticate(
        [
            'Bearer realm="https://auth.test/token",service="reg.test",'
            'scope="repository:a/b:pull,push",error="insufficient_scope"',
            'Basic realm="r \\"q\\"", Negotiate',
        ]
    )
    assert [c.scheme for c in chs] == ["bearer", "basic", "negotiate"]
    assert chs[0].realm == "https://auth.test/token" and chs[0].service == "reg.test"
    assert chs[0].scope == "repository:a/b:pull,push" and chs[0].error == "insufficient_scope"
    assert chs[1].realm == 'r "q"'


def test_scopes() -> None:
    assert merge_scopes(
        ["repository:b:pull", "repository:a:push", "repository:a:pull", "repository:b:pull"]
    ) == (
        "repository:a:pull,push",
        "repository:b:pull",
    )


def test_docker_config_credentials(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    cfg = tmp_path / "config.json"
    b64 = base64.b64encode(b"bob:pw:with:colons").decode()
    cfg.write_text(
        json.dumps(
            {
                "auths": {
                    "https://index.docker.io/v1/": {"auth": b64},
                    "https://reg.test:5000/": {"username": "u", "password": "p"},
                    "tok.test": {"identitytoken": "refresh-me"},
                },
                "credHelpers": {"helped.test": "fake"},
            }
        )
    )
    dc = DockerConfig(cfg)
    hub = dc.credentials("registry-1.docker.io")
    assert hub is not None and (hub.username, hub.secret) == ("bob", "pw:with:colons")
    reg = dc.credentials("reg.test:5000")
    assert reg is not None and (reg.username, reg.secret) == ("u", "p")
    tok = dc.credentials("tok.test")
    assert tok is not None and tok.is_identity_token
    assert dc.credentials("nobody.test") is None
    # A credential helper is a program reading the server on stdin.
    bindir = tmp_path / "bin"
    bindir.mkdir()
    helper = bindir / "docker-credential-fake"
    helper.write_text(
        "#!/bin/sh\nread server\n"
        'if [ "$1" = get ] && [ "$server" = helped.test ]; then\n'
        '  echo \'{"ServerURL":"helped.test","Username":"hu","Secret":"hs"}\'; exit 0; fi\n'
        "echo 'credentials not found in native keychain'; exit 1\n"
    )
    helper.chmod(0o755)
    monkeypatch.setenv("PATH", f"{bindir}:{os.environ['PATH']}")
    got = dc.credentials("helped.test")
    assert got is not None and (got.username, got.secret) == ("hu", "hs")
    assert "secret=<hidden>" in repr(got)


# -- challenges and scopes -------------------------------------------------------------------
def test_preferred_challenge_and_odd_headers() -> None:
    chs = parse_www_authenticate(["Negotiate", 'Basic realm="b", Bearer realm="https://t/x"'])
    assert [c.scheme for c in chs] == ["negotiate", "basic", "bearer"]
    assert preferred_challenge(chs) == Challenge("bearer", {"realm": "https://t/x"})
    assert preferred_challenge(parse_www_authenticate(["Basic", "Negotiate"])) == Challenge("basic")
    assert preferred_challenge(parse_www_authenticate(["Negotiate abc==", ""])) is None
    # Parameter names are case-insensitive, values keep their case; garbage ends the parse.
    (ch,) = parse_www_authenticate(['BEARER Realm="https://T/x", Service=Reg, @@@'])
    assert ch.scheme == "bearer" and ch.realm == "https://T/x" and ch.service == "Reg"


def test_scope_helpers() -> None:
    assert repository_scope("a/b") == "repository:a/b:pull"
    assert repository_scope("a/b", push=True) == "repository:a/b:pull,push"
    # Space-separated groups are split; a scope without actions is kept as it is.
    assert merge_scopes(["repository:a:pull registry:catalog:*", "x", "repository:a:pull"]) == (
        "registry:catalog:*",
        "repository:a:pull",
        "x",
    )
    assert merge_scopes([""]) == ()


# -- credentials -----------------------------------------------------------------------------
def test_docker_config_store_and_erase(tmp_path: Path) -> None:
    cfg = DockerConfig(tmp_path / "d" / "config.json")
    assert cfg.credentials("reg.test") is None and not cfg.erase("reg.test")
    cfg.store("reg.test", Credentials("u", "p:w"))
    cfg.store("docker.io", Credentials("", "identity"))
    doc = json.loads(cfg.path.read_text())
    assert base64.b64decode(doc["auths"]["reg.test"]["auth"]) == b"u:p:w"
    assert doc["auths"]["https://index.docker.io/v1/"] == {"identitytoken": "identity"}
    assert oct(cfg.path.stat().st_mode & 0o777) == "0o600"
    hub = cfg.credentials("registry-1.docker.io")
    assert hub is not None and hub.is_identity_token and hub.secret == "identity"
    assert Credentials("u", "p:w").basic() == "Basic " + base64.b64encode(b"u:p:w").decode()
    assert cfg.erase("reg.test") and cfg.credentials("reg.test") is None


def test_docker_config_matches_keys_by_host(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    path = tmp_path / "config.json"
    path.write_text(json.dumps({"auths": {"http://reg.test:5000/v2/": {"username": "a", "password": "b"}}}))
    monkeypatch.setenv("DOCKER_CONFIG", str(tmp_path))
    creds = DockerConfig().credentials("reg.test:5000")
    assert creds is not None and (creds.username, creds.secret) == ("a", "b")
    assert DockerConfig().credentials("reg.test") is None


def test_credential_helper_errors(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    bindir = tmp_path / "bin"
    bindir.mkdir()
    helper = bindir / "docker-credential-odd"
    helper.write_text("#!/bin/sh\necho 'not json'\n")
    helper.chmod(0o755)
    monkeypatch.setenv("PATH", f"{bindir}:{os.environ['PATH']}")
    path = tmp_path / "config.json"
    path.write_text(json.dumps({"credHelpers": {"odd.test": "odd", "gone.test": "gone"}}))
    cfg = DockerConfig(path)
    with pytest.raises(Unavailable, match="docker-credential-odd get: output is not JSON"):
        cfg.credentials("odd.test")
    assert cfg.credentials("gone.test") is None  # a helper that is not there knows nobody
    with pytest.raises(NotFound, match="docker-credential-gone not found in PATH"):
        cfg.store("gone.test", BOB)


# -- where a secret may go -------------------------------------------------------------------
@pytest.mark.parametrize(
    ("realm", "host", "scheme", "ok"),
    [
        ("https://auth.docker.io/token", "registry-1.docker.io", "https", True),
        ("http://reg.test:5001/token", "reg.test:5000", "http", True),  # the registry's own name
        ("http://reg.test/token", "reg.test", "https", False),  # the registry is spoken to over https
        ("http://auth.test/token", "reg.test", "http", False),  # another host in clear text
        ("http://[::1]:5001/token", "localhost:5000", "https", True),  # loopback to loopback
        ("http://localhost/token", "reg.test", "http", False),  # remote registry, loopback realm
        ("HTTP://reg.test/token", "reg.test", "http", True),
        ("http:///token", "reg.test", "http", False),
        ("data:,x", "reg.test", "http", False),
    ],
)
def test_realm_policy(realm: str, host: str, scheme: str, ok: bool) -> None:
    assert may_send_secret(realm, host, scheme) is ok


def transport(mem: MemoryTransport) -> Transport:
    return Transport(retry=FAST, round_tripper=mem, sleep=lambda s: None)


BOB = Credentials("bob", "pw", "test")


def test_fetch_token_post_then_get() -> None:
    """With a password: an OAuth2 POST first; a 404 (no OAuth endpoint) falls back to a GET
    with Basic credentials, service and every scope."""
    mem = MemoryTransport()
    mem.on("POST", "https://auth.test/token", Reply(404))
    mem.on("GET", "https://auth.test/token", Reply(200, b'{"token": "T", "expires_in": 300}'))
    ch = Challenge("bearer", {"realm": "https://auth.test/token?x=1", "service": "reg"})
    scopes = ("repository:a:pull", "repository:b:pull")
    assert fetch_token(transport(mem), ch, scopes, BOB, "reg.test") == ("T", 300.0)
    post, get = mem.requests
    assert post.method == "POST" and isinstance(post.body, bytes)
    assert parse_qs(post.body.decode()) == {
        "client_id": ["ctrstore"],
        "scope": ["repository:a:pull repository:b:pull"],
        "service": ["reg"],
        "grant_type": ["password"],
        "username": ["bob"],
        "password": ["pw"],
    }
    assert (
        get.url
        == "https://auth.test/token?x=1&service=reg&scope=repository%3Aa%3Apull&scope=repository%3Ab%3Apull"
    )
    assert get.headers["Authorization"] == BOB.basic()


def test_fetch_token_identity_token_and_anonymous() -> None:
    mem = MemoryTransport()
    mem.on("POST", "https://auth.test/token", Reply(200, b'{"access_token": "A", "expires_in": 1e400}'))
    mem.on("GET", "https://auth.test/token", Reply(200, b'{"token": "anon"}'))
    ch = Challenge("bearer", {"realm": "https://auth.test/token"})
    tok, ttl = fetch_token(transport(mem), ch, (), Credentials("", "refresh", "t"), "reg.test")
    assert (tok, ttl) == ("A", MAX_TOKEN_TTL)
    post = mem.requests[0]
    assert isinstance(post.body, bytes) and parse_qs(post.body.decode())["grant_type"] == ["refresh_token"]
    assert fetch_token(transport(mem), ch, (), None, "reg.test") == ("anon", 60.0)
    assert "Authorization" not in mem.requests[-1].headers and mem.requests[-1].method == "GET"


def test_fetch_token_refuses_clear_text_realm_before_any_request() -> None:
    mem = MemoryTransport()
    ch = Challenge("bearer", {"realm": "http://auth.test/token"})
    with pytest.raises(Unauthenticated, match="plain HTTP on another host"):
        fetch_token(transport(mem), ch, (), BOB, "reg.test", registry_scheme="http")
    assert mem.requests == []
    with pytest.raises(Unauthenticated, match="realm: invalid URL"):
        fetch_token(transport(mem), Challenge("bearer", {"realm": "ftp://x/"}), (), None, "reg.test")
    assert mem.requests == []


def test_fetch_token_errors() -> None:
    mem = MemoryTransport()
    ch = Challenge("bearer", {"realm": "https://auth.test/token"})
    mem.on("*", "https://auth.test/token", Reply(401))
    with pytest.raises(Unauthenticated, match="refused the credentials of 'bob' from test"):
        fetch_token(transport(mem), ch, (), BOB, "reg.test")
    with pytest.raises(Unauthenticated, match="requires a login"):
        fetch_token(transport(mem), ch, (), None, "reg.test")
    mem.on("POST", "https://auth.test/token", Reply(500))
    with pytest.raises(Unavailable, match=r"token server https://auth.test/token: 500"):
        fetch_token(transport(mem), ch, (), BOB, "reg.test")
    assert [r.method for r in mem.seen("/token")][-5:] == ["POST"] * 5  # 5xx retried, not re-sent as GET


# -- the token cache -------------------------------------------------------------------------
def test_token_cache_expiry_and_single_fetch() -> None:
    now = [100.0]
    cache = TokenCache(clock=lambda: now[0])
    fetched: list[str] = []

    def fetch() -> tuple[str, float]:
        fetched.append("x")
        return f"t{len(fetched)}", 60.0

    key = ("reg.test", ("repository:a:pull",))
    assert cache.get(key) is None
    assert cache.get_or_fetch(key, fetch) == "t1"
    now[0] += 54.0  # renewed TOKEN_MARGIN (5 s) before it expires
    assert cache.get_or_fetch(key, fetch) == "t1"
    now[0] += 1.5
    assert cache.get(key) is None and cache.get_or_fetch(key, fetch) == "t2"
    cache.drop(key)
    assert cache.get_or_fetch(key, fetch) == "t3"
    # A lifetime shorter than the margin still lasts a second.
    other = ("reg.test", ())
    assert cache.get_or_fetch(other, lambda: ("short", 0.5)) == "short"
    now[0] += 0.9
    assert cache.get(other) == "short"


# -- the authorizer --------------------------------------------------------------------------
def challenge(
    status: int = 401, header: str = 'Bearer realm="https://auth.test/token",service="reg"'
) -> Reply:
    return Reply(
        status, b'{"errors": [{"code": "UNAUTHORIZED", "message": "x"}]}', {"WWW-Authenticate": header}
    )


def test_authorizer_bearer_caches_per_scope_set() -> None:
    mem = MemoryTransport()
    mem.on("GET", "https://auth.test/token", Reply(200, b'{"token": "T"}'))
    auth = Authorizer(transport(mem), credentials=lambda host: None)
    host = "reg.test"
    assert auth.header(host, ["repository:a:pull"]) is None  # not challenged yet
    mem.on("GET", "https://reg.test/v2/a/manifests/1", challenge())
    r = transport(mem).request("GET", "https://reg.test/v2/a/manifests/1")
    auth.challenged(host, r, ["repository:a:pull"], None, final=False)
    assert auth.header(host, ["repository:a:pull"]) == "Bearer T"
    assert auth.header(host, ["repository:a:pull"]) == "Bearer T"
    assert len(mem.seen("/token")) == 1
    assert auth.header(host, ["repository:b:pull", "repository:a:pull"]) == "Bearer T"
    assert [r.url.split("?")[1] for r in mem.seen("/token")] == [
        "service=reg&scope=repository%3Aa%3Apull",
        "service=reg&scope=repository%3Aa%3Apull&scope=repository%3Ab%3Apull",
    ]
    # A refused token is dropped: the next header fetches a new one.
    r = transport(mem).request("GET", "https://reg.test/v2/a/manifests/1")
    auth.challenged(host, r, ["repository:a:pull"], "Bearer T", final=False)
    assert auth.header(host, ["repository:a:pull"]) == "Bearer T" and len(mem.seen("/token")) == 3


@pytest.mark.parametrize(
    ("creds", "header", "final", "error", "message"),
    [
        (None, "Basic realm=x", False, Unauthenticated, "no credentials for reg.test: run 'ctrstore login"),
        (
            None,
            'Bearer realm="https://auth.test/token"',
            True,
            Unauthenticated,
            "repository:a:pull requires a login",
        ),
        (BOB, "Basic realm=x", True, Unauthenticated, "refused the credentials of user 'bob' from test"),
        (
            BOB,
            'Bearer realm="https://a.test/t"',
            True,
            PermissionDenied,
            "'bob' is not allowed repository:a:pull",
        ),
        (
            BOB,
            'Bearer realm="https://a.test/t",error="invalid_token",error_description="expired"',
            True,
            Unauthenticated,
            "rejected the token issued for 'bob' \\(expired",
        ),
        (BOB, "Negotiate", False, Unauthenticated, "but no usable challenge"),
    ],
)
def test_authorizer_errors(
    creds: Credentials | None, header: str, final: bool, error: type[Exception], message: str
) -> None:
    mem = MemoryTransport()
    mem.on("GET", "https://reg.test/v2/a/manifests/1", challenge(header=header))
    auth = Authorizer(transport(mem), credentials=lambda host: creds)
    r = transport(mem).request("GET", "https://reg.test/v2/a/manifests/1")
    with pytest.raises(error, match=message):
        auth.challenged("reg.test", r, ["repository:a:pull"], None, final=final)


def test_authorizer_files_challenge_under_its_host_only() -> None:
    """A 401 whose URL is another host's is not filed under ``host``."""
    mem = MemoryTransport()
    mem.on("GET", "https://storage.test/blob", challenge())
    auth = Authorizer(transport(mem), credentials=lambda host: BOB)
    r = transport(mem).request("GET", "https://storage.test/blob")
    with pytest.raises(Unauthenticated, match=r"redirected to storage.test"):
        auth.challenged("reg.test", r, [], None, final=False)
    assert auth.header("reg.test", []) is None
