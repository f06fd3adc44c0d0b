"""The registry client's unit tests: no registry, no socket. ``no_sockets`` (autouse) makes
every attempt to open one fail, so a test that would reach the network fails instead; the
HTTP layers are exercised through ``ctrstore.remotes.memory.MemoryTransport``."""

from __future__ import annotations

import socket
from collections.abc import Iterator
from typing import Any

import pytest

from ctrstore.remotes import RetryPolicy

#: Retries without real waits (Transport's ``sleep`` is replaced in the tests anyway).
FAST = RetryPolicy(attempts=5, backoff=0.001, max_backoff=0.01)


class SocketUsed(AssertionError):
    """A unit test of the registry client tried to open a socket or resolve a name."""


@pytest.fixture(autouse=True)
def no_sockets(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    def refuse(*args: Any, **kwargs: Any) -> Any:
        raise SocketUsed(f"a unit test opened a socket or looked up a name: {args!r}")

    for name in ("socket", "create_connection", "getaddrinfo", "socketpair"):
        monkeypatch.setattr(socket, name, refuse)
    yield
