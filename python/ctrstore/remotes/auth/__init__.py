"""Registry authentication, in containerd's parts:

- ``challenge``: ``WWW-Authenticate`` parsing and token scopes;
- ``credentials``: Docker's ``config.json`` and its credential helpers;
- ``tokens``: bearer token fetch, the policy for where a secret may go, the token cache;
- ``authorizer``: the :class:`Authorizer` that ties them together for a resolver;
- ``login``: ``login`` and ``logout``.

Where credentials go (README.md, "Registries and credentials"): a challenge belongs to the
host that sent it, and the credentials looked up for that host answer it. A token realm may be
on another host (Docker Hub's is ``auth.docker.io``), but a password or identity token goes in
clear text (an ``http://`` realm) only to the registry's own host name when the registry itself
is spoken to over HTTP, or to a loopback realm of a loopback registry (``may_send_secret``).
Redirects of requests that carry credentials are followed only to the same host, never from
https down to http.
"""

from __future__ import annotations

from ctrstore.remotes.auth.authorizer import Authorizer
from ctrstore.remotes.auth.challenge import (
    Challenge,
    merge_scopes,
    parse_www_authenticate,
    repository_scope,
)
from ctrstore.remotes.auth.credentials import Credentials, CredentialsFunc, DockerConfig
from ctrstore.remotes.auth.login import login, logout
from ctrstore.remotes.auth.tokens import may_send_secret

__all__ = [
    "Authorizer",
    "Challenge",
    "Credentials",
    "CredentialsFunc",
    "DockerConfig",
    "login",
    "logout",
    "may_send_secret",
    "merge_scopes",
    "parse_www_authenticate",
    "repository_scope",
]
