"""``ctrstore login`` and ``logout``: check credentials against a registry, then store them in
the Docker config (or its credential helper); forget them again."""

from __future__ import annotations

import os
from urllib.parse import urlsplit

from ctrstore.errdefs import InvalidArgument, NotFound, Unauthenticated, Unavailable
from ctrstore.remotes.auth.challenge import challenge_of
from ctrstore.remotes.auth.credentials import Credentials, DockerConfig, auth_key
from ctrstore.remotes.auth.tokens import fetch_token
from ctrstore.remotes.endpoint import Endpoint
from ctrstore.remotes.hosts import configure_hosts
from ctrstore.remotes.reference import _DOMAIN_RE
from ctrstore.remotes.transport import Transport, clean

__all__ = ["login", "logout"]


def login(
    host: str,
    username: str,
    password: str,
    *,
    config: DockerConfig | None = None,
    hosts_dir: str | os.PathLike[str] | None = None,
    plain_http: bool = False,
    transport: Transport | None = None,
) -> str:
    """Check the credentials against the registry (``GET /v2/`` and its challenge), then store
    them in the Docker config (or its credential helper). Returns the key they are stored
    under. Raises Unauthenticated if the registry refuses them."""
    if not isinstance(host, str) or not _DOMAIN_RE.fullmatch(host):
        raise InvalidArgument(f"login: invalid registry host {clean(host, 100)!r} (want host[:port])")
    if not password:
        raise InvalidArgument("login: empty password")
    config = config or DockerConfig()
    creds = Credentials(username, password, "login")
    t = transport or Transport()
    try:
        hosts = configure_hosts(host, hosts_dir=hosts_dir, plain_http=plain_http)
        _check(Endpoint(hosts[-1], t), t, host, creds)  # the registry itself (mirrors come first)
    finally:
        if transport is None:
            t.close()
    config.store(host, creds)
    return auth_key(host)


def _check(ep: Endpoint, transport: Transport, host: str, creds: Credentials) -> None:
    """Whether the registry behind ``ep`` accepts ``creds``: a bearer challenge's token server
    gives a token for them (asked through ``transport``, without the registry's HTTP
    fallback), or ``GET /v2/`` with them as Basic credentials succeeds."""
    root = ep.base_url + "/"
    with ep.send("GET", root, headers=ep.host.headers) as resp:
        if resp.status == 200:
            resp.drain()
            return
        if resp.status != 401:
            raise Unavailable(f"{host}: GET /v2/: {resp.error_detail()}")
        u = urlsplit(resp.url)
        if not ep.trusted(resp.url):
            raise Unauthenticated(
                f"{host}: GET /v2/ was redirected to {clean(u.netloc, 100)} over {u.scheme}, which asks "
                f"for authentication; ctrstore does not send the credentials of {host} there"
            )
        ch = challenge_of(resp)
        resp.drain()
    if ch is None:
        raise Unauthenticated(f"{host}: the registry asks for an unsupported authentication")
    if ch.scheme == "bearer":
        fetch_token(transport, ch, (), creds, ep.host.host, registry_scheme=u.scheme)
        return
    with ep.send("GET", root, headers={**ep.host.headers, "Authorization": creds.basic()}) as r2:
        if r2.status in (401, 403):
            raise Unauthenticated(
                f"{host}: the registry refused the credentials of user {creds.username!r} "
                f"({r2.error_detail()})"
            )
        if r2.status != 200:
            raise Unavailable(f"{host}: GET /v2/: {r2.error_detail()}")
        r2.drain()


def logout(host: str, *, config: DockerConfig | None = None) -> None:
    """Remove a registry's credentials; NotFound if there were none."""
    config = config or DockerConfig()
    if not config.erase(host):
        raise NotFound(f"not logged in to {host} ({config.path})")
