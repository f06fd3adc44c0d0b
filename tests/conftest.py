"""Shared fixtures. Stores are made under pytest's tmp_path on the real file system and kept
small (the root file system here makes new files slow)."""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path

import pytest

from ctrstore import Client


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    """Tests marked ``root`` need mounts, chown and device nodes: skipped unless we are root."""
    needs_root = pytest.mark.skipif(
        os.geteuid() != 0, reason="needs root (mounts, chown, device nodes); run the suite as root"
    )
    for item in items:
        if "root" in item.keywords:
            item.add_marker(needs_root)


@pytest.fixture
def store_dirs(tmp_path: Path) -> tuple[Path, Path]:
    return tmp_path / "root", tmp_path / "state"


@pytest.fixture
def client(store_dirs: tuple[Path, Path], monkeypatch: pytest.MonkeyPatch) -> Iterator[Client]:
    for var in ("CTRSTORE_CONFIG", "CTRSTORE_ROOT", "CTRSTORE_STATE", "CTRSTORE_NAMESPACE"):
        monkeypatch.delenv(var, raising=False)
    root, state = store_dirs
    c = Client(root=root, state=state)
    yield c
    c.close()
