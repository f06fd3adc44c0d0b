"""The fixture these unit tests rely on: a socket cannot be opened (so none is)."""

from __future__ import annotations

import http.client
import socket

import pytest

from tests.unit.remotes.conftest import SocketUsed


def test_sockets_are_refused() -> None:
    with pytest.raises(SocketUsed):
        socket.socket()
    with pytest.raises(SocketUsed):
        http.client.HTTPConnection("127.0.0.1", 1).connect()
