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
- Rootless (issue 13), shared by the ``test_rootless*`` modules: ``rootless_dir`` (a temp dir
  every user can reach), ``rootless_venv`` (a venv of Debian's python3 there that ordinary
  users can run), ``rootless_users`` (two users made for the session, one with subordinate ids
  and one without, removed afterwards with /etc/subuid and /etc/subgid restored),
  ``rootless_images`` (busybox and the small image with every kind of entry, in ``registry``)
  and ``tun_for_users`` (/dev/net/tun opened to ordinary users for the test's run).

A tool the registries need that is not installed skips the tests that use them.
"""

from __future__ import annotations

import shutil
import tempfile
from collections.abc import Callable, Iterator
from contextlib import suppress
from pathlib import Path
from typing import TypeVar

import pytest

from ctrstore import Client
from ctrstore.images.build import ImageSpec, build_image, tar_from_entries
from ctrstore.mount import mountinfo, unmount
from tests.support.images import BASE, BUSYBOX, TOP, UPPER, busybox_image
from tests.support.registry import (
    RegistryServer,
    TokenServer,
    ToolMissing,
    start_registry,
    start_token_server,
    stop_registry,
)
from tests.support.rootless import TUN, Unavailable, User, made_users, make_venv, opened_to_users

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


@pytest.fixture(scope="session")
def rootless_dir() -> Iterator[Path]:
    d = Path(tempfile.mkdtemp(prefix="ctrstore-rootless-"))
    d.chmod(0o755)
    yield d
    shutil.rmtree(d, ignore_errors=True)


@pytest.fixture(scope="session")
def rootless_venv(rootless_dir: Path) -> Path:
    """A venv of Debian's python3 that ordinary users can run (``tests.support.rootless``)."""
    try:
        return make_venv(rootless_dir / "venv")
    except Unavailable as e:
        pytest.skip(str(e))


@pytest.fixture(scope="session")
def rootless_users(rootless_dir: Path, rootless_venv: Path) -> Iterator[tuple[User, User]]:
    """Two ordinary users, one with subids and one without; removed afterwards, with
    /etc/subuid and /etc/subgid as they were."""
    try:
        with made_users(rootless_dir, rootless_venv, [("ctrrl", True), ("ctrnosub", False)]) as made:
            yield made[0], made[1]
    except Unavailable as e:
        pytest.skip(str(e))


@pytest.fixture(scope="session")
def rootless_images(registry: RegistryServer, tmp_path_factory: pytest.TempPathFactory) -> dict[str, str]:
    """The busybox test image, and the small image with every kind of entry (a uid 1000 file,
    a device node, whiteouts, an opaque directory), pushed to the local registry."""
    d = tmp_path_factory.mktemp("rootless-src")
    refs = {"busybox": registry.ref("rootless/busybox:1"), "kinds": registry.ref("rootless/kinds:1")}
    with Client(root=d / "root", state=d / "state") as c:
        busybox_image(c.content, c.images, refs["busybox"])
        layers = [tar_from_entries(BASE), tar_from_entries(UPPER), tar_from_entries(TOP)]
        build_image(c.content, c.images, refs["kinds"], layers, ImageSpec(cmd=("sh",)))
        for ref in refs.values():
            c.push(ref)
    return refs


@pytest.fixture
def tun_for_users() -> Iterator[None]:
    """/dev/net/tun usable by ordinary users, as rootless networking needs it. This machine
    has it 0600 (root only; Debian's udev rules make it 0666): the test makes it 0666 for its
    own run and restores the mode afterwards."""
    if not TUN.exists():
        pytest.skip(f"{TUN} does not exist: no TUN/TAP device for slirp4netns")
    if shutil.which("slirp4netns") is None:
        pytest.skip("slirp4netns is not installed (Debian's slirp4netns)")
    with opened_to_users(TUN):
        yield
