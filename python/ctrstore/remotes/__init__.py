"""The registry client: references, hosts.toml, authentication, resolve/fetch/push.

``Resolver`` is the entry point; see ``ctrstore.remotes.docker``. The layers, top down:
``docker`` (resolver, fetcher, pusher) → ``endpoint`` (one registry host: authentication,
HTTP fallback, which URLs get its credentials) → ``auth`` (challenges, credentials, tokens,
the authorizer) → ``transport`` (redirects, retries; a ``RoundTripper`` underneath:
``ConnectionPool``, ``fallback.HTTPFallback``, ``memory.MemoryTransport``)."""

from __future__ import annotations

import importlib
import typing

if typing.TYPE_CHECKING:
    from ctrstore.remotes.auth import Authorizer, Credentials, DockerConfig
    from ctrstore.remotes.auth.login import login, logout
    from ctrstore.remotes.docker import Fetcher, Pusher, Resolver
    from ctrstore.remotes.hosts import RegistryHost, configure_hosts
    from ctrstore.remotes.reference import Reference, normalize, parse
    from ctrstore.remotes.transport import RetryPolicy, Transport

# Imported on first use (PEP 562), as ``ctrstore`` does: what only needs references
# (``ctrstore.remotes.reference``: image names in run, tag, rmi...) does not pay for the HTTP
# client, its authentication and TLS.
_WHERE: dict[str, str] = {
    **dict.fromkeys(
        ("Authorizer", "Credentials", "DockerConfig", "login", "logout"), "ctrstore.remotes.auth"
    ),
    **dict.fromkeys(("Fetcher", "Pusher", "Resolver"), "ctrstore.remotes.docker"),
    **dict.fromkeys(("RegistryHost", "configure_hosts"), "ctrstore.remotes.hosts"),
    **dict.fromkeys(("Reference", "normalize", "parse"), "ctrstore.remotes.reference"),
    **dict.fromkeys(("RetryPolicy", "Transport"), "ctrstore.remotes.transport"),
}

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


def __getattr__(name: str) -> typing.Any:
    """Import the module that defines ``name`` (one of ``__all__``) and keep the value."""
    where = _WHERE.get(name)
    if where is None:
        raise AttributeError(f"module 'ctrstore.remotes' has no attribute {name!r}")
    value = getattr(importlib.import_module(where), name)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted({*globals(), *__all__})
