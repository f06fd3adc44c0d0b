"""The registry client: references, hosts.toml, authentication, resolve/fetch/push.

``Resolver`` is the entry point; see ``ctrstore.remotes.docker``. The layers, top down:
``docker`` (resolver, fetcher, pusher) → ``endpoint`` (one registry host: authentication,
HTTP fallback, which URLs get its credentials) → ``auth`` (challenges, credentials, tokens,
the authorizer) → ``transport`` (redirects, retries; a ``RoundTripper`` underneath:
``ConnectionPool``, ``fallback.HTTPFallback``, ``memory.MemoryTransport``)."""

from __future__ import annotations

from ctrstore.remotes.auth import Authorizer, Credentials, DockerConfig, login, logout
from ctrstore.remotes.docker import Fetcher, Pusher, Resolver
from ctrstore.remotes.hosts import RegistryHost, configure_hosts
from ctrstore.remotes.reference import Reference, normalize, parse
from ctrstore.remotes.transport import RetryPolicy, Transport

__all__ = [
    "Authorizer",
    "Credentials",
    "DockerConfig",
    "Fetcher",
    "Pusher",
    "Reference",
    "RegistryHost",
    "Resolver",
    "RetryPolicy",
    "Transport",
    "configure_hosts",
    "login",
    "logout",
    "normalize",
    "parse",
]
