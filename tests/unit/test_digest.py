from __future__ import annotations

import hashlib
from pathlib import Path

import pytest

from ctrstore import Digester, InvalidArgument, sha256_bytes, sha256_file


@pytest.mark.parametrize("size", [0, 1, 63, 64, 65, 1000, 70_000, 1 << 20])
def test_digester_matches_hashlib(size: int) -> None:
    data = bytes(range(256)) * (size // 256 + 1)
    data = data[:size]
    d = Digester()
    d.update(data[: size // 3])
    d.update(memoryview(data)[size // 3 :])
    assert d.hexdigest() == hashlib.sha256(data).hexdigest()
    assert d.digest() == sha256_bytes(data) == "sha256:" + hashlib.sha256(data).hexdigest()
    assert d.size == size


def test_state_roundtrip() -> None:
    d = Digester()
    d.update(b"a" * 100)
    r = Digester.from_state(d.state())
    r.update(b"b")
    assert r.hexdigest() == hashlib.sha256(b"a" * 100 + b"b").hexdigest()
    with pytest.raises(InvalidArgument):
        Digester.from_state(b"nonsense")


def test_sha256_file(tmp_path: Path) -> None:
    p = tmp_path / "f"
    p.write_bytes(b"x" * 3_000_001)
    assert sha256_file(p) == ("sha256:" + hashlib.sha256(p.read_bytes()).hexdigest(), 3_000_001)
