"""The Authorizer (containerd's ``remotes/docker/authorizer.go``): the ``Authorization`` header
of each registry request, from the challenge the host sent, the credentials looked up for that
host and the cached bearer tokens.

An :class:`Authorizer` is shared by every request of a resolver. It remembers each host's
challenge and the scheme it came over; a challenge belongs to the host that sent it, and the
credentials looked up for that host answer it (README.md, "Registries and credentials").
"""

from __future__ import annotations

import threading
from collections.abc import Iterable
from urllib.parse import urlsplit

from ctrstore.errdefs import PermissionDenied, Unauthenticated
from ctrstore.remotes.auth.challenge import Challenge, challenge_of, merge_scopes
from ctrstore.remotes.auth.credentials import Credentials, CredentialsFunc, DockerConfig
from ctrstore.remotes.auth.tokens import TokenCache, fetch_token
from ctrstore.remotes.transport import Response, Transport, clean

__all__ = ["Authorizer"]


class Authorizer:
    """Authorization headers for registry requests, by host and scope set.

    ``credentials(host)`` gives what to log in with (default: the Docker config); token
    requests go through ``transport`` (default: one of its own, closed by :meth:`close`)."""

    def __init__(
        self,
        transport: Transport | None = None,
        credentials: CredentialsFunc | None = None,
        tokens: TokenCache | None = None,
    ) -> None:
        self._own_transport = transport is None
        self.transport = transport or Transport()
        if credentials is None:
            credentials = DockerConfig().credentials
        self.credentials = credentials
        self.tokens = tokens or TokenCache()
        self._lock = threading.Lock()
        self._challenges: dict[str, Challenge] = {}
        self._schemes: dict[str, str] = {}
        """The scheme each challenge came over (``http``: the registry is spoken to in clear)."""
        self._creds: dict[str, Credentials | None] = {}

    def close(self) -> None:
        if self._own_transport:
            self.transport.close()

    def _credentials(self, host: str) -> Credentials | None:
        with self._lock:
            if host in self._creds:
                return self._creds[host]
        creds = self.credentials(host)
        with self._lock:
            self._creds[host] = creds
        return creds

    def header(self, host: str, scopes: Iterable[str]) -> str | None:
        """The Authorization value for a request to ``host`` needing ``scopes``; None
        before the host has asked for authentication."""
        with self._lock:
            ch = self._challenges.get(host)
            scheme = self._schemes.get(host, "https")
        if ch is None:
            return None
        creds = self._credentials(host)
        if ch.scheme == "basic":
            return creds.basic() if creds and creds.username else None
        if ch.scheme != "bearer":
            return None
        wanted = tuple(scopes)
        merged = merge_scopes(wanted if wanted else [ch.scope])
        token = self.tokens.get_or_fetch(
            (host, merged),
            lambda: fetch_token(self.transport, ch, merged, creds, host, registry_scheme=scheme),
        )
        return f"Bearer {token}"

    def challenged(
        self, host: str, resp: Response, scopes: Iterable[str], sent: str | None, final: bool
    ) -> None:
        """Handle a 401 to a request sent with Authorization ``sent``: remember the
        challenge (and forget a refused token) so the next ``header`` answers it. With
        ``final``, or when answering cannot help, raise Unauthenticated (no or refused
        credentials) or PermissionDenied (credentials accepted, access refused).

        A challenge belongs to the host that sent it: a 401 from anywhere but ``host``
        (after a redirect to a storage host) is not filed under ``host`` and not answered
        with its credentials: Unauthenticated. (``Endpoint.request`` refuses a 401 that came
        down from https to http before it gets here.)"""
        u = urlsplit(resp.url)
        if u.netloc != host:
            resp.drain()
            raise Unauthenticated(
                f"{host}: redirected to {clean(u.netloc, 100)}, which asks for authentication; "
                f"ctrstore does not send credentials or tokens for {host} to another host"
            )
        ch = challenge_of(resp)
        detail = resp.error_detail()
        if ch is None:
            raise Unauthenticated(f"{host}: authentication required ({detail}) but no usable challenge")
        creds = self._credentials(host)
        wanted = merge_scopes(scopes) or merge_scopes([ch.scope])
        what = ", ".join(wanted) or "access"
        with self._lock:
            self._challenges[host] = ch
            self._schemes[host] = u.scheme
        if sent is not None:
            self.tokens.drop((host, wanted))
        if ch.scheme == "basic" and not (creds and creds.username):
            raise Unauthenticated(
                f"{host}: the registry requires a login ({detail}); "
                f"no credentials for {host}: run 'ctrstore login {host}'"
            )
        if not final:
            return
        if creds is None:
            raise Unauthenticated(
                f"{host}: {what} requires a login, or the repository does not exist ({detail}); "
                f"run 'ctrstore login {host}'"
            )
        if ch.scheme == "basic":
            raise Unauthenticated(
                f"{host}: the registry refused the credentials of user {creds.username!r} "
                f"from {creds.source or 'the credential store'} ({detail})"
            )
        who = creds.username or "<identity token>"
        if ch.error == "invalid_token":
            raise Unauthenticated(
                f"{host}: the registry rejected the token issued for {who!r} "
                f"({clean(ch.params.get('error_description') or ch.error)}; {detail})"
            )
        raise PermissionDenied(
            f"{host}: {who!r} is not allowed {what}, or the repository does not exist ({detail})"
        )
