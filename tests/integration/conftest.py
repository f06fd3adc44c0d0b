"""Fixtures for integration tests: real registries (Debian's ``docker-registry``, i.e.
distribution 2.8) started once per session on free loopback ports, by ``tests.support.registry``.

- ``registry``: plain HTTP, no authentication, on ``127.0.0.1:<port>``. A reference such as
  ``f"{registry.host}/team/app:1"`` works with a default ``Resolver()`` (loopback with a port:
  HTTPS is tried, then plain HTTP) or ``Resolver(plain_http=True)``.
- ``auth_registry``: HTTPS with a self-signed certificate and htpasswd (Basic) authentication,
  user ``registry.username`` / ``registry.password``. ``registry.hosts_dir`` is a certs.d
  directory whose hosts.toml trusts the certificate (``Resolver(hosts_dir=...)``).
- ``token_registry``: plain HTTP with token (Bearer) authentication: its ``WWW-Authenticate``
  challenge points at ``token_server``, a small token server in a thread that issues RS256 JWTs
  (``kid`` = the libtrust key ID of the certificate in the registry's ``rootcertbundle``). Only
  ``TOKEN_USER``/``TOKEN_PASSWORD`` get the scopes they ask for; anonymous tokens grant nothing.
  ``token_server.requests`` records every token request.
- ``busybox_store``: a store (root and state under tmp_path) holding the busybox image as
  ``BUSYBOX``; every container in it is removed afterwards and nothing stays mounted.

A tool the registries need that is not installed skips the tests that use them.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from contextlib import suppress
from pathlib import Path
from typing import TypeVar

import pytest

from ctrstore import Client
from ctrstore.mount import mountinfo, unmount
from tests.support.images import BUSYBOX, busybox_image
from tests.support.registry import (
    RegistryServer,
    TokenServer,
    ToolMissing,
    start_registry,
    start_token_server,
    stop_registry,
)

T = TypeVar("T")


def _or_skip(start: Callable[[], T]) -> T:
    try:
        return start()
    except ToolMissing as e:
        pytest.skip(str(e))


@pytest.fixture(scope="session")
def registry(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RegistryServer]:
    srv = _or_skip(lambda: start_registry(tmp_path_factory.mktemp("registry")))
    yield srv
    stop_registry(srv)


@pytest.fixture(scope="session")
def auth_registry(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RegistryServer]:
    srv = _or_skip(lambda: start_registry(tmp_path_factory.mktemp("auth-registry"), auth=True, tls=True))
    yield srv
    stop_registry(srv)


@pytest.fixture(scope="session")
def token_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[TokenServer]:
    ts = _or_skip(lambda: start_token_server(tmp_path_factory.mktemp("token-server")))
    yield ts
    ts.close()


@pytest.fixture(scope="session")
def token_registry(
    tmp_path_factory: pytest.TempPathFactory, token_server: TokenServer
) -> Iterator[RegistryServer]:
    srv = _or_skip(lambda: start_registry(tmp_path_factory.mktemp("token-registry"), token=token_server))
    yield srv
    stop_registry(srv)


def _mounts_under(path: Path) -> list[str]:
    return [str(m.mount_point) for m in mountinfo() if str(m.mount_point).startswith(str(path))]


@pytest.fixture
def busybox_store(tmp_path: Path) -> Iterator[Path]:
    """tmp_path with a store (root, state) holding the busybox image; afterwards every
    container is removed and nothing stays mounted."""
    c = Client(root=tmp_path / "root", state=tmp_path / "state")
    try:
        busybox_image(c.content, c.images, BUSYBOX)
    finally:
        c.close()
    yield tmp_path
    c = Client(root=tmp_path / "root", state=tmp_path / "state")
    try:
        for ctr in c.containers.store.list():
            with suppress(Exception):
                c.containers.delete(ctr.id, force=True)
    finally:
        c.close()
    for m in sorted(_mounts_under(tmp_path), key=len, reverse=True):
        with suppress(Exception):
            unmount(m)
