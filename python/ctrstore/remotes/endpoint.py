"""One registry host as a resolver speaks to it (the live half of containerd's
``RegistryHost``, whose configured half is ``hosts.RegistryHost``): the transport to it (with
HTTP fallback where hosts.py allows it), its TLS context, which URLs may receive its headers
and credentials, and requests that answer its authentication challenges.
"""

from __future__ import annotations

import ssl
import threading
from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING
from urllib.parse import urlsplit

from ctrstore.errdefs import Unauthenticated
from ctrstore.remotes.fallback import HTTPFallback
from ctrstore.remotes.hosts import RegistryHost
from ctrstore.remotes.transport import Body, Response, Transport, clean, same_origin

if TYPE_CHECKING:
    from ctrstore.remotes.auth.authorizer import Authorizer

__all__ = ["Endpoint"]


class Endpoint:
    """``host`` reached through ``transport``. Thread-safe; one per host and resolver, so
    that every request to the host shares its fallback state and TLS context."""

    def __init__(self, host: RegistryHost, transport: Transport) -> None:
        self.host = host
        self.fallback = HTTPFallback(transport.round_tripper, host.host) if host.http_fallback else None
        self.transport = transport.with_round_tripper(self.fallback) if self.fallback else transport
        self._lock = threading.Lock()
        self._ssl: ssl.SSLContext | None = None

    @property
    def scheme(self) -> str:
        """``http`` once the host has fallen back to plain HTTP, else the configured scheme."""
        return "http" if self.fallback is not None and self.fallback.active else self.host.scheme

    @property
    def origin(self) -> str:
        return f"{self.scheme}://{self.host.host}"

    @property
    def base_url(self) -> str:
        """The API root (``<scheme>://<host><path>``)."""
        return self.origin + self.host.path

    def trusted(self, url: str) -> bool:
        """Whether ``url`` may get this host's headers and credentials: its own host and
        port, and not over http while the host is spoken to over https."""
        return same_origin(self.origin)(url)

    def ssl_context(self) -> ssl.SSLContext:
        """The host's TLS settings, built once."""
        with self._lock:
            if self._ssl is None:
                self._ssl = self.host.ssl_context()
            return self._ssl

    def send(
        self,
        method: str,
        url: str,
        *,
        headers: Mapping[str, str] | None = None,
        body: Body = None,
        retry: bool = True,
    ) -> Response:
        """One request (redirects and retries included) with the host's TLS settings and
        timeouts; ``headers`` go only to URLs it :meth:`trusted`."""
        return self.transport.request(
            method,
            url,
            headers=headers,
            body=body,
            ssl_context=self.ssl_context() if url.startswith("https:") else None,
            connect_timeout=self.host.dial_timeout,
            read_timeout=self.host.read_timeout,
            trusted=self.trusted,
            retry=retry,
        )

    def request(
        self,
        method: str,
        url: str,
        *,
        authorizer: Authorizer,
        scopes: Sequence[str],
        what: str,
        headers: Mapping[str, str] | None = None,
        body: Body = None,
        retry: bool = True,
    ) -> Response:
        """:meth:`send` with the ``Authorization`` the authorizer has for ``scopes``; a 401
        is handed to the authorizer and the request sent again with what it then has (a
        file ``body`` from where it started). A 401 from a URL the host does not trust (a
        redirect to storage elsewhere, or down to http) is Unauthenticated: it is not
        answered with this host's credentials. ``what`` starts error messages."""
        start = body.tell() if body is not None and not isinstance(body, bytes) else 0
        tries = 3
        for i in range(tries):
            auth = authorizer.header(self.host.host, scopes)
            send = dict(headers or {})
            if auth:
                send["Authorization"] = auth
            if body is not None and not isinstance(body, bytes):
                body.seek(start)
            resp = self.send(method, url, headers=send, body=body, retry=retry)
            if resp.status != 401:
                return resp
            if not self.trusted(resp.url):
                u = urlsplit(resp.url)
                resp.close()
                raise Unauthenticated(
                    f"{what}: {method} was redirected to {u.scheme}://{clean(u.netloc, 100)}, "
                    f"which asks for authentication; ctrstore sends the credentials of {self.host.host} "
                    "only to it (never to another host, nor down from https to http)"
                )
            final = i == tries - 1 or (auth is not None and i >= 1)
            try:
                authorizer.challenged(self.host.host, resp, scopes, auth, final)
            finally:
                resp.close()
        raise Unauthenticated(f"{what}: authentication failed")  # pragma: no cover
