"""push and pull against a docker-registry using token (Bearer) authentication, with the token
server of ``conftest.token_server``: credentials from the Docker config, token caching, scopes,
and the errors without or with wrong credentials."""

from __future__ import annotations

import base64
from collections.abc import Iterator
from pathlib import Path

import pytest

from ctrstore import Client, Unauthenticated
from ctrstore.remotes import login
from ctrstore.remotes.auth import DockerConfig
from tests.support.images import busybox_image
from tests.support.registry import TOKEN_PASSWORD, TOKEN_USER, RegistryServer, TokenServer

pytestmark = pytest.mark.root

REPO = "token/busybox"


def tokens(registry: RegistryServer) -> TokenServer:
    assert registry.token_server is not None
    return registry.token_server


def use_home(monkeypatch: pytest.MonkeyPatch, home: Path) -> None:
    """Point ``~/.docker/config.json`` into ``home`` (no credentials yet)."""
    monkeypatch.setenv("HOME", str(home))
    monkeypatch.delenv("DOCKER_CONFIG", raising=False)


@pytest.fixture(scope="module")
def pushed(
    tmp_path_factory: pytest.TempPathFactory, token_registry: RegistryServer
) -> Iterator[tuple[str, list[str]]]:
    """busybox pushed to ``REPO`` by TOKEN_USER after ``login``; the scopes of the token
    requests made by the push."""
    tmp = tmp_path_factory.mktemp("token-push")
    ts = tokens(token_registry)
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("HOME", str(tmp / "home"))
        mp.delenv("DOCKER_CONFIG", raising=False)
        key = login(token_registry.host, TOKEN_USER, TOKEN_PASSWORD)
        assert key == token_registry.host
        assert DockerConfig().credentials(token_registry.host) is not None
        src = Client(root=tmp / "root", state=tmp / "state")
        ref = token_registry.ref(f"{REPO}:1")
        busybox_image(src.content, src.images, ref)
        mark = ts.mark()
        outcomes = src.push(ref)
        reqs = ts.since(mark)
        src.close()
    assert {o for _, o in outcomes} == {"uploaded"}
    assert reqs and all(r.user == TOKEN_USER and r.status == 200 for r in reqs), reqs
    yield ref, [s for r in reqs for s in r.scopes]


def test_signing_key_id_is_libtrust_format(token_registry: RegistryServer) -> None:
    kid = tokens(token_registry).kid
    groups = kid.split(":")
    assert len(groups) == 12 and all(len(g) == 4 for g in groups), kid


def test_push_asks_for_push_scope(pushed: tuple[str, list[str]]) -> None:
    _, scopes = pushed
    assert f"repository:{REPO}:pull,push" in scopes, scopes


def test_pull_with_token_unpacks_and_caches_token(
    client: Client, tmp_path: Path, token_registry: RegistryServer, pushed: tuple[str, list[str]],
    monkeypatch: pytest.MonkeyPatch,
) -> None:  # fmt: skip
    ref, _ = pushed
    use_home(monkeypatch, tmp_path / "home")
    login(token_registry.host, TOKEN_USER, TOKEN_PASSWORD)
    ts = tokens(token_registry)
    mark = ts.mark()
    fresh = client.with_namespace("fresh")
    try:
        result = fresh.pull(ref)
        assert result.image.name == ref
        assert len(result.fetched) == 6
        assert result.unpacked is not None and len(result.unpacked.applied) == 3
        check = fresh.check(ref)
        assert check.complete and check.unpacked
    finally:
        fresh.close()
    reqs = ts.since(mark)
    # One token for the whole pull (the Authorizer caches it), not one per blob.
    assert 1 <= len(reqs) <= 2, reqs
    for r in reqs:
        assert (r.method, r.user, r.status, r.grant_type) == ("POST", TOKEN_USER, 200, "password")
        assert r.client_id and r.service == "ctrstore-test"
        assert r.scopes == [f"repository:{REPO}:pull"], r.scopes


def test_anonymous_push_and_pull_fail(
    client: Client, tmp_path: Path, token_registry: RegistryServer, pushed: tuple[str, list[str]],
    monkeypatch: pytest.MonkeyPatch,
) -> None:  # fmt: skip
    ref, _ = pushed
    use_home(monkeypatch, tmp_path / "home")
    ts = tokens(token_registry)
    mark = ts.mark()
    with pytest.raises(Unauthenticated, match="login"):
        client.pull(ref)
    other = token_registry.ref("token/anonymous:1")
    busybox_image(client.content, client.images, other)
    with pytest.raises(Unauthenticated, match="login"):
        client.push(other)
    reqs = ts.since(mark)
    assert reqs and all(r.method == "GET" and r.user is None and r.status == 200 for r in reqs), reqs
    scopes = {s for r in reqs for s in r.scopes}
    assert f"repository:{REPO}:pull" in scopes, scopes
    assert "repository:token/anonymous:pull,push" in scopes, scopes


def test_wrong_password_is_unauthenticated(
    client: Client, tmp_path: Path, token_registry: RegistryServer, pushed: tuple[str, list[str]],
    monkeypatch: pytest.MonkeyPatch,
) -> None:  # fmt: skip
    ref, _ = pushed
    use_home(monkeypatch, tmp_path / "home")
    with pytest.raises(Unauthenticated, match="refused"):
        login(token_registry.host, TOKEN_USER, "wrong")
    assert DockerConfig().credentials(token_registry.host) is None
    # Stored credentials that have gone bad.
    DockerConfig().save(
        {"auths": {token_registry.host: {"auth": base64.b64encode(f"{TOKEN_USER}:wrong".encode()).decode()}}}
    )
    ts = tokens(token_registry)
    mark = ts.mark()
    with pytest.raises(Unauthenticated, match=f"refused the credentials of '{TOKEN_USER}'"):
        client.pull(ref)
    reqs = ts.since(mark)
    assert reqs and all(r.status == 401 for r in reqs), reqs
    assert {r.method for r in reqs} == {"POST", "GET"}  # the OAuth2 form, then GET with Basic
    assert not client.images.list()


def test_token_server_without_oauth_post(
    client: Client, tmp_path: Path, token_registry: RegistryServer, pushed: tuple[str, list[str]],
    monkeypatch: pytest.MonkeyPatch,
) -> None:  # fmt: skip
    """A token server answering POST with 405: tokens are fetched by GET with Basic credentials."""
    ref, _ = pushed
    use_home(monkeypatch, tmp_path / "home")
    login(token_registry.host, TOKEN_USER, TOKEN_PASSWORD)
    ts = tokens(token_registry)
    monkeypatch.setattr(ts, "allow_post", False)
    mark = ts.mark()
    result = client.pull(ref)
    assert len(result.fetched) == 6
    reqs = ts.since(mark)
    assert [(r.method, r.status) for r in reqs] == [("POST", 405), ("GET", 200)], reqs
    assert reqs[1].user == TOKEN_USER and reqs[1].scopes == [f"repository:{REPO}:pull"]
