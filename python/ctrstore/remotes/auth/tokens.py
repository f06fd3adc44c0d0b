"""Bearer tokens (containerd's ``remotes/docker/auth/fetch.go``): fetching one from the token
server a challenge names, the policy for where a secret may go, and the cache of tokens.

Tokens are fetched as containerd does: with a secret (password or identity token) first a POST
of an OAuth2 form to the realm, falling back to a GET ``realm?service=..&scope=..`` with Basic
credentials; anonymously a plain GET. A password or identity token goes in clear text (an
``http://`` realm) only to the registry's own host name when the registry itself is spoken to
over HTTP, or to a loopback realm of a loopback registry (:func:`may_send_secret`).
"""

from __future__ import annotations

import math
import re
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from urllib.parse import urlencode, urlsplit

from ctrstore.errdefs import CtrstoreError, InvalidArgument, Unauthenticated, Unavailable
from ctrstore.remotes.auth.challenge import Challenge
from ctrstore.remotes.auth.credentials import Credentials
from ctrstore.remotes.hosts import is_localhost
from ctrstore.remotes.transport import (
    Response,
    Transport,
    check_url,
    clean,
    loads_json,
    same_origin,
    with_query,
)

__all__ = ["TokenCache", "fetch_token", "may_send_secret"]

CLIENT_ID = "ctrstore"
DEFAULT_TOKEN_TTL = 60.0
#: Longer lifetimes a token server states are cut to this (a resolver lives for one command).
MAX_TOKEN_TTL = 24 * 3600.0
#: A token longer than this, or with characters other than visible ASCII, is refused: it
#: goes into an ``Authorization`` header as it is.
MAX_TOKEN_LENGTH = 1 << 16
#: Tokens are renewed this many seconds before they expire.
TOKEN_MARGIN = 5.0


def may_send_secret(url: str, host: str, host_scheme: str) -> bool:
    """Whether the password or identity token of registry ``host`` (spoken to over
    ``host_scheme``) may be sent to ``url``, a token realm: over https always (realms on other
    hosts are normal: Docker Hub's is ``auth.docker.io``); over plain http only to the
    registry's own host name when the registry is itself spoken to over http (its clear-text
    traffic is the user's choice), or to loopback when the registry is on loopback too."""
    u = urlsplit(url)
    if u.scheme == "https":
        return True
    if u.scheme != "http" or not u.hostname:
        return False
    if is_localhost(u.netloc) and is_localhost(host):
        return True
    return host_scheme == "http" and u.hostname == (urlsplit(f"//{host}").hostname or "")


def fetch_token(
    transport: Transport,
    ch: Challenge,
    scopes: tuple[str, ...],
    creds: Credentials | None,
    host: str,
    *,
    registry_scheme: str = "https",
) -> tuple[str, float]:
    """A bearer token for ``scopes``: ``(token, seconds valid)``. ``registry_scheme`` is
    how the registry that sent ``ch`` is spoken to (see :func:`may_send_secret`)."""
    realm = ch.realm
    try:
        check_url(realm, f"{host}: bearer challenge realm")
    except InvalidArgument as e:
        raise Unauthenticated(str(e)) from None
    if creds and creds.secret and not may_send_secret(realm, host, registry_scheme):
        raise Unauthenticated(
            f"{host}: the registry's token server {clean(realm, 120)} is plain HTTP on another host; "
            f"ctrstore does not send the credentials of {host} ({creds.source or 'credential store'}) "
            "there in clear text (the token server must use https)"
        )
    if creds and creds.secret:
        form: dict[str, str] = {"client_id": CLIENT_ID}
        if scopes:
            form["scope"] = " ".join(scopes)
        if ch.service:
            form["service"] = ch.service
        if creds.is_identity_token:
            form.update(grant_type="refresh_token", refresh_token=creds.secret)
        else:
            form.update(grant_type="password", username=creds.username, password=creds.secret)
        resp = transport.request(
            "POST",
            realm,
            headers={"Content-Type": "application/x-www-form-urlencoded; charset=utf-8"},
            body=urlencode(form).encode(),
            confidential_body=True,
        )
        with resp:
            if resp.status == 200:
                return _token_from(resp, realm)
            fallback = resp.status in (400, 401, 404) or (resp.status == 405 and creds.username)
            if not fallback:
                raise _token_error(resp, realm, creds, host)
            resp.drain()
    params: list[tuple[str, str]] = []
    if ch.service:
        params.append(("service", ch.service))
    params += [("scope", s) for s in scopes]
    url = with_query(realm, params)
    headers = {}
    if creds and creds.username:
        headers["Authorization"] = creds.basic()
    # The Basic credentials go to the realm's own host only (same_origin: no redirect to
    # another host or down to http takes them along).
    resp = transport.request("GET", url, headers=headers, trusted=same_origin(url))
    with resp:
        if resp.status == 200:
            return _token_from(resp, realm)
        raise _token_error(resp, realm, creds, host)


def _token_from(resp: Response, realm: str) -> tuple[str, float]:
    """The token and its lifetime from a token server's JSON reply, checked: the token is a
    string of visible ASCII (it goes into a header as is), the lifetime a finite number."""
    where = f"token server {clean(realm, 120)}"
    try:
        doc = loads_json(resp.read(1 << 20))
    except ValueError:
        raise Unavailable(f"{where}: reply is not JSON") from None
    except CtrstoreError as e:
        raise Unavailable(f"{where}: {e}") from None
    if not isinstance(doc, dict):
        raise Unavailable(f"{where}: reply is not a JSON object")
    tok = doc.get("token") or doc.get("access_token")
    if not tok:
        raise Unavailable(f"{where}: reply has no token")
    if not isinstance(tok, str) or len(tok) > MAX_TOKEN_LENGTH or not _TOKEN_VALUE_RE.fullmatch(tok):
        raise Unavailable(
            f"{where}: the token is not a string of at most {MAX_TOKEN_LENGTH} visible ASCII characters"
        )
    ttl = doc.get("expires_in")
    seconds = DEFAULT_TOKEN_TTL
    if isinstance(ttl, (int, float)) and not isinstance(ttl, bool) and ttl > 0:
        seconds = float(ttl)
    if not math.isfinite(seconds):
        seconds = MAX_TOKEN_TTL
    return tok, min(max(seconds, 1.0), MAX_TOKEN_TTL)


_TOKEN_VALUE_RE = re.compile(r"[\x21-\x7e]+")


def _token_error(resp: Response, realm: str, creds: Credentials | None, host: str) -> CtrstoreError:
    detail = resp.error_detail()
    realm = clean(realm, 120)
    if resp.status in (401, 403):
        if creds:
            who = creds.username or "<identity token>"
            return Unauthenticated(
                f"{host}: token server {realm} refused the credentials of {who!r} "
                f"from {creds.source or 'the credential store'} ({detail})"
            )
        return Unauthenticated(f"{host}: token server {realm} requires a login ({detail})")
    return Unavailable(f"{host}: token server {realm}: {detail}")


TokenKey = tuple[str, tuple[str, ...]]
"""A host and a (merged, sorted) scope set."""


@dataclass
class _Token:
    value: str
    expires: float


class TokenCache:
    """Bearer tokens by host and scope set, each until :data:`TOKEN_MARGIN` seconds before it
    expires (at least a second). Thread-safe; however many threads ask for a missing token,
    one fetches it. ``clock`` is monotonic seconds (unit tests pass their own)."""

    def __init__(self, clock: Callable[[], float] = time.monotonic) -> None:
        self._clock = clock
        self._lock = threading.Lock()
        self._tokens: dict[TokenKey, _Token] = {}
        self._fetching: dict[TokenKey, threading.Lock] = {}

    def get(self, key: TokenKey) -> str | None:
        """The token for ``key`` if there is one still valid."""
        with self._lock:
            tok = self._tokens.get(key)
            return tok.value if tok and tok.expires > self._clock() else None

    def get_or_fetch(self, key: TokenKey, fetch: Callable[[], tuple[str, float]]) -> str:
        """The token for ``key``; if there is none, ``fetch()`` gives ``(token, seconds valid)``."""
        value = self.get(key)
        if value is not None:
            return value
        with self._lock:
            flock = self._fetching.setdefault(key, threading.Lock())
        with flock:  # one fetch per key, however many threads ask
            value = self.get(key)
            if value is not None:
                return value
            value, ttl = fetch()
            with self._lock:
                self._tokens[key] = _Token(value, self._clock() + max(ttl - TOKEN_MARGIN, 1.0))
        return value

    def drop(self, key: TokenKey) -> None:
        """Forget the token for ``key`` (the registry refused it)."""
        with self._lock:
            self._tokens.pop(key, None)
